//! OCI whiteouts as overlayfs reads them: `.wh.<name>` a 0/0 character
//! device `<name>`, `.wh..wh..opq` the xattr `trusted.overlay.opaque=y`
//! on its directory; other `.wh..wh.` names (AUFS metadata) dropped.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::stat::{Mode, SFlag, mknod};

use super::metadata::{Meta, set_xattr};
use super::{UnpackError, Unpacker};

/// What a whiteout's name starts with.
pub(super) const WHITEOUT_PREFIX: &str = ".wh.";
/// What an AUFS metadata name starts with (`.wh..wh.plnk` …).
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// The name that makes its directory opaque.
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// overlayfs's mark of an opaque directory.
pub(super) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

impl Unpacker<'_> {
    pub(super) fn whiteout(
        &mut self,
        parent: &Path,
        base: &[u8],
        meta: &Meta,
        name: &str,
    ) -> Result<(), UnpackError> {
        let dir = self.root.join(parent);
        if base == WHITEOUT_OPAQUE.as_bytes() {
            return set_xattr(&dir, OPAQUE_XATTR.as_bytes(), b"y").map_err(|source| {
                UnpackError::Io {
                    entry: name.to_string(),
                    op: "mark directory opaque",
                    source,
                }
            });
        }
        if base.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
            // Other AUFS metadata (.wh..wh.plnk …): not part of the tree.
            return Ok(());
        }
        let hidden = &base[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(UnpackError::Invalid {
                entry: name.to_string(),
                reason: "whiteout of an invalid name".into(),
            });
        }
        let target = dir.join(OsStr::from_bytes(hidden));
        if fs::symlink_metadata(&target).is_ok() {
            // Present in this very layer: a whiteout only hides what lower
            // layers have (OCI image spec, "Whiteouts").
            return Ok(());
        }
        let io_err = |op: &'static str| {
            move |source: io::Error| UnpackError::Io {
                entry: name.to_string(),
                op,
                source,
            }
        };
        mknod(&target, SFlag::S_IFCHR, Mode::empty(), libc::makedev(0, 0))
            .map_err(|e| io_err("create whiteout device")(e.into()))?;
        std::os::unix::fs::lchown(&target, Some(meta.uid), Some(meta.gid))
            .map_err(io_err("chown whiteout"))
    }
}
