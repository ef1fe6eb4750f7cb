//! Mounts crius prepares itself before the OCI runtime sees them, because
//! runc 1.1 and crun 1.8 cannot: recursively read-only copies of host
//! paths (no `rro` option there) and ID-mapped copies for containers in a
//! user namespace. Each is a detached copy of the host tree, changed with
//! `mount_setattr`, attached under the container's bundle (`staged/`);
//! the runtime then bind-mounts that copy, and a bind mount keeps the
//! flags of the mounts it copies. The copies are released as soon as
//! overlayfs or the runtime's `create` holds its own (a mount point in the
//! node's mount namespace would keep the host directory from being
//! removed); [`release`] at removal catches what a failure left.

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::mount_tree::DetachedTree;

/// The directory of staged mounts in a bundle.
const STAGED_DIR: &str = "staged";

/// How a staged copy differs from its source.
#[derive(Debug)]
pub enum Change<'a, F: AsFd> {
    /// Read-only, every submount included.
    ReadOnly,
    /// Owners mapped through the user namespace open at this fd.
    MapIds(&'a F),
    /// Both.
    ReadOnlyMapIds(&'a F),
}

/// Stages a copy of `source` (with its submounts) changed by `change`,
/// under `bundle` as `name`; returns where it is attached.
pub fn stage<F: AsFd>(
    bundle: &Path,
    name: &str,
    source: &Path,
    change: Change<'_, F>,
) -> Result<PathBuf> {
    let dir = bundle.join(STAGED_DIR);
    fsutil::create_dir_all(&dir)?;
    let target = dir.join(name);
    let is_dir = fs::metadata(source)
        .context(|| format!("stat mount source {}", source.display()))?
        .is_dir();
    if is_dir {
        fsutil::create_dir_all(&target)?;
    } else {
        fs::File::create(&target).context(|| format!("create {}", target.display()))?;
    }
    let tree = DetachedTree::clone_recursive(source)?;
    match change {
        Change::ReadOnly => tree.make_readonly()?,
        Change::MapIds(userns) => tree.map_ids(userns)?,
        Change::ReadOnlyMapIds(userns) => {
            tree.map_ids(userns)?;
            tree.make_readonly()?;
        }
    }
    tree.attach(&target)?;
    Ok(target)
}

/// Stages an ID-mapped copy of each of `layers` (owners mapped through
/// the user namespace open at `userns`), named `{prefix}{index}`: the
/// lower layers of an overlay seen from that namespace. Overlayfs keeps
/// private clones of its layers, so the copies can be released once it is
/// mounted.
pub fn stage_mapped_layers<F: AsFd>(
    bundle: &Path,
    prefix: &str,
    layers: &[PathBuf],
    userns: &F,
) -> Result<Vec<PathBuf>> {
    layers
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            stage(
                bundle,
                &format!("{prefix}{i}"),
                layer,
                Change::MapIds(userns),
            )
        })
        .collect()
}

/// Unmounts and removes every staged mount of a bundle; a bundle with none
/// is fine. Entries are removed one by one, never recursively, so a copy
/// that could not be unmounted cannot lose host files; the error then
/// says which, and the caller must not remove the bundle either.
pub fn release(bundle: &Path) -> Result<()> {
    let dir = bundle.join(STAGED_DIR);
    let entries = match fs::read_dir(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        r => r.context(|| format!("read {}", dir.display()))?,
    };
    for entry in entries {
        let path = entry.context(|| format!("read {}", dir.display()))?.path();
        fsutil::unmount(&path, "staged mount")?;
        let removed = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir(&path),
            Ok(_) => fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match removed {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            r => r.context(|| format!("remove staged mount point {}", path.display()))?,
        }
    }
    fs::remove_dir(&dir).context(|| format!("remove {}", dir.display()))
}
