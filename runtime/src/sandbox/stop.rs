//! StopPodSandbox, the pod's side: its network, infra process and shm go;
//! its record stays, not ready, until RemovePodSandbox.

use super::{Pods, Sandbox, SandboxState, shm};
use crate::crash;
use crate::error::Result;
use crate::state::Entry;

impl Pods {
    /// Stops pod `entry`: tears its network down (once), kills its infra
    /// process and unmounts its shm. The caller holds the pod's `op` lock
    /// and has stopped its containers. Stopping a stopped pod is fine (the
    /// CRI makes Stop idempotent).
    pub(crate) async fn stop(&self, entry: &Entry<Sandbox>) -> Result<()> {
        let id = entry.id().to_string();
        let mut sb = entry.get();
        let before = sb.clone();
        let released = self.release_sandbox_network(&mut sb).await;
        if released.is_ok() {
            crash::point(crash::STOPP_AFTER_NETWORK);
        }
        let stopped = match released {
            Ok(()) => self.stop_infra(&mut sb).await,
            Err(e) => Err(e),
        };
        let unmounted = match (&stopped, &sb.shm) {
            (Ok(()), Some(shm)) => shm::unmount_shm(shm),
            _ => Ok(()),
        };
        if stopped.is_ok() && unmounted.is_ok() {
            sb.state = SandboxState::NotReady;
        }
        // Whatever was done is recorded, even when a later step failed.
        if sb != before {
            self.table.put(&id, &sb)?;
            entry.update(|s| *s = sb.clone());
            if sb.state != before.state {
                tracing::info!(pod = %id, "pod sandbox stopped");
            }
        }
        stopped.and(unmounted)
    }
}
