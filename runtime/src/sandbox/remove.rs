//! RemovePodSandbox, the pod's side: what Stop left (the network if it
//! is still attached, the namespace pins, the cgroup, the directories) and
//! the record.

use super::{Pods, Sandbox};
use crate::crash;
use crate::error::Result;
use crate::state::Entry;

impl Pods {
    /// Removes pod `entry` (tearing its network down if Stop did not) and
    /// its record. The caller holds the pod's `op` lock and has removed its
    /// containers. Removing a pod that is gone is fine.
    pub(crate) async fn remove(&self, entry: &Entry<Sandbox>) -> Result<()> {
        let id = entry.id().to_string();
        if self.objects.find(&id).is_err() {
            return Ok(()); // removed while the caller waited
        }
        let mut sb = entry.get();
        let released = self.release_sandbox_network(&mut sb).await;
        if sb.network_released && !entry.lock().network_released {
            // Not repeated if a later step fails and kubelet retries.
            self.table.put(&id, &sb)?;
            entry.update(|s| s.network_released = true);
        }
        released?;
        crash::point(crash::REMOVEP_AFTER_NETWORK);
        self.stop_infra(&mut sb).await?;
        self.release_sandbox_files(&sb).await?;
        crash::point(crash::REMOVEP_AFTER_FILES);
        self.table.delete(&id)?;
        self.objects.remove(&id);
        self.objects.release_name(&sb.config.unique_name(), &id);
        tracing::info!(pod = %id, "pod sandbox removed");
        Ok(())
    }
}
