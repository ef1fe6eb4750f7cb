//! Who may enter the directories crius keeps (the class of
//! CVE-2021-41103: a host user walking into an unpacked layer or a
//! container's rootfs and running a setuid binary from it).
//!
//! - root and state: `0711`. Other users may pass through (the CRI socket
//!   lives in state, and a user-namespaced container's root must reach its
//!   bundle) but list nothing.
//! - image content, layers, image records, metadata, the CNI cache,
//!   writable layers and the OCI runtimes' state: `0700`, root only.
//! - the parents of per-object directories (`state/pods`,
//!   `state/containers`, `root/pods`): `0711`, so that a per-object
//!   directory can let one group in without letting everybody list.
//! - each pod's and container's own directory: `0700`; for a pod in a
//!   user namespace `0710` with the group of the pod's root, which the
//!   runtime (inside that namespace) needs to reach the bundle, the pod's
//!   files and namespace pins — as containerd does for its bundles.
//!
//! [`prepare`] makes these at start-up and tightens what an older crius
//! made, logging each change.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Who may enter a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Root only (`0700`).
    Private,
    /// Everybody may pass through, nobody else may list (`0711`).
    Traverse,
    /// Root, and members of this group may pass through (`0710`): the
    /// host GID of a user-namespaced pod's root.
    Group(u32),
}

impl Access {
    /// The directory's permission bits.
    pub fn mode(self) -> u32 {
        match self {
            Access::Private => 0o700,
            Access::Traverse => 0o711,
            Access::Group(_) => 0o710,
        }
    }

    /// The directory's group (root's unless [`Access::Group`]).
    fn gid(self) -> u32 {
        match self {
            Access::Group(gid) => gid,
            _ => 0,
        }
    }

    /// The access of a pod's or container's own directory: private, or
    /// open to the group of the pod's root in a user namespace.
    pub fn object(userns_root_gid: Option<u32>) -> Access {
        match userns_root_gid {
            Some(gid) if gid != 0 => Access::Group(gid),
            _ => Access::Private,
        }
    }
}

/// The directories under root, and their access.
const ROOT_DIRS: &[(&str, Access)] = &[
    ("content", Access::Private),
    ("layers", Access::Private),
    ("images", Access::Private),
    ("meta", Access::Private),
    ("cni", Access::Private),
    ("containers", Access::Private),
    ("pods", Access::Traverse),
];

/// The directories under state, and their access.
const STATE_DIRS: &[(&str, Access)] = &[
    ("pods", Access::Traverse),
    ("containers", Access::Traverse),
    ("runtime", Access::Private),
];

/// The per-object directories: a pod's or container's own, one level
/// below these.
const OBJECT_PARENTS: &[(bool, &str)] = &[(false, "pods"), (true, "pods"), (true, "containers")];

/// Makes root and state and the directories above with their access,
/// tightening any an older crius (or an operator) made more open, and each
/// existing pod's and container's own directory likewise. Each change is
/// logged.
pub fn prepare(root: &Path, state: &Path) -> Result<()> {
    for (top, dirs) in [(root, ROOT_DIRS), (state, STATE_DIRS)] {
        create_dir(top, Access::Traverse)?;
        for (name, access) in dirs {
            create_dir(&top.join(name), *access)?;
        }
    }
    for (in_state, parent) in OBJECT_PARENTS {
        let parent = if *in_state { state } else { root }.join(parent);
        let entries =
            std::fs::read_dir(&parent).context(|| format!("read {}", parent.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            // A directory its pod's root may pass through keeps that
            // group; any other opening goes.
            let access = Access::object(Some(meta.gid()));
            tighten(&path, &meta, access)?;
        }
    }
    Ok(())
}

/// Makes `path` (whose parent exists, or is made as root-only) with
/// exactly `access`, or gives an existing one that access. Idempotent.
pub fn create_dir(path: &Path, access: Access) -> Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        // Parents crius did not plan (a configured root in a new tree)
        // are made root-only-writable and passable, as /var/lib is.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(parent)
            .context(|| format!("create directory {}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(access.mode()).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(crate::error::Error::io(
                format!("create directory {}", path.display()),
                e,
            ));
        }
    }
    let meta = std::fs::symlink_metadata(path).context(|| format!("stat {}", path.display()))?;
    if !meta.is_dir() {
        return Err(crate::error::Error::Internal(format!(
            "{} should be a directory crius keeps, but is not one",
            path.display()
        )));
    }
    set(path, &meta, access)
}

