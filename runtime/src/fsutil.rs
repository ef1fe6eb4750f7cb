//! Small filesystem helpers shared by the runtime: atomic writes and
//! directory creation with context.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Suffix of files being written; start-up recovery removes leftovers.
pub const TMP_SUFFIX: &str = ".tmp";

/// Writes `data` to `path` so that readers see either the old file or the
/// whole new one, even across a crash: write a temp file beside it, fsync,
/// rename over, fsync the directory.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}{TMP_SUFFIX}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = create_private(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    };
    let result = write().context(|| format!("write {}", path.display()));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `data` to `path` so that readers see either the old file or the
/// whole new one (temp file, rename), without fsync: for files of the
/// volatile state directory (bundles, monitor files), which a machine
/// crash makes meaningless anyway and whose fsyncs cost CreateContainer
/// milliseconds under I/O load.
pub fn replace_file(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}{TMP_SUFFIX}", std::process::id()));
    let write = || -> std::io::Result<()> {
        create_private(&tmp)?.write_all(data)?;
        fs::rename(&tmp, path)
    };
    let result = write().context(|| format!("write {}", path.display()));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A new file only root may read (`0600`), replacing a leftover temp
/// file of that name. What crius keeps is root's: the few files others
/// must read (a pod's hosts and resolv.conf) are written elsewhere.
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// `mkdir -p` with the path in the error.
pub fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).context(|| format!("create directory {}", path.display()))
}

/// Removes a directory tree; a missing one is not an error.
pub fn remove_dir_all(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r.context(|| format!("remove {}", path.display())),
    }
}

/// Removes the directory tree of an object crius keeps (a pod's or a
/// container's directory) unless something is mounted at or below it: a
/// recursive removal through a mount could reach host files (a bind of a
/// host path, a staged copy). A missing tree is not an error.
pub fn remove_tree(path: &Path) -> Result<()> {
    remove_trees(&[path])
}

/// [`remove_tree`] of each of `paths`, the mount table read once: none is
/// removed if something is mounted below any of them.
pub fn remove_trees(paths: &[&Path]) -> Result<()> {
    let points = mount_points()?;
    for path in paths {
        let mut mounted = points.iter().filter(|p| p.starts_with(path));
        if let Some(first) = mounted.next() {
            return Err(crate::error::Error::Internal(format!(
                "keeping {}: {} is still mounted there ({} mount(s) in all)",
                path.display(),
                first.display(),
                mounted.count() + 1
            )));
        }
    }
    for path in paths {
        remove_dir_all(path)?;
    }
    Ok(())
}

/// Every mount point, from /proc/self/mountinfo.
fn mount_points() -> Result<Vec<std::path::PathBuf>> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").context(|| "read /proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| std::path::PathBuf::from(unescape_mount_path(point)))
        .collect())
}

/// The mount points at or below `path`, from /proc/self/mountinfo.
pub fn mounts_under(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    Ok(mount_points()?
        .into_iter()
        .filter(|point| point.starts_with(path))
        .collect())
}

/// A mountinfo path with its octal escapes (`\040` for a space …) undone.
fn unescape_mount_path(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (b[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// Removes a file; a missing one is not an error.
pub fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r.context(|| format!("remove {}", path.display())),
    }
}

/// Unmounts `path` (lazily, so a busy mount goes as soon as it can); a path
/// that is not mounted, or not there, is fine. `what` names it in errors.
pub fn unmount(path: &Path, what: &str) -> Result<()> {
    use nix::errno::Errno;
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(crate::error::Error::io(
            format!("unmount {what} {}", path.display()),
            e.into(),
        )),
    }
}

/// Disk space and inodes a directory tree takes, as `du` counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes of allocated blocks.
    pub bytes: u64,
    /// Inodes (each hard-linked file once).
    pub inodes: u64,
}

