//! An entry's owner, xattrs, mode and mtime, applied to what it was
//! written to, never through a symlink.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

/// What a tar entry says of its owner, mode, mtime and xattrs.
pub(super) struct Meta {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mode: u32,
    pub(super) mtime: i64,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What metadata is applied to.
pub(super) enum Target<'f> {
    /// A regular file, still open.
    File(&'f File),
    /// A directory: its mtime is set at the end (see [`apply_tar`](super::apply_tar)).
    Dir,
    /// A symlink: no mode.
    Symlink,
    /// A device node or fifo.
    Node,
}

/// Owner, then xattrs, then mode (chown clears set-id bits), then mtime.
pub(super) fn apply_meta(path: &Path, meta: &Meta, target: Target<'_>) -> io::Result<()> {
    match target {
        Target::File(f) => std::os::unix::fs::fchown(f, Some(meta.uid), Some(meta.gid))?,
        _ => std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))?,
    }
    for (key, value) in &meta.xattrs {
        if let Err(e) = set_xattr(path, key, value) {
            let ignorable = e.raw_os_error() == Some(libc::ENOTSUP)
                // user.* xattrs are not allowed on symlinks and devices.
                || (e.raw_os_error() == Some(libc::EPERM) && key.starts_with(b"user."));
            if !ignorable {
                return Err(io::Error::new(
                    e.kind(),
                    format!("set xattr {}: {e}", String::from_utf8_lossy(key)),
                ));
            }
            tracing::warn!(path = %path.display(), key = %String::from_utf8_lossy(key), error = %e, "ignored xattr from layer");
        }
    }
    let perms = fs::Permissions::from_mode(meta.mode);
    match target {
        Target::File(f) => f.set_permissions(perms)?,
        // Never a symlink here, so following is moot.
        Target::Dir | Target::Node => fs::set_permissions(path, perms)?,
        Target::Symlink => {}
    }
    match target {
        Target::Dir => Ok(()),
        _ => set_times(path, meta.mtime),
    }
}

pub(super) fn set_times(path: &Path, mtime: i64) -> io::Result<()> {
    let t = TimeSpec::new(mtime, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// `lsetxattr(2)`: on the path itself, never through a final symlink.
pub(super) fn set_xattr(path: &Path, key: &[u8], value: &[u8]) -> io::Result<()> {
    let invalid = |_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "NUL byte in path or xattr name",
        )
    };
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(invalid)?;
    let c_key = CString::new(key).map_err(invalid)?;
    // SAFETY: both strings are NUL-terminated and outlive the call; the
    // value pointer and length describe a live slice.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
