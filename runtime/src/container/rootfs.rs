//! A container's root filesystem: overlayfs with the image's shared,
//! read-only layers below and the container's own writable layer on top;
//! and image volumes, the same without the writable layer.
//!
//! Overlayfs takes its layers in one mount-data string, which the kernel
//! copies into one page (4095 bytes): by absolute path
//! (`<root>/layers/<64 hex>/fs`, 90 bytes and more each) that held ~45
//! layers, fewer under a longer root. So every directory of the mount is
//! named by a file descriptor instead: each is opened `O_PATH`, and the
//! mount is made on a thread of its own whose working directory (its
//! own, after `unshare(CLONE_FS)`) is `/proc/thread-self/fd`, where a
//! directory is its fd number — a few bytes, whatever the root's path, so
//! overlayfs's own limit of [`MAX_LOWER_LAYERS`] is the one left. This
//! works on every kernel (unlike `lowerdir+` with `fsconfig`, ≥ 6.8),
//! keeps no links on disk (Docker's `l/` names must be made, recovered
//! and removed), changes no process-wide state (the daemon's other
//! threads keep their working directory) and forks nothing.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{MsFlags, mount};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// The kernel copies mount options into one page.
const MAX_MOUNT_DATA: usize = 4095;

/// The most lower layers overlayfs stacks (the kernel's `OVL_MAX_STACK`).
pub const MAX_LOWER_LAYERS: usize = 500;

/// Where a directory opened by the mounting thread is its fd number.
const FD_DIR: &str = "/proc/thread-self/fd";

/// The bundle's directory of image volumes: one mount point per volume,
/// named by the mount's index in the container's config.
pub const IMAGE_VOLUMES: &str = "image-volumes";

/// The overlay mount options for lower layers `lower` (top first) and, for
/// a writable overlay, `upper_work`, each given as the number of an fd
/// open on it (see the module docs).
fn overlay_options(lower: &[RawFd], upper_work: Option<(RawFd, RawFd)>) -> Result<String> {
    let lower: Vec<String> = lower.iter().map(RawFd::to_string).collect();
    let mut options = format!("lowerdir={}", lower.join(":"));
    if let Some((upper, work)) = upper_work {
        options += &format!(",upperdir={upper},workdir={work}");
    }
    if options.len() > MAX_MOUNT_DATA {
        return Err(Error::Internal(format!(
            "overlay options for {} layers are {} bytes, over the kernel's {MAX_MOUNT_DATA}",
            lower.len(),
            options.len()
        )));
    }
    Ok(options)
}

/// Refuses, naming `image`, an image of `layers` layers that overlayfs
/// cannot mount: none, or more than it stacks (one fewer as an image
/// volume, `volume`, whose empty base takes a place).
fn check_stack(image: &str, layers: usize, volume: bool) -> Result<()> {
    if layers == 0 {
        return Err(Error::InvalidArgument(format!(
            "image {image} has no layers"
        )));
    }
    let (room, as_what) = match volume {
        false => (MAX_LOWER_LAYERS, ""),
        true => (MAX_LOWER_LAYERS - 1, " as an image volume"),
    };
    if layers > room {
        return Err(Error::InvalidArgument(format!(
            "image {image} has {layers} layers: more than overlayfs stacks{as_what} ({room})"
        )));
    }
    Ok(())
}

/// Mounts an overlay of `lower` (top first), writable with `upper_work`,
/// at `target`, naming every directory by fd (see the module docs).
/// `what` names the mount in errors.
fn mount_overlay(
    lower: &[&Path],
    upper_work: Option<(&Path, &Path)>,
    target: &Path,
    flags: MsFlags,
    what: &str,
) -> Result<()> {
    std::thread::scope(|s| {
        // Builder, not `s.spawn`: a thread the system cannot start is an
        // error, not a panic.
        std::thread::Builder::new()
            .name("crius-mount".into())
            .spawn_scoped(s, || {
                mount_overlay_on_this_thread(lower, upper_work, target, flags, what)
            })
            .context(|| format!("{what}: start the mounting thread"))?
            .join()
            .unwrap_or_else(|_| Err(Error::Internal(format!("{what}: mount thread panicked"))))
    })
}

/// Runs on a thread that exits right after: it changes its working
/// directory, unshared from the process's first.
fn mount_overlay_on_this_thread(
    lower: &[&Path],
    upper_work: Option<(&Path, &Path)>,
    target: &Path,
    flags: MsFlags,
    what: &str,
) -> Result<()> {
    nix::sched::unshare(CloneFlags::CLONE_FS)
        .context(|| format!("{what}: unshare the mounting thread's working directory"))?;
    let lower_fds = lower
        .iter()
        .map(|p| open_dir(p, what))
        .collect::<Result<Vec<_>>>()?;
    let upper_work_fds = match upper_work {
        Some((upper, work)) => Some((open_dir(upper, what)?, open_dir(work, what)?)),
        None => None,
    };
    let target_fd = open_dir(target, what)?;
    let options = overlay_options(
        &lower_fds.iter().map(AsRawFd::as_raw_fd).collect::<Vec<_>>(),
        upper_work_fds
            .as_ref()
            .map(|(u, w)| (u.as_raw_fd(), w.as_raw_fd())),
    )?;
    nix::unistd::chdir(FD_DIR).context(|| format!("{what}: enter {FD_DIR}"))?;
    mount(
        Some("overlay"),
        target_fd.as_raw_fd().to_string().as_str(),
        Some("overlay"),
        flags,
        Some(options.as_str()),
    )
    .context(|| format!("{what}: mount overlay of {} layers", lower.len()))
}

