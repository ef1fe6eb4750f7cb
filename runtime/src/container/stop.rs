//! StopContainer: the container's stop signal, SIGKILL after the grace
//! period, and whatever its init left in its cgroup.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::{Container, Containers, is_done, rootfs};
use crate::crash;
use crate::error::{Error, Result};
use crate::oci::OciRuntime;
use crate::state::Entry;

/// How long a container may take to die after SIGKILL before the stop is
/// reported as failed.
const KILL_GRACE: Duration = Duration::from_secs(30);

impl Containers {
    /// Stops a container: its stop signal, then SIGKILL once `timeout` has
    /// passed. Stopping a stopped container, or one that is gone, is fine.
    pub(crate) async fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        let entry = match self.objects.find(id) {
            Err(Error::NotFound { .. }) => return Ok(()),
            r => r?,
        };
        let _op = entry.op().await;
        // Hook point: NRI's StopContainer will be called here.
        self.stop_entry(&entry, timeout).await
    }

    pub(super) async fn stop_entry(
        &self,
        entry: &Entry<Container>,
        timeout: Duration,
    ) -> Result<()> {
        let c = entry.get();
        if !is_done(&c) {
            let oci = self.handlers.get(&c.runtime_handler)?;
            self.stop_init(entry, oci, timeout).await?;
        }
        // Processes exec'd into a container that shares a PID namespace
        // outlive its init: a stopped container has none.
        match self.handlers.get(&c.runtime_handler) {
            Ok(oci) => {
                self.kill_leftovers(&c, oci).await?;
                self.release_runtime(&c, oci).await;
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }

    /// Has the OCI runtime forget a container that has stopped (its state
    /// and its cgroup) and unmounts its rootfs and image volumes, as
    /// containerd deletes a task, and its shim unmounts the rootfs, once
    /// it exited: the record keeps everything CRI reports (the writable
    /// layer stays, unmounted, until RemoveContainer), and RemoveContainer
    /// then has no runtime to run. Called under the container's op lock,
    /// with nothing left in its cgroup; a failure is left to
    /// RemoveContainer, which deletes with `--force` and unmounts again.
    pub(super) async fn release_runtime(&self, c: &Container, oci: &OciRuntime) {
        if let Err(e) = oci.delete(&c.id, false).await {
            tracing::debug!(container = %c.id, error = %e, "runtime delete after the stop; RemoveContainer retries");
            return;
        }
        // Nothing runs in it any more: the runtime has let it go.
        let bundle = self.dirs.container_state(&c.id);
        if let Err(e) = rootfs::unmount_image_volumes(&bundle)
            .and_then(|()| rootfs::unmount_rootfs(&bundle.join("rootfs")))
        {
            tracing::debug!(container = %c.id, error = %e, "unmounting after the stop; RemoveContainer retries");
        }
    }

    /// Ends the container's init: its stop signal, SIGKILL after `timeout`.
    pub(super) async fn stop_init(
        &self,
        entry: &Entry<Container>,
        oci: &OciRuntime,
        timeout: Duration,
    ) -> Result<()> {
        let c = entry.get();
        if !timeout.is_zero() {
            if let Err(e) = oci.kill(&c.id, c.stop_signal.number(), false).await {
                tracing::debug!(container = %c.id, error = %e, "stop signal not delivered");
            }
            crash::point(crash::STOP_AFTER_SIGNAL);
            let _ = tokio::time::timeout(timeout, entry.wait_for(is_done)).await;
        }
        if !is_done(&entry.get()) {
            if let Err(e) = oci.kill(&c.id, Signal::SIGKILL as i32, false).await {
                tracing::debug!(container = %c.id, error = %e, "SIGKILL not delivered");
            }
            crash::point(crash::STOP_AFTER_SIGNAL);
            if tokio::time::timeout(KILL_GRACE, entry.wait_for(is_done))
                .await
                .is_err()
            {
                return Err(Error::Internal(format!(
                    "container {} did not exit within {}s of SIGKILL",
                    c.id,
                    KILL_GRACE.as_secs()
                )));
            }
        }
        tracing::info!(container = %c.id, "container stopped");
        Ok(())
    }

    /// Kills whatever is left in the container's cgroup once its init is
    /// gone (the OCI runtime's `kill --all`, as containerd does for a
    /// container without a PID namespace of its own), and waits until
    /// nothing is.
    pub(super) async fn kill_leftovers(&self, c: &Container, oci: &OciRuntime) -> Result<()> {
        let Some(pod) = self.pods.pod(&c.sandbox_id) else {
            return Ok(());
        };
        let path = self.cgroups.container_cgroup(&pod.cgroup_parent, &c.id);
        let left = || {
            let path = path.clone();
            let cgroups = self.cgroups.clone();
            async move {
                tokio::task::spawn_blocking(move || cgroups.has_processes(&path))
                    .await
                    .map_err(|e| Error::Internal(format!("cgroup task: {e}")))?
            }
        };
        if !left().await? {
            return Ok(());
        }
        tracing::info!(container = %c.id, "killing the processes its init left in its cgroup");
        if let Err(e) = oci.kill(&c.id, Signal::SIGKILL as i32, true).await {
            tracing::debug!(container = %c.id, error = %e, "kill --all not delivered");
        }
        let deadline = tokio::time::Instant::now() + KILL_GRACE;
        while left().await? {
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Internal(format!(
                    "processes of container {} are still in its cgroup {path} {}s after SIGKILL",
                    c.id,
                    KILL_GRACE.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}
