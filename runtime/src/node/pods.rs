//! The pod RPCs: RunPodSandbox, StopPodSandbox, RemovePodSandbox,
//! PodSandboxStatus, ListPodSandbox and PortForward. Stopping or removing
//! a pod stops or removes its containers first, under the pod's lock.

use std::time::Duration;

use super::Runtime;
use crate::error::Result;
use crate::records::pod::{PodConfig, Sandbox, SandboxFilter};

impl Runtime {
    /// Creates a pod sandbox: its namespaces, network, cgroup and files.
    /// Returns its id. On failure nothing of it is left.
    pub async fn run_pod_sandbox(&self, config: PodConfig) -> Result<String> {
        self.pods.run(config, &self.handlers).await
    }

    /// Stops a pod: stops its containers, tears its network down (once)
    /// and kills its infra process. Stopping a stopped pod, or one that is
    /// gone, is fine (the CRI makes Stop idempotent).
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let Some(entry) = self.pods.find_if_any(id)? else {
            return Ok(());
        };
        let _op = entry.op().await;
        for c in self.containers.of_pod(entry.id()) {
            self.containers.stop(&c, Duration::ZERO).await?;
        }
        // Hook point: NRI's StopPodSandbox will be called here, once every
        // container of the pod has exited.
        self.pods.stop(&entry).await
    }

    /// Removes a pod and its containers (stopping what still runs, and
    /// tearing its network down if Stop did not). Removing a pod that is
    /// gone is fine.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let Some(entry) = self.pods.find_if_any(id)? else {
            return Ok(());
        };
        let _op = entry.op().await;
        if self.pods.find(entry.id()).is_err() {
            return Ok(()); // removed while we waited
        }
        for c in self.containers.of_pod(entry.id()) {
            self.remove_container(&c).await?;
        }
        // Hook point: NRI's RemovePodSandbox will be told here.
        self.pods.remove(&entry).await
    }

    /// A pod by id or unique id prefix.
    pub fn pod_sandbox(&self, id: &str) -> Result<Sandbox> {
        self.pods.get(id)
    }

    /// The pods matching `filter`, oldest first.
    pub fn list_pod_sandboxes(&self, filter: &SandboxFilter) -> Vec<Sandbox> {
        self.pods.list(filter)
    }

    /// Connects to `port` on the loopback of pod `sandbox_id` (127.0.0.1,
    /// then ::1 if nothing listens there), in the pod's network namespace
    /// or, for a pod on the node's network, the node's.
    pub async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<tokio::net::TcpStream> {
        self.pods.port_forward(sandbox_id, port).await
    }
}
