//! Device nodes for a container: those CreateContainer names, and all of
//! the host's for a privileged container. Read from the host before the
//! (pure) spec is built.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Device;
use crate::error::{Error, Result};

/// A device node as the spec needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Path in the container.
    pub path: PathBuf,
    /// 'c' or 'b'.
    pub kind: char,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Cgroup access ("rwm" or a part of it).
    pub access: String,
}

/// The node at `host` (a device file), or `None` if it is not one.
fn node(host: &Path, container: PathBuf, access: &str) -> Option<DeviceNode> {
    let meta = std::fs::metadata(host).ok()?;
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some(DeviceNode {
        path: container,
        kind,
        major: i64::from(nix::sys::stat::major(rdev) as u32),
        minor: i64::from(nix::sys::stat::minor(rdev) as u32),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        access: access.to_string(),
    })
}

/// Checks cgroup permissions: one or more of r, w, m.
fn check_permissions(p: &str) -> Result<String> {
    if p.is_empty() {
        return Ok("rwm".into());
    }
    if p.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        Ok(p.to_string())
    } else {
        Err(Error::InvalidArgument(format!(
            "device permissions {p:?} are not a combination of r, w and m"
        )))
    }
}

/// The nodes CreateContainer's `devices` name: a device file, or a
/// directory whose device files are all given (under the container path).
pub fn resolve(devices: &[Device]) -> Result<Vec<DeviceNode>> {
    let mut out = Vec::new();
    for d in devices {
        let access = check_permissions(&d.permissions)?;
        let host = Path::new(&d.host_path);
        let container = if d.container_path.is_empty() {
            host.to_path_buf()
        } else {
            PathBuf::from(&d.container_path)
        };
        if !host.is_absolute() || !container.is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "device {:?} -> {:?}: paths must be absolute",
                d.host_path, d.container_path
            )));
        }
        if host.is_dir() {
            for (path, _) in walk(host) {
                if let Ok(rel) = path.strip_prefix(host)
                    && let Some(n) = node(&path, container.join(rel), &access)
                {
                    out.push(n);
                }
            }
            continue;
        }
        out.push(node(host, container, &access).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "device {:?} is not a device node on this host",
                d.host_path
            ))
        })?);
    }
    Ok(out)
}

/// Every device node under /dev, as a privileged container gets them
/// (as containerd does: not the console, the terminals of the host, or
/// the host's pseudo-terminal multiplexer).
pub fn host_devices() -> Vec<DeviceNode> {
    walk(Path::new("/dev"))
        .into_iter()
        .filter(|(path, _)| {
            let s = path.to_string_lossy();
            !(s.starts_with("/dev/pts/")
                || s.starts_with("/dev/shm/")
                || s.starts_with("/dev/mqueue/")
                || s == "/dev/console"
                || s == "/dev/ptmx")
        })
        .filter_map(|(path, _)| node(&path, path.clone(), "rwm"))
        .collect()
}

/// Files under `dir`, recursively (symlinks not followed), bounded in
/// depth.
fn walk(dir: &Path) -> Vec<(PathBuf, std::fs::FileType)> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if depth < 8 {
                    stack.push((e.path(), depth + 1));
                }
            } else if !ft.is_symlink() {
                out.push((e.path(), ft));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_file_is_resolved_with_its_numbers() {
        let nodes = resolve(&[Device {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }])
        .unwrap();
        assert_eq!(nodes.len(), 1);
        let n = &nodes[0];
        assert_eq!((n.kind, n.major, n.minor), ('c', 1, 3));
        assert_eq!(n.path, Path::new("/dev/mynull"));
        assert_eq!(n.access, "rw");
    }

    #[test]
    fn bad_devices_are_invalid_arguments() {
        for (host, perms) in [
            ("/etc/hostname", "rw"),
            ("/dev/null", "rwx"),
            ("dev/null", ""),
        ] {
            let e = resolve(&[Device {
                container_path: "/dev/x".into(),
                host_path: host.into(),
                permissions: perms.into(),
            }])
            .unwrap_err();
            assert!(
                matches!(e, Error::InvalidArgument(_)),
                "{host} {perms}: {e}"
            );
        }
    }

    #[test]
    fn host_devices_include_null_but_not_the_console() {
        let all = host_devices();
        assert!(all.iter().any(|n| n.path == Path::new("/dev/null")));
        assert!(!all.iter().any(|n| n.path == Path::new("/dev/console")));
    }
}
