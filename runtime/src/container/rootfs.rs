//! A container's root filesystem: overlayfs with the image's shared,
//! read-only layers below and the container's own writable layer on top.

use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// The kernel copies mount options into one page.
const MAX_MOUNT_DATA: usize = 4095;

/// The overlay mount options for `layers` (base first).
fn overlay_options(layers: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    if layers.is_empty() {
        return Err(Error::InvalidArgument("image has no layers".into()));
    }
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    if options.len() > MAX_MOUNT_DATA {
        return Err(Error::Internal(format!(
            "overlay options for {} layers are {} bytes, over the kernel's {MAX_MOUNT_DATA}",
            layers.len(),
            options.len()
        )));
    }
    Ok(options)
}

/// Mounts the rootfs at `target`, with the writable layer in `rw_dir`
/// (which gets `upper/` and `work/`).
pub fn mount_rootfs(layers: &[PathBuf], rw_dir: &Path, target: &Path) -> Result<()> {
    mount_rootfs_owned(layers, rw_dir, target, None)
}

/// [`mount_rootfs`] with the writable layer's top owned by `owner` (host
/// UID, GID): the IDs that are root in the container's user namespace,
/// whose root directory it is.
pub fn mount_rootfs_owned(
    layers: &[PathBuf],
    rw_dir: &Path,
    target: &Path,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let upper = rw_dir.join("upper");
    let work = rw_dir.join("work");
    fsutil::create_dir_all(&upper)?;
    fsutil::create_dir_all(&work)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&upper, Some(uid), Some(gid))
            .context(|| format!("chown {} to {uid}:{gid}", upper.display()))?;
    }
    fsutil::create_dir_all(target)?;
    let options = overlay_options(layers, &upper, &work)?;
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .context(|| format!("mount overlay rootfs at {}", target.display()))
}

/// Unmounts a rootfs; one that is not mounted is fine.
pub fn unmount_rootfs(target: &Path) -> Result<()> {
    fsutil::unmount(target, "rootfs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_dirs_are_top_first() {
        let layers = vec![PathBuf::from("/l/base"), PathBuf::from("/l/top")];
        let o = overlay_options(&layers, Path::new("/c/upper"), Path::new("/c/work")).unwrap();
        assert_eq!(
            o,
            "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"
        );
    }

    #[test]
    fn too_many_layers_is_a_clear_error() {
        let layers: Vec<PathBuf> = (0..100)
            .map(|i| PathBuf::from(format!("/var/lib/crius/layers/{i:064}/fs")))
            .collect();
        let e = overlay_options(&layers, Path::new("/u"), Path::new("/w")).unwrap_err();
        assert!(e.to_string().contains("100 layers"), "{e}");
    }
}
