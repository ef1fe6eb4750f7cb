//! ContainerStatus and ListContainers over the container part's table.

use std::io::Read;
use std::path::PathBuf;

use super::{Container, ContainerFilter, Containers};
use crate::error::Result;

/// The most of a bundle's config.json ContainerStatus verbose reads.
const MAX_SPEC_BYTES: u64 = 4 << 20;

/// What ContainerStatus's verbose info adds to a container's record: the
/// OCI spec it was created with and the runtime that runs it.
#[derive(Debug, Clone)]
pub struct ContainerDetail {
    /// The bundle's config.json, as the OCI runtime was given it; `None`
    /// once the bundle is gone or when it cannot be read.
    pub runtime_spec: Option<serde_json::Value>,
    /// The OCI runtime's binary.
    pub runtime_binary: PathBuf,
    /// The container's bundle (its state directory).
    pub bundle: PathBuf,
    /// Its root filesystem's mount point (in the bundle).
    pub rootfs: PathBuf,
    /// Its writable layer (the overlay's upper directory).
    pub writable_layer: PathBuf,
}

impl Containers {
    /// The verbose details of container `c`.
    pub(crate) fn detail(&self, c: &Container) -> ContainerDetail {
        let bundle = self.dirs.container_state(&c.id);
        let runtime_spec = (|| {
            let file = std::fs::File::open(bundle.join("config.json")).ok()?;
            let mut text = Vec::new();
            file.take(MAX_SPEC_BYTES).read_to_end(&mut text).ok()?;
            serde_json::from_slice(&text).ok()
        })();
        ContainerDetail {
            runtime_spec,
            runtime_binary: self
                .handlers
                .get(&c.runtime_handler)
                .map(|h| h.path().to_path_buf())
                .unwrap_or_default(),
            rootfs: bundle.join("rootfs"),
            writable_layer: self.dirs.container_root(&c.id).join("upper"),
            bundle,
        }
    }

    /// A container by id or unique id prefix.
    pub(crate) fn get(&self, id: &str) -> Result<Container> {
        Ok(self.objects.find(id)?.get())
    }

    /// The containers matching `filter`, oldest first.
    pub(crate) fn list(&self, filter: &ContainerFilter) -> Vec<Container> {
        let mut out: Vec<Container> = self
            .objects
            .all()
            .iter()
            .map(|e| e.get())
            .filter(|c| filter.matches(c))
            .collect();
        out.sort_by_key(|c| c.created_at);
        out
    }

    /// The ids of a pod's containers.
    pub(crate) fn of_pod(&self, sandbox_id: &str) -> Vec<String> {
        self.objects
            .all()
            .into_iter()
            .filter(|e| e.lock().sandbox_id == sandbox_id)
            .map(|e| e.id().to_string())
            .collect()
    }

    /// A pod's containers, oldest first.
    pub(crate) fn list_of_pod(&self, sandbox_id: &str) -> Vec<Container> {
        let mut out: Vec<Container> = self
            .objects
            .all()
            .iter()
            .map(|e| e.get())
            .filter(|c| c.sandbox_id == sandbox_id)
            .collect();
        out.sort_by_key(|c| c.created_at);
        out
    }
}
