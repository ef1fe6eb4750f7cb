//! What is done to a running container besides its lifecycle: ExecSync,
//! UpdateContainerResources and ReopenContainerLog.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Container, ContainerState, Resources, spec};
use crate::Runtime;
use crate::error::{Error, Result};
use crate::monitor::control::{self, CONTROL_FIFO, Control};
use crate::oci::OciRuntime;
use crate::state::new_id;

pub use crate::oci::ExecOutput;

/// The most of each output stream ExecSync returns (kubelet's own cap on
/// what it reads back, 16 MiB).
pub const MAX_EXEC_OUTPUT: usize = 16 << 20;
/// How long a reopened log file may take to appear.
const REOPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes the process an exec runs: the container's own (its user,
/// groups, environment, working directory, capabilities, rlimits,
/// no_new_privs, AppArmor) with `cmd` for arguments and a terminal or not, as
/// containerd and CRI-O do. Passed whole (`exec --process`), because a bare
/// `exec ID CMD` is not read the same way by every runtime (crun 1.8 runs
/// it as root).
fn write_exec_process(
    config_json: &Path,
    cmd: &[String],
    terminal: bool,
    out: &Path,
) -> Result<()> {
    let spec = oci_spec::runtime::Spec::load(config_json)
        .map_err(|e| Error::Internal(format!("read {}: {e}", config_json.display())))?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| Error::Internal(format!("{} has no process", config_json.display())))?;
    process.set_args(Some(cmd.to_vec()));
    process.set_terminal(Some(terminal));
    process.set_console_size(None);
    let json = serde_json::to_vec(&process)
        .map_err(|e| Error::Internal(format!("encode exec process: {e}")))?;
    std::fs::write(out, json).map_err(|e| Error::io(format!("write {}", out.display()), e))
}

/// What an exec in a running container starts from.
pub(super) struct ExecTarget<'a> {
    /// The container's record.
    pub c: Container,
    /// Its OCI runtime.
    pub oci: &'a OciRuntime,
    /// Its state directory (the bundle).
    pub dir: PathBuf,
    /// A name unique to this exec, for its files.
    pub name: String,
    /// Where the runtime writes the exec'd process's pid.
    pub pid_file: PathBuf,
    /// The process spec the runtime runs (written already).
    pub process_file: PathBuf,
}

impl Runtime {
    /// Checks that container `id` runs and `cmd` is not empty, and writes
    /// the process spec of an exec of `cmd` (with a terminal or not) into
    /// the container's directory: the common start of ExecSync and Exec.
    pub(super) fn exec_target(
        &self,
        id: &str,
        cmd: &[String],
        terminal: bool,
    ) -> Result<ExecTarget<'_>> {
        let entry = self.containers.find(id)?;
        let c = entry.get();
        if c.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running ({:?}); cannot exec in it",
                c.id, c.state
            )));
        }
        if cmd.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "exec in container {}: cmd is empty",
                c.id
            )));
        }
        let oci = self.oci_runtime(&c.runtime_handler)?;
        let dir = self.container_state_dir(&c.id);
        let name = new_id()?[..16].to_string();
        let pid_file = dir.join(format!("exec-{name}.pid"));
        let process_file = dir.join(format!("exec-{name}.json"));
        write_exec_process(&dir.join("config.json"), cmd, terminal, &process_file)?;
        Ok(ExecTarget {
            c,
            oci,
            dir,
            name,
            pid_file,
            process_file,
        })
    }
}

impl Runtime {
    /// Runs `cmd` in a running container and returns its output and exit
    /// code; with a `timeout` the command is killed when it expires and the
    /// error is [`Error::Timeout`].
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput> {
        let ExecTarget {
            c,
            oci,
            pid_file,
            process_file,
            ..
        } = self.exec_target(id, cmd, false)?;
        let out = oci
            .exec(&c.id, &process_file, timeout, MAX_EXEC_OUTPUT, &pid_file)
            .await;
        let _ = crate::fsutil::remove_file(&process_file);
        out
    }

    /// Applies new resources to a created or running container and keeps
    /// them in its record (ContainerStatus reports them).
    pub async fn update_container_resources(&self, id: &str, resources: Resources) -> Result<()> {
        let entry = self.containers.find(id)?;
        let _op = entry.op().await;
        let c = entry.get();
        if !matches!(c.state, ContainerState::Created | ContainerState::Running) {
            return Err(Error::FailedPrecondition(format!(
                "container {} has exited; its resources cannot change",
                c.id
            )));
        }
        let linux = spec::linux_resources(
            &resources,
            self.config.runtime.pids_limit,
            self.cgroups.unified(),
        )?;
        let oci = self.oci_runtime(&c.runtime_handler)?;
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

    /// Asks the container's monitor to reopen its log file (after kubelet
    /// renamed it for rotation) and waits until the new file exists.
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let entry = self.containers.find(id)?;
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
        let fifo = self.container_state_dir(&c.id).join(CONTROL_FIFO);
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
