//! A pod's /dev/shm: a tmpfs of its own, sized by annotation or config.

use std::path::Path;

use nix::mount::{MsFlags, mount};

use super::{PodConfig, quantity};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// Pod annotation sizing its /dev/shm (a quantity: `256Mi`), over the
/// configured `runtime.shm_size`.
pub const SHM_SIZE_ANNOTATION: &str = "crius.io/shm-size";

/// The size of a pod's /dev/shm: the annotation, else the configured one.
pub(crate) fn shm_size(config: &PodConfig, default: &str) -> Result<u64> {
    let (what, value) = match config.annotations.get(SHM_SIZE_ANNOTATION) {
        Some(v) => (format!("pod annotation {SHM_SIZE_ANNOTATION}"), v.as_str()),
        None => ("runtime.shm_size".to_string(), default),
    };
    quantity::parse(value).filter(|b| *b > 0).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{what} {value:?} is not a positive size (such as 64Mi)"
        ))
    })
}

/// Mounts the pod's shm tmpfs of `bytes` at `path`.
pub(crate) fn mount_shm(path: &Path, bytes: u64) -> Result<()> {
    fsutil::create_dir_all(path)?;
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,size={bytes}").as_str()),
    )
    .context(|| format!("mount pod shm at {}", path.display()))
}

/// Unmounts the pod's shm at `path`; one not mounted is fine.
pub(crate) fn unmount_shm(path: &Path) -> Result<()> {
    fsutil::unmount(path, "pod shm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shm_size_from_annotation_or_config() {
        let mut config = PodConfig::default();
        assert_eq!(shm_size(&config, "64Mi").unwrap(), 64 << 20);
        config
            .annotations
            .insert(SHM_SIZE_ANNOTATION.into(), "1Gi".into());
        assert_eq!(shm_size(&config, "64Mi").unwrap(), 1 << 30);
        config
            .annotations
            .insert(SHM_SIZE_ANNOTATION.into(), "huge".into());
        let e = shm_size(&config, "64Mi").unwrap_err();
        assert!(e.to_string().contains(SHM_SIZE_ANNOTATION), "{e}");
        let e = shm_size(&PodConfig::default(), "0").unwrap_err();
        assert!(e.to_string().contains("runtime.shm_size"), "{e}");
    }
}
