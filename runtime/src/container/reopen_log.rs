//! ReopenContainerLog: the monitor closes the container's log file and
//! opens it anew (after kubelet rotated it).

use std::path::Path;
use std::time::{Duration, Instant};

use super::{ContainerState, Containers};
use crate::error::{Error, Result};
use crate::monitor::control::{self, CONTROL_FIFO, Control};

/// How long a reopened log file may take to appear.
const REOPEN_TIMEOUT: Duration = Duration::from_secs(5);

impl Containers {
    /// Asks the container's monitor to reopen its log file (after kubelet
    /// renamed it for rotation) and waits until the new file exists.
    pub(crate) async fn reopen_log(&self, id: &str) -> Result<()> {
        let entry = self.objects.find(id)?;
        let c = entry.get();
        if c.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running; its log is not open",
                c.id
            )));
        }
        let Some(log) = c.log_path.clone() else {
            return Ok(());
        };
        let fifo = self.dirs.container_state(&c.id).join(CONTROL_FIFO);
        control::send(&fifo, Control::ReopenLog)?;
        let deadline = Instant::now() + REOPEN_TIMEOUT;
        while !Path::new(&log).exists() {
            if Instant::now() > deadline {
                return Err(Error::Internal(format!(
                    "container {}: the monitor did not reopen {} within {}s",
                    c.id,
                    log.display(),
                    REOPEN_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}