/// Gives `path` `access` (mode and group) if it has something else: the
/// umask may have taken bits from a new directory, and an older crius made
/// them more open.
fn set(path: &Path, meta: &std::fs::Metadata, access: Access) -> Result<()> {
    let changed = meta.mode() & 0o7777 != access.mode() || meta.gid() != access.gid();
    if !changed {
        return Ok(());
    }
    if meta.gid() != access.gid() || meta.uid() != 0 {
        std::os::unix::fs::chown(path, Some(0), Some(access.gid()))
            .context(|| format!("chown {}", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode()))
        .context(|| format!("chmod {}", path.display()))?;
    let was = meta.mode() & 0o7777;
    if was & !access.mode() != 0 {
        tracing::warn!(
            path = %path.display(),
            was = format!("{was:04o}"),
            now = format!("{:04o}", access.mode()),
            "tightened the access of a directory crius keeps"
        );
    }
    Ok(())
}

/// [`set`], only where `path` is more open than `access` allows.
fn tighten(path: &Path, meta: &std::fs::Metadata, access: Access) -> Result<()> {
    if meta.mode() & 0o7777 & !access.mode() == 0 && meta.uid() == 0 {
        return Ok(());
    }
    set(path, meta, access)
}

/// The directories [`prepare`] keeps, with their access (for tests and
/// for operators' checks).
pub fn planned(root: &Path, state: &Path) -> Vec<(PathBuf, Access)> {
    let mut out = vec![
        (root.to_path_buf(), Access::Traverse),
        (state.to_path_buf(), Access::Traverse),
    ];
    for (top, dirs) in [(root, ROOT_DIRS), (state, STATE_DIRS)] {
        out.extend(dirs.iter().map(|(n, a)| (top.join(n), *a)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn prepare_makes_and_tightens() {
        let dir = tempfile::tempdir().unwrap();
        let (root, state) = (dir.path().join("r"), dir.path().join("s"));
        prepare(&root, &state).unwrap();
        for (path, access) in planned(&root, &state) {
            assert_eq!(mode(&path), access.mode(), "{}", path.display());
        }
        // An older crius: everything 0755, a bundle and a layer too.
        let bundle = state.join("containers/abc");
        std::fs::create_dir(&bundle).unwrap();
        for (path, _) in planned(&root, &state)
            .into_iter()
            .chain([(bundle.clone(), Access::Private)])
        {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        prepare(&root, &state).unwrap();
        assert_eq!(mode(&root), 0o711);
        assert_eq!(mode(&root.join("layers")), 0o700);
        assert_eq!(mode(&bundle), 0o700);
    }

    #[test]
    fn object_dirs_keep_a_userns_group() {
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join("pod");
        create_dir(&pod, Access::object(Some(100000))).unwrap();
        let meta = std::fs::metadata(&pod).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.gid()), (0o710, 100000));
        std::fs::set_permissions(&pod, std::fs::Permissions::from_mode(0o775)).unwrap();
        let meta = std::fs::metadata(&pod).unwrap();
        tighten(&pod, &meta, Access::object(Some(meta.gid()))).unwrap();
        assert_eq!(mode(&pod), 0o710);
        create_dir(&pod, Access::Private).unwrap();
        let meta = std::fs::metadata(&pod).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.gid()), (0o700, 0));
    }
}

/// Where each pod's and container's directories are, below crius's root
/// (persistent) and state (volatile) directories. Every path of an object
/// is derived from its id here.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// The persistent root.
    pub root: PathBuf,
    /// The volatile state directory.
    pub state: PathBuf,
}

impl Dirs {
    /// A pod's volatile directory: namespace pins, shm, infra files.
    pub fn pod_state(&self, id: &str) -> PathBuf {
        self.state.join("pods").join(id)
    }

    /// A pod's persistent directory: hostname, hosts, resolv.conf.
    pub fn pod_root(&self, id: &str) -> PathBuf {
        self.root.join("pods").join(id)
    }

    /// A container's bundle.
    pub fn container_state(&self, id: &str) -> PathBuf {
        self.state.join("containers").join(id)
    }

    /// A container's writable layer.
    pub fn container_root(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }
}