/// An `O_PATH` fd on directory `path`, to name it by.
fn open_dir(path: &Path, what: &str) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context(|| format!("{what}: open {}", path.display()))
}

/// Mounts the rootfs of a container of `image` (its name, for errors) at
/// `target`, with `layers` (base first) below and the writable layer in
/// `rw_dir` (which gets `upper/` and `work/`).
pub fn mount_rootfs(image: &str, layers: &[PathBuf], rw_dir: &Path, target: &Path) -> Result<()> {
    mount_rootfs_owned(image, layers, rw_dir, target, None)
}

/// [`mount_rootfs`] with the writable layer's top owned by `owner` (host
/// UID, GID): the IDs that are root in the container's user namespace,
/// whose root directory it is.
pub fn mount_rootfs_owned(
    image: &str,
    layers: &[PathBuf],
    rw_dir: &Path,
    target: &Path,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    check_stack(image, layers.len(), false)?;
    let upper = rw_dir.join("upper");
    let work = rw_dir.join("work");
    fsutil::create_dir_all(&upper)?;
    fsutil::create_dir_all(&work)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&upper, Some(uid), Some(gid))
            .context(|| format!("chown {} to {uid}:{gid}", upper.display()))?;
    }
    fsutil::create_dir_all(target)?;
    let lower: Vec<&Path> = layers.iter().rev().map(PathBuf::as_path).collect();
    mount_overlay(
        &lower,
        Some((&upper, &work)),
        target,
        MsFlags::empty(),
        &format!("rootfs of image {image} at {}", target.display()),
    )
}

/// Mounts the file tree of `image` (its name, for errors), made of
/// `layers` (base first), read-only at `target`: an image volume.
/// Overlayfs without an upper layer is read-only but wants two lower
/// layers at least, so the empty directory `empty` is the bottom one.
pub fn mount_image_volume(
    image: &str,
    layers: &[PathBuf],
    empty: &Path,
    target: &Path,
) -> Result<()> {
    check_stack(image, layers.len(), true)?;
    fsutil::create_dir_all(empty)?;
    fsutil::create_dir_all(target)?;
    let lower: Vec<&Path> = layers
        .iter()
        .rev()
        .map(PathBuf::as_path)
        .chain([empty])
        .collect();
    mount_overlay(
        &lower,
        None,
        target,
        MsFlags::MS_RDONLY,
        &format!("image volume of image {image} at {}", target.display()),
    )
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
    fn lower_dirs_are_fds_top_first() {
        assert_eq!(
            overlay_options(&[12, 11], Some((13, 14))).unwrap(),
            "lowerdir=12:11,upperdir=13,workdir=14"
        );
        assert_eq!(overlay_options(&[7, 5], None).unwrap(), "lowerdir=7:5");
    }

    #[test]
    fn as_many_layers_as_overlayfs_stacks_fit_in_a_page() {
        // Even with fd numbers of six digits (a daemon with 100,000 open
        // files), all of overlayfs's layers fit.
        let lower: Vec<RawFd> = (0..MAX_LOWER_LAYERS as RawFd)
            .map(|i| 100_000 + i)
            .collect();
        let o = overlay_options(&lower, Some((999_998, 999_999))).unwrap();
        assert!(o.len() <= MAX_MOUNT_DATA, "{}", o.len());
        let many: Vec<RawFd> = (0..700).map(|i| 1_000_000 + i).collect();
        let e = overlay_options(&many, None).unwrap_err();
        assert!(e.to_string().contains("700 layers"), "{e}");
    }

    #[test]
    fn too_many_layers_is_a_clear_error_naming_the_image() {
        assert!(check_stack("deep:1", 500, false).is_ok());
        let e = check_stack("deep:1", 501, false).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        let m = e.to_string();
        assert_eq!(
            m,
            "image deep:1 has 501 layers: more than overlayfs stacks (500)"
        );
        // An image volume's empty base takes one.
        assert!(check_stack("deep:1", 499, true).is_ok());
        let m = check_stack("deep:1", 500, true).unwrap_err().to_string();
        assert!(
            m.ends_with("overlayfs stacks as an image volume (499)"),
            "{m}"
        );
        let e = check_stack("empty:1", 0, false).unwrap_err();
        assert!(e.to_string().contains("empty:1 has no layers"), "{e}");
    }
}
