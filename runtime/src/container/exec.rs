//! ExecSync, and the start every exec shares: the process spec of a
//! command run in a running container.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Containers;
use super::{Container, ContainerState};
use crate::error::{Error, Result};
use crate::oci::OciRuntime;
use crate::state::new_id;

pub use crate::oci::ExecOutput;

/// The most of each output stream ExecSync returns (kubelet's own cap on
/// what it reads back, 16 MiB).
pub const MAX_EXEC_OUTPUT: usize = 16 << 20;

/// Writes the process an exec runs: the container's own (its user,
/// groups, environment, working directory, capabilities, rlimits,
/// no_new_privs, AppArmor) with `cmd` for arguments and a terminal or not
/// (`TERM=xterm` with one, when the environment names no TERM), as
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
    // A terminal exec (crictl exec -it) gets a TERM, as containerd gives it.
    let mut env = process.env().clone().unwrap_or_default();
    super::spec::with_term(&mut env, terminal);
    process.set_env(Some(env));
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

impl Containers {
    /// Checks that container `id` runs and `cmd` is not empty, and writes
    /// the process spec of an exec of `cmd` (with a terminal or not) into
    /// the container's directory: the common start of ExecSync and Exec.
    pub(super) fn exec_target(
        &self,
        id: &str,
        cmd: &[String],
        terminal: bool,
    ) -> Result<ExecTarget<'_>> {
        let entry = self.objects.find(id)?;
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
        let oci = self.handlers.get(&c.runtime_handler)?;
        let dir = self.dirs.container_state(&c.id);
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

impl Containers {
    /// ExecSync: runs `cmd` in running container `id`, its output bounded,
    /// killed at `timeout` ([`Error::Timeout`]).
    pub(crate) async fn exec_sync(
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
}