/// Walks `root` without following symlinks or crossing into other
/// filesystems (mounted rootfs, for one) and sums what it occupies. A
/// missing `root` takes nothing; entries that vanish during the walk are
/// skipped.
pub fn disk_usage(root: &Path) -> Result<DiskUsage> {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;

    let mut usage = DiskUsage::default();
    let top = match fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(usage),
        Err(e) => {
            return Err(crate::error::Error::io(
                format!("stat {}", root.display()),
                e,
            ));
        }
    };
    let dev = top.dev();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut stack = vec![(root.to_path_buf(), top)];
    while let Some((path, meta)) = stack.pop() {
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        usage.bytes += meta.blocks() * 512;
        usage.inodes += 1;
        if !meta.is_dir() {
            continue;
        }
        let entries = match fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(crate::error::Error::io(
                    format!("read {}", path.display()),
                    e,
                ));
            }
        };
        for entry in entries.flatten() {
            if let Ok(m) = entry.metadata()
                && m.dev() == dev
            {
                stack.push((entry.path(), m));
            }
        }
    }
    Ok(usage)
}

/// Reads a file of a container's root filesystem, resolving `path` (and
/// every symlink on the way) as if `root` were `/`, so an image cannot point
/// the runtime at a host file. `None` if it does not exist.
pub fn read_in_root(root: &Path, path: &str) -> Result<Option<Vec<u8>>> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    use std::io::Read;

    let dir = fs::File::open(root).context(|| format!("open {}", root.display()))?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(&dir, path, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => return Ok(None),
        Err(e) => {
            return Err(crate::error::Error::io(
                format!("open {path} in {}", root.display()),
                e.into(),
            ));
        }
    };
    let mut data = Vec::new();
    fs::File::from(fd)
        .read_to_end(&mut data)
        .context(|| format!("read {path} in {}", root.display()))?;
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rec.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape_mount_path("/plain\\"), "/plain\\");
        assert!(
            mounts_under(Path::new("/proc"))
                .unwrap()
                .iter()
                .any(|p| p == Path::new("/proc"))
        );
    }

    #[test]
    fn trees_with_a_mount_below_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("obj/inner");
        fs::create_dir_all(&inner).unwrap();
        fs::write(inner.join("f"), b"x").unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &inner,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let kept = remove_tree(&dir.path().join("obj"));
        nix::mount::umount2(&inner, nix::mount::MntFlags::MNT_DETACH).unwrap();
        assert!(kept.unwrap_err().to_string().contains("still mounted"));
        remove_tree(&dir.path().join("obj")).unwrap();
        assert!(!dir.path().join("obj").exists());
    }

    #[test]
    fn disk_usage_counts_blocks_and_inodes_once() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            disk_usage(&dir.path().join("missing")).unwrap(),
            DiskUsage::default()
        );
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/big"), vec![1u8; 64 * 1024]).unwrap();
        fs::hard_link(dir.path().join("d/big"), dir.path().join("d/link")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("d/sym")).unwrap();
        let u = disk_usage(dir.path()).unwrap();
        // The root, d, big (once, however many links), the symlink.
        assert_eq!(u.inodes, 4);
        assert!(
            u.bytes >= 64 * 1024 && u.bytes < 64 * 1024 + 64 * 1024,
            "{u:?}"
        );
    }

    #[test]
    fn read_in_root_keeps_symlinks_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"host").unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        fs::write(root.path().join("secret"), b"image").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            root.path().join("etc/passwd"),
        )
        .unwrap();
        std::os::unix::fs::symlink("../../../../secret", root.path().join("etc/group")).unwrap();
        // The absolute link resolves inside the root, where it names nothing.
        assert_eq!(read_in_root(root.path(), "/etc/passwd").unwrap(), None);
        assert_eq!(
            read_in_root(root.path(), "/etc/group").unwrap().as_deref(),
            Some(&b"image"[..])
        );
        assert_eq!(read_in_root(root.path(), "/nope/x").unwrap(), None);
    }
}
