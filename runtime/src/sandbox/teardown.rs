//! Undoing what RunPodSandbox made: the pod's network (once), its infra
//! process, namespace pins, shm, cgroup and directories. Stop, Remove and
//! a failed Run all go through here; a network teardown that fails after
//! a failed Run is retried until it succeeds.

use super::{Pods, Sandbox, infra, namespaces, pod_network, shm};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::records::pod::NamespaceKind;

impl Pods {
    /// Detaches the pod from its network unless that was done already;
    /// records that it was.
    pub(super) async fn release_sandbox_network(&self, sb: &mut Sandbox) -> Result<()> {
        if sb.network_released {
            return Ok(());
        }
        if let Some(netns) = sb.namespace(NamespaceKind::Net) {
            self.network.detach(pod_network(sb, netns)).await?;
        }
        sb.network_released = true;
        Ok(())
    }

    /// Kills the infra process, if the pod has one still.
    pub(super) async fn stop_infra(&self, sb: &mut Sandbox) -> Result<()> {
        if let Some(pid) = sb.infra_pid {
            infra::stop(&self.dirs.pod_state(&sb.id), pid).await?;
            sb.infra_pid = None;
        }
        Ok(())
    }

    /// Undoes everything [`Pods::set_up_sandbox`] made, logging what
    /// fails; used when RunPodSandbox fails half-way.
    pub(super) async fn release_sandbox(&self, sb: &Sandbox) {
        let mut sb = sb.clone();
        // A failed ADD is rolled back by the CNI client, but a rollback
        // DEL that failed too leaves its attachment cached: DEL again.
        if sb.network_released
            && sb.namespace(NamespaceKind::Net).is_some()
            && self.network.is_attached(&sb.id).await.unwrap_or(true)
        {
            sb.network_released = false;
        }
        let network = self.release_sandbox_network(&mut sb).await;
        if let Err(e) = &network {
            tracing::warn!(pod = %sb.id, error = %e, "releasing pod network; its network namespace is kept until a CNI DEL succeeds (retried every cni.teardown_retry_secs and at start-up)");
        }
        // Whatever infra process the start got to make, known PID or not.
        if let Err(e) = infra::stop_all(&self.dirs.pod_state(&sb.id)).await {
            tracing::warn!(pod = %sb.id, error = %e, "stopping pod infra process");
        }
        sb.infra_pid = None;
        if let Err(e) = self.release_sandbox_files(&sb).await {
            tracing::warn!(pod = %sb.id, error = %e, "releasing pod files");
        }
        if network.is_err() {
            self.lock_teardowns().insert(sb.id.clone(), sb);
        }
    }

    pub(super) fn lock_teardowns(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Sandbox>> {
        self.teardowns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tries again to detach the pods whose failed start could not be
    /// undone (see [`Pods::release_sandbox`]); those it can are
    /// removed for good.
    pub(crate) async fn retry_failed_teardowns(&self) {
        let pending = std::mem::take(&mut *self.lock_teardowns());
        for (id, mut sb) in pending {
            let done = match self.release_sandbox_network(&mut sb).await {
                Ok(()) => self.release_sandbox_files(&sb).await,
                Err(e) => Err(e),
            };
            match done {
                Ok(()) => {
                    tracing::info!(pod = %id, "tore down the network of a pod whose start failed")
                }
                Err(e) => {
                    tracing::debug!(pod = %id, error = %e, "network teardown of a failed pod start still fails");
                    self.lock_teardowns().insert(id, sb);
                }
            }
        }
    }

    /// Removes the namespace pins (the network one last), the shm mount,
    /// the pod's cgroup and its directories. While a CNI DEL is still owed
    /// (`network_released` unset), the network namespace, the user
    /// namespace that owns it and the pod's state directory stay: the
    /// plugins need the namespace to find what to undo.
    pub(super) async fn release_sandbox_files(&self, sb: &Sandbox) -> Result<()> {
        for kind in [NamespaceKind::Ipc, NamespaceKind::Uts, NamespaceKind::Pid] {
            if let Some(pin) = sb.namespace(kind) {
                namespaces::unpin(pin)?;
            }
        }
        let keep_netns = sb.namespace(NamespaceKind::Net).is_some() && !sb.network_released;
        if let Some(netns) = sb.namespace(NamespaceKind::Net).filter(|_| !keep_netns) {
            namespaces::remove_netns(&sb.id, netns)?;
        }
        // Last: it owns the others.
        if let Some(pin) = sb.namespace(NamespaceKind::User).filter(|_| !keep_netns) {
            namespaces::unpin(pin)?;
        }
        if let Some(shm) = &sb.shm {
            shm::unmount_shm(shm)?;
        }
        if let Some(pod_cgroup) = sb.pod_cgroup.clone() {
            let id = sb.id.clone();
            let cgroups = self.cgroups.clone();
            tokio::task::spawn_blocking(move || cgroups.remove_pod_cgroup(&pod_cgroup, &id))
                .await
                .map_err(|e| Error::Internal(format!("cgroup task: {e}")))??;
        }
        fsutil::remove_tree(&self.dirs.pod_root(&sb.id))?;
        if keep_netns {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {}: its network is not torn down yet; its network namespace is kept",
                sb.id
            )));
        }
        fsutil::remove_tree(&self.dirs.pod_state(&sb.id))
    }
}
