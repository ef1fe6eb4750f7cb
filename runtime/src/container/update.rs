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
        crate::validate::resources(&format!("container {} resources", c.id), &resources)?;
        let linux =
            spec::linux_resources(&resources, self.settings.pids_limit, self.cgroups.unified())?;
        // Hook points: NRI's UpdateContainer will be called before the
        // runtime's update, PostUpdateContainer told after.
        if let Err(e) = self.apply(&c, &linux, &resources.hugepage_limits).await {
            // The runtime may have written part of the request before it
            // failed: put back what the record says, so a refused update
            // changes nothing (a figure the record leaves unset, such as
            // no memory limit, stays as the runtime left it).
            let old = &c.config.resources;
            let restored = match spec::linux_resources(
                old,
                self.settings.pids_limit,
                self.cgroups.unified(),
            ) {
                Ok(linux) => self.apply(&c, &linux, &old.hugepage_limits).await,
                Err(e) => Err(e),
            };
            if let Err(r) = restored {
                tracing::warn!(container = %c.id, error = %r, "restoring resources after a failed update");
            }
            return Err(e);
        }
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

    /// Has the runtime apply `linux` to container `c`, then writes the
    /// hugetlb limits `hugepages` itself where they differ: `runc update`
    /// never changes them (and writes back those it was created with),
    /// crun's does.
    async fn apply(
        &self,
        c: &super::Container,
        linux: &oci_spec::runtime::LinuxResources,
        hugepages: &[(String, u64)],
    ) -> Result<()> {
        self.handlers
            .get(&c.runtime_handler)?
            .update(&c.id, linux)
            .await?;
        let Some(pod) = self.pods.pod(&c.sandbox_id) else {
            return Ok(());
        };
        let path = self.cgroups.container_cgroup(&pod.cgroup_parent, &c.id);
        let cgroups = self.cgroups.clone();
        let limits = hugepages.to_vec();
        tokio::task::spawn_blocking(move || cgroups.set_hugetlb(&path, &limits))
            .await
            .map_err(|e| Error::Internal(format!("cgroup task: {e}")))?
    }
}
