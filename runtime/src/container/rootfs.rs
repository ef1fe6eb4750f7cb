//! A container's root filesystem: overlayfs with the image's shared,
//! read-only layers below and the container's own writable layer on top.

use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// The kernel copies mount options into one page.
const MAX_MOUNT_DATA: usize = 4095;

/// The bundle's directory of image volumes: one mount point per volume,
/// named by the mount's index in the container's config.
pub const IMAGE_VOLUMES: &str = "image-volumes";

/// The overlay mount options for `layers` (base first).
fn overlay_options(layers: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    let options = format!(
        "{},upperdir={},workdir={}",
        lower_dirs(layers)?,
        upper.display(),
        work.display()
    );
    check_length(options, layers.len())
}

/// `lowerdir=` with `layers` (base first) top first.
fn lower_dirs(layers: &[PathBuf]) -> Result<String> {
    if layers.is_empty() {
        return Err(Error::InvalidArgument("image has no layers".into()));
    }
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    Ok(format!("lowerdir={}", lower.join(":")))
}

/// `options`, if the kernel takes them.
fn check_length(options: String, layers: usize) -> Result<String> {
    if options.len() > MAX_MOUNT_DATA {
        return Err(Error::Internal(format!(
            "overlay options for {} layers are {} bytes, over the kernel's {MAX_MOUNT_DATA}",
            layers,
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

/// Mounts the file tree of an image, read-only, at `target`: an image
/// volume. Overlayfs without an upper layer is read-only but wants two
/// lower layers at least, so the empty directory `empty` is the bottom one.
pub fn mount_image_volume(layers: &[PathBuf], empty: &Path, target: &Path) -> Result<()> {
    fsutil::create_dir_all(empty)?;
    fsutil::create_dir_all(target)?;
    let mut lower = vec![empty.to_path_buf()];
    lower.extend_from_slice(layers);
    let options = check_length(lower_dirs(&lower)?, layers.len())?;
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(options.as_str()),
    )
    .context(|| format!("mount image volume at {}", target.display()))
}

/// Unmounts every image volume of the container whose bundle is `bundle`.
pub fn unmount_image_volumes(bundle: &Path) -> Result<()> {
    let dir = bundle.join(IMAGE_VOLUMES);
    let entries = match std::fs::read_dir(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        r => r.context(|| format!("read {}", dir.display()))?,
    };
    for entry in entries {
        let entry = entry.context(|| format!("read {}", dir.display()))?;
        fsutil::unmount(&entry.path(), "image volume")?;
    }
    Ok(())
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
