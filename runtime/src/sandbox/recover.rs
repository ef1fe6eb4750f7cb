//! Start-up recovery for pods: what a crash (or a daemon killed in the
//! middle of RunPodSandbox or RemovePodSandbox) left behind.
//!
//! - Pods recorded as ready whose state directory is gone (the node
//!   restarted: the state directory is a tmpfs, and the namespaces, infra
//!   process and shm went with it) are recorded as not ready; stopping
//!   them releases their IP from the CNI cache as usual.
//! - CNI GC: every cached attachment that belongs to no pod with a network
//!   is deleted (DEL with the cached config), which frees its IP and its
//!   host-side interface; a CNI 1.1 network's plugins are told which
//!   attachments are valid.
//! - Pod directories without a record (the record is saved only once
//!   RunPodSandbox has finished): their infra process is killed, their
//!   namespace pins, shm mount and (infra) cgroup are removed, then the
//!   directories.

use std::collections::BTreeSet;
use std::path::Path;

use crius_cni::ValidAttachment;

use super::{SandboxState, cgroup, infra, namespaces, network};
use crate::Runtime;
use crate::error::Result;
use crate::fsutil;

impl Runtime {
    /// Cleans up after pods that a crash left half-made or half-removed.
    /// Failures are logged: the daemon starts anyway.
    pub(crate) async fn recover_sandboxes(&self) {
        for entry in self.sandboxes.all() {
            let sb = entry.get();
            if sb.state != SandboxState::Ready || self.pod_state_dir(&sb.id).exists() {
                continue;
            }
            let mut lost = sb.clone();
            lost.state = SandboxState::NotReady;
            lost.infra_pid = None;
            match self.sandbox_table.put(&sb.id, &lost) {
                Ok(()) => {
                    entry.update(|s| *s = lost);
                    tracing::warn!(pod = %sb.id, "pod sandbox lost with a node restart (its state directory is gone); recorded as not ready");
                }
                Err(e) => {
                    tracing::error!(pod = %sb.id, error = %e, "recording a pod lost with a node restart")
                }
            }
        }
        let pods: Vec<_> = self.sandboxes.all().iter().map(|e| e.get()).collect();
        let valid: Vec<ValidAttachment> = pods
            .iter()
            .filter(|sb| sb.namespace("net").is_some() && !sb.network_released)
            .map(|sb| ValidAttachment {
                container_id: sb.id.clone(),
                ifname: network::POD_IFNAME.into(),
            })
            .collect();
        match self.cni.gc(&valid).await {
            Ok(report) => {
                for (container, net, ifname) in &report.deleted {
                    tracing::info!(pod = %container, network = %net, ifname = %ifname, "deleted stale CNI attachment");
                }
                for e in &report.errors {
                    tracing::warn!(error = %e, "CNI garbage collection");
                }
            }
            Err(e) => tracing::warn!(error = %e, "CNI garbage collection"),
        }
        let known: BTreeSet<&str> = pods.iter().map(|sb| sb.id.as_str()).collect();
        for base in [
            self.config.state.join("pods"),
            self.config.root.join("pods"),
        ] {
            let Ok(entries) = std::fs::read_dir(&base) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if known.contains(name.as_str()) {
                    continue;
                }
                match self.remove_orphan_pod_dir(&entry.path()).await {
                    Ok(()) => {
                        tracing::info!(dir = %entry.path().display(), "removed the leftovers of an unfinished pod")
                    }
                    Err(e) => {
                        tracing::warn!(dir = %entry.path().display(), error = %e, "removing the leftovers of an unfinished pod")
                    }
                }
            }
        }
    }

    /// Undoes what an unrecorded pod's directory holds (see the module
    /// docs), then removes it.
    async fn remove_orphan_pod_dir(&self, dir: &Path) -> Result<()> {
        if let Some(pid) = std::fs::read_to_string(dir.join(infra::PID_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            infra::stop(dir, pid).await?;
        }
        for kind in ["ipc", "uts", "pid", "net", "user"] {
            namespaces::unpin(&dir.join("ns").join(kind))?;
        }
        fsutil::unmount(&dir.join("shm"), "pod shm")?;
        if let Ok(path) = std::fs::read_to_string(dir.join(cgroup::RECORD_FILE)) {
            let path = path.trim().to_string();
            tokio::task::spawn_blocking(move || cgroup::remove(&path))
                .await
                .map_err(|e| crate::Error::Internal(format!("cgroup task: {e}")))??;
        }
        fsutil::remove_dir_all(dir)
    }
}
