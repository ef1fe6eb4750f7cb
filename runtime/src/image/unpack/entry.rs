//! One tar entry: its type and name checked, its metadata read, and what
//! it is written to the layer (a directory, file, link, device, fifo; a
//! whiteout goes to `whiteout`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

use nix::sys::stat::{Mode, SFlag, mknod};
use tar::EntryType;

use super::metadata::{Meta, Target, apply_meta};
use super::path::{DirError, relative_path};
use super::whiteout::WHITEOUT_PREFIX;
use super::{UnpackError, Unpacker};

/// The pax record prefix of an xattr.
pub(super) const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
/// Files at least this large get their writeback started as soon as they
/// are written (see [`start_writeback`]).
const EARLY_WRITEBACK_MIN: u64 = 256 * 1024;

impl Unpacker<'_> {
    /// Writes one entry of the layer tar (or skips it: a pax global
    /// header, the layer root).
    pub(super) fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let invalid = |reason: String| UnpackError::Invalid {
            entry: name.clone(),
            reason,
        };
        let mut kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        // Old (pre-POSIX) tars mark directories by a trailing slash only.
        if kind == EntryType::Regular
            && entry.header().as_ustar().is_none()
            && entry.header().as_gnu().is_none()
            && name.ends_with('/')
        {
            kind = EntryType::Directory;
        }
        let rel = relative_path(&entry.path().map_err(UnpackError::Read)?).map_err(invalid)?;
        let Some(rel) = rel else {
            // The layer root itself: its metadata is the snapshot's.
            return Ok(());
        };
        let meta = self.meta(entry).map_err(invalid)?;
        let (parent, base) = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(b)) => (p.to_path_buf(), b.to_os_string()),
            _ => return Err(invalid("no file name".into())),
        };
        self.ensure_dir(&parent).map_err(|e| match e {
            DirError::NotDir(p) => invalid(format!(
                "parent {} is not a directory (a symlink or file earlier in the layer)",
                p.display()
            )),
            DirError::Io(source) => UnpackError::Io {
                entry: name.clone(),
                op: "create parent directory",
                source,
            },
        })?;
        let io_err = |op: &'static str| {
            let entry = name.clone();
            move |source: io::Error| UnpackError::Io { entry, op, source }
        };

        let base_bytes = base.as_bytes();
        if base_bytes.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&parent, base_bytes, &meta, &name);
        }

        let full = self.root.join(&rel);
        if let Ok(existing) = fs::symlink_metadata(&full) {
            // Replace what is there, except that a directory over a
            // directory merges (only its metadata is applied).
            if !(existing.is_dir() && kind == EntryType::Directory) {
                if existing.is_dir() {
                    fs::remove_dir_all(&full).map_err(io_err("replace"))?;
                    self.real_dirs.retain(|d| !d.starts_with(&rel));
                } else {
                    fs::remove_file(&full).map_err(io_err("replace"))?;
                }
            }
        }

        match kind {
            EntryType::Directory => {
                if fs::symlink_metadata(&full).is_err() {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&full)
                        .map_err(io_err("mkdir"))?;
                }
                self.real_dirs.insert(rel.clone());
                self.dir_times.insert(rel, meta.mtime);
                apply_meta(&full, &meta, Target::Dir).map_err(io_err("set metadata"))?;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&full)
                    .map_err(io_err("create"))?;
                let mut written = 0u64;
                loop {
                    let n = entry
                        .read(&mut self.buf)
                        .map_err(|e| self.meter.read_error(e))?;
                    if n == 0 {
                        break;
                    }
                    // Before writing: a sparse entry's holes cost nothing
                    // to read and all to write.
                    self.meter.add_written(n as u64)?;
                    file.write_all(&self.buf[..n]).map_err(io_err("write"))?;
                    written += n as u64;
                }
                // The tar crate ends an entry's data quietly at EOF; a
                // short one means a truncated stream. (A sparse entry
                // expands beyond its stored size.)
                if kind != EntryType::GNUSparse && written != entry.size() {
                    return Err(UnpackError::Read(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{name:?}: got {written} of {} bytes", entry.size()),
                    )));
                }
                if written >= EARLY_WRITEBACK_MIN {
                    start_writeback(&file);
                }
                apply_meta(&full, &meta, Target::File(&file)).map_err(io_err("set metadata"))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| invalid("symlink without a target".into()))?;
                std::os::unix::fs::symlink(&target, &full).map_err(io_err("symlink"))?;
                apply_meta(&full, &meta, Target::Symlink).map_err(io_err("set metadata"))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| invalid("hardlink without a target".into()))?;
                let target_rel = relative_path(&target)
                    .map_err(|r| invalid(format!("hardlink target: {r}")))?
                    .ok_or_else(|| invalid("hardlink to the layer root".into()))?;
                self.check_link_target(&target_rel).map_err(|r| {
                    invalid(format!("hardlink target {}: {r}", target_rel.display()))
                })?;
                // linkat without AT_SYMLINK_FOLLOW: a symlink target is
                // linked itself, never followed. The inode's metadata is
                // the target's.
                fs::hard_link(self.root.join(&target_rel), &full).map_err(io_err("hardlink"))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                // A fifo has no device number (writers often leave the
                // fields empty, which does not parse).
                let (major, minor) = if kind == EntryType::Fifo {
                    (0, 0)
                } else {
                    let header = entry.header();
                    let bad = |e: io::Error| invalid(format!("bad device number: {e}"));
                    (
                        header.device_major().map_err(bad)?.unwrap_or(0),
                        header.device_minor().map_err(bad)?.unwrap_or(0),
                    )
                };
                mknod(
                    &full,
                    sflag,
                    Mode::from_bits_truncate(meta.mode & 0o777),
                    libc::makedev(major, minor),
                )
                .map_err(|e| io_err("mknod")(io::Error::from(e)))?;
                apply_meta(&full, &meta, Target::Node).map_err(io_err("set metadata"))?;
            }
            other => return Err(invalid(format!("unsupported entry type {other:?}"))),
        }
        Ok(())
    }

    /// Reads the entry's owner, mode, mtime and xattrs (before its data).
    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Meta, String> {
        let h = entry.header();
        let raw = h.as_old();
        let id = |v: io::Result<u64>, field: &[u8], what: &str| -> Result<u32, String> {
            let v = numeric(v, field, what)?;
            u32::try_from(v).map_err(|_| format!("{what} {v} out of range"))
        };
        let mut uid = id(h.uid(), &raw.uid, "uid")?;
        let mut gid = id(h.gid(), &raw.gid, "gid")?;
        let mode = numeric(h.mode().map(u64::from), &raw.mode, "mode")? as u32 & 0o7777;
        let mtime = numeric(h.mtime(), &raw.mtime, "mtime")?;
        let mut mtime = i64::try_from(mtime).map_err(|_| format!("mtime {mtime} out of range"))?;
        let mut xattrs = Vec::new();
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| format!("bad pax header: {e}"))?
        {
            for ext in exts {
                let ext = ext.map_err(|e| format!("bad pax header: {e}"))?;
                let key = ext.key_bytes();
                if let Some(key) = key.strip_prefix(PAX_XATTR_PREFIX.as_bytes()) {
                    xattrs.push((key.to_vec(), ext.value_bytes().to_vec()));
                    continue;
                }
                // Values too large for the header (Go's writer, for one,
                // puts them here).
                let value = String::from_utf8_lossy(ext.value_bytes());
                let bad = |what: &str| format!("bad pax {what} {value:?}");
                match key {
                    b"uid" => uid = value.trim().parse().map_err(|_| bad("uid"))?,
                    b"gid" => gid = value.trim().parse().map_err(|_| bad("gid"))?,
                    b"mtime" => {
                        let whole = value.trim().split('.').next().unwrap_or_default();
                        mtime = whole.parse().map_err(|_| bad("mtime"))?;
                    }
                    _ => {}
                }
            }
        }
        Ok(Meta {
            uid,
            gid,
            mode,
            mtime,
            xattrs,
        })
    }
}

/// Asks the kernel to start writing a file's data to disk now, without
/// waiting, so that the layer's final syncfs finds most of it written
/// (disk writes then overlap the rest of the download). Best effort.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor the caller keeps open;
    // no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// A numeric header field; a blank one (all NUL or spaces, as some
/// writers leave uid and gid) is 0, as GNU tar and Go read it.
fn numeric(parsed: io::Result<u64>, field: &[u8], what: &str) -> Result<u64, String> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if field.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(e) => Err(format!("bad {what}: {e}")),
    }
}
