//! The stats RPCs: ContainerStats, ListContainerStats, PodSandboxStats
//! and ListPodSandboxStats, reading a pod with its containers.

use std::collections::HashMap;
use std::sync::Arc;

use super::Runtime;
use crate::error::{Error, Result};
use crate::records::container::{Container, ContainerFilter};
use crate::records::pod::{Sandbox, SandboxFilter};
use crate::stats::{ContainerStats, PodStats};

impl Runtime {
    /// The figures of one container (id or unique prefix).
    pub async fn container_stats(self: &Arc<Self>, id: &str) -> Result<ContainerStats> {
        let c = self.container(id)?;
        let sb = self.pod_sandbox(&c.sandbox_id)?;
        let rt = Arc::clone(self);
        blocking(move || Ok(rt.stats.read_container(&sb, c))).await
    }

    /// The figures of the containers matching `filter`, oldest first.
    pub async fn list_container_stats(
        self: &Arc<Self>,
        filter: ContainerFilter,
    ) -> Result<Vec<ContainerStats>> {
        let rt = Arc::clone(self);
        blocking(move || {
            let pods: HashMap<String, Sandbox> = rt
                .list_pod_sandboxes(&SandboxFilter::default())
                .into_iter()
                .map(|sb| (sb.id.clone(), sb))
                .collect();
            let out = rt
                .list_containers(&filter)
                .into_iter()
                .filter_map(|c| {
                    let sb = pods.get(&c.sandbox_id)?;
                    Some(rt.stats.read_container(sb, c))
                })
                .collect();
            rt.forget_gone();
            Ok(out)
        })
        .await
    }

    /// The figures of one pod (id or unique prefix) and its containers.
    pub async fn pod_stats(self: &Arc<Self>, id: &str) -> Result<PodStats> {
        let sb = self.pod_sandbox(id)?;
        let rt = Arc::clone(self);
        blocking(move || {
            let containers = rt.containers.list_of_pod(&sb.id);
            Ok(rt.stats.read_pod(sb, containers))
        })
        .await
    }

    /// The figures of the pods matching `filter`, oldest first.
    pub async fn list_pod_stats(self: &Arc<Self>, filter: SandboxFilter) -> Result<Vec<PodStats>> {
        let rt = Arc::clone(self);
        blocking(move || {
            let mut out = Vec::new();
            for sb in rt.list_pod_sandboxes(&filter) {
                let containers = rt.containers.list_of_pod(&sb.id);
                out.push(rt.stats.read_pod(sb, containers));
            }
            rt.forget_gone();
            Ok(out)
        })
        .await
    }

    /// Drops the CPU samples of pods and containers that are gone.
    fn forget_gone(&self) {
        let live: Vec<(Sandbox, Vec<Container>)> = self
            .list_pod_sandboxes(&SandboxFilter::default())
            .into_iter()
            .map(|sb| {
                let containers = self.containers.list_of_pod(&sb.id);
                (sb, containers)
            })
            .collect();
        self.stats.forget_gone(&live);
    }
}

/// Runs file-reading work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("stats task: {e}")))?
}
