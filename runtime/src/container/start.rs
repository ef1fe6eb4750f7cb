//! StartContainer: the OCI runtime's `start` of a created container.

use nix::sys::signal::Signal;

use super::{CANNOT_RUN, CANNOT_RUN_EXIT_CODE, ContainerState, Containers};
use crate::crash;
use crate::error::{Error, Result};
use crate::state::now_nanos;

impl Containers {
    /// Starts a created container.
    pub(crate) async fn start(&self, id: &str) -> Result<()> {
        let entry = self.objects.find(id)?;
        let _op = entry.op().await;
        let c = entry.get();
        match c.state {
            ContainerState::Created => {}
            ContainerState::Running => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is already running",
                    c.id
                )));
            }
            ContainerState::Exited | ContainerState::Unknown => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} has exited and cannot be started again",
                    c.id
                )));
            }
        }
        let oci = self.handlers.get(&c.runtime_handler)?;
        // Until Started is announced, the exit watcher holds back Stopped.
        let start = self.events.starting(&c.id);
        let started_at = now_nanos();
        // Hook point: NRI's StartContainer will be called here.
        crash::point(crash::START_BEFORE_RUNTIME);
        let began = std::time::Instant::now();
        if let Err(e) = oci.start_created(&c.id, c.pid).await {
            self.metrics
                .container_exits
                .with_label_values(&[CANNOT_RUN])
                .inc();
            // It will never run: report it exited, and end what the
            // runtime made so the monitor goes.
            entry.update(|r| {
                r.state = ContainerState::Exited;
                r.exit_code = CANNOT_RUN_EXIT_CODE;
                r.finished_at = now_nanos();
                r.reason = CANNOT_RUN.into();
                r.message = e.to_string();
                let _ = self.save_container(r);
            });
            if let Err(e) = oci.kill(&c.id, Signal::SIGKILL as i32, false).await {
                tracing::debug!(container = %c.id, error = %e, "killing a container that could not start");
            }
            return Err(e);
        }
        crash::point(crash::START_AFTER_RUNTIME);
        // Hook point: NRI's PostStartContainer will be told once the
        // record says running, below.
        entry.update(|r| {
            // The exit watcher may already have seen it finish.
            if r.state == ContainerState::Created {
                r.state = ContainerState::Running;
            }
            r.started_at = started_at;
            self.save_container_state(r)
        })?;
        self.metrics.phase("container_start", began);
        self.metrics.container_starts.inc();
        start.started(self.pods.as_ref(), &self.objects, &entry.get());
        tracing::info!(container = %c.id, "container started");
        Ok(())
    }
}
