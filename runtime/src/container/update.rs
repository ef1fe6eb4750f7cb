//! UpdateContainerResources: new cgroup limits for a created or running
//! container, through the OCI runtime's `update`, kept in its record.

use super::{ContainerState, Containers, Resources, spec};
use crate::error::{Error, Result};

impl Containers {
    /// Applies new resources to a created or running container and keeps
    /// them in its record (ContainerStatus reports them).
    pub(crate) async fn update_resources(&self, id: &str, resources: Resources) -> Result<()> {
        let entry = self.objects.find(id)?;
        let _op = entry.op().await;
        let c = entry.get();
        if !matches!(c.state, ContainerState::Created | ContainerState::Running) {
            return Err(Error::FailedPrecondition(format!(
                "container {} has exited; its resources cannot change",
                c.id
            )));
        }
        let linux =
            spec::linux_resources(&resources, self.settings.pids_limit, self.cgroups.unified())?;
        let oci = self.handlers.get(&c.runtime_handler)?;
        // Hook points: NRI's UpdateContainer will be called before the
        // runtime's update, PostUpdateContainer told after.
        oci.update(&c.id, &linux).await?;
        entry.update(|r| {
            // The OOM score is the process's, not the cgroup's: it stays.
            let oom_score_adj = r.config.resources.oom_score_adj;
            r.config.resources = Resources {
                oom_score_adj,
                ..resources
            };
            self.save_container(r)
        })?;
        tracing::info!(container = %c.id, "container resources updated");
        Ok(())
    }
}
