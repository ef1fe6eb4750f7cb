//! Every helper process crius runs beside the daemon — their bodies, all
//! modes of the `crius-monitor` binary, and the daemon's side of them:
//!
//! - the per-container monitor ([`main`], in `process/`; spawned by
//!   [`spawn`], waited for by [`wait_exit`]);
//! - the parent of a streamed exec ([`exec_main`]);
//! - the infra process of a pod that shares one PID namespace, and its
//!   keeper ([`infra_main`], in [`pod_infra`]; started and stopped by
//!   the daemon, by the pod part).
//!
//! The daemon starts each the same way (`helper`) and holds a detached
//! one by a pidfd (`pidfd`), never by a bare PID.
//!
//! Each container runs under a small `crius-monitor` process (the job of
//! conmon or containerd-shim). The monitor detaches from the daemon so it
//! outlives daemon restarts, becomes the child subreaper that runs the OCI
//! runtime's `create` (and so the parent of the container's init), owns the
//! container's stdout and stderr and writes them to the CRI log file, and
//! records how the container ended in an exit file before it exits.
//!
//! Daemon side: [`spawn`] starts a monitor and returns once the container is
//! created; [`wait_exit`] waits for a monitor to go and reads its exit file.
//! Monitor side: [`main`], the container monitor's mode of the
//! `crius-monitor` binary — plain std and nix, one blocking `poll` loop, no
//! async runtime.

pub mod attach;
pub(crate) mod console;
pub mod control;
pub mod cri_log;
mod exec;
mod exit_status;
pub(crate) mod helper;
mod pidfd;
pub mod pod_infra;
mod process;
mod spawn;
mod sync;
mod trim;
mod wait;

#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use exec::{EXEC_ARG, exec_main, is_exec_helper};
pub use exit_status::{ExitStatus, read_exit_file};
pub(crate) use pidfd::Pidfd;
pub use pod_infra::{INFRA_ARG, infra_main, is_pod_infra};
pub use process::main;
pub use spawn::{Spawned, find_monitor_bin, spawn};
pub use wait::wait_exit;

/// The monitor's configuration file in the per-container directory.
pub const CONFIG_FILE: &str = "monitor.json";
/// The file holding the monitor's pid, in the per-container directory.
pub const PID_FILE: &str = "monitor.pid";
/// The monitor's own diagnostics, in the per-container directory.
pub const LOG_FILE: &str = "monitor.log";

/// Everything a monitor needs, written by the daemon as `monitor.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// The container this monitor watches.
    pub container_id: String,
    /// The runtime's create argv, from
    /// [`OciRuntime::create_command`](crate::oci::OciRuntime::create_command).
    pub create_command: Vec<String>,
    /// The bundle; the working directory of the create command.
    pub bundle: PathBuf,
    /// Where the runtime writes the container's init pid.
    pub pid_file: PathBuf,
    /// The CRI log file (parent directories are created); `None` discards
    /// the container's output.
    pub log_path: Option<PathBuf>,
    /// Where the monitor records the container's [`ExitStatus`].
    pub exit_file: PathBuf,
    /// The control FIFO ([`control`]) the monitor reads requests from,
    /// made by the daemon; `None`: no requests.
    #[serde(default)]
    pub control_fifo: Option<PathBuf>,
    /// The container's cgroup file counting OOM kills (`memory.events` on
    /// cgroup v2, `memory.oom_control` on v1), read once the container has
    /// ended.
    #[serde(default)]
    pub oom_file: Option<PathBuf>,
    /// Where the runtime sends the terminal's master (`--console-socket`
    /// in the create command) for a container with a terminal; its output
    /// is then read from the terminal.
    #[serde(default)]
    pub console_socket: Option<PathBuf>,
    /// Keep the container's stdin open: a pipe whose write end the monitor
    /// holds (for attach), instead of /dev/null.
    #[serde(default)]
    pub stdin: bool,
    /// Close the container's stdin once the first attacher that sent
    /// stdin has ended it (CRI `stdin_once`).
    #[serde(default)]
    pub stdin_once: bool,
    /// Where the monitor serves attach ([`attach`]); `None`: no attach.
    #[serde(default)]
    pub attach_socket: Option<PathBuf>,
}

#[cfg(test)]
impl MonitorConfig {
    /// A configuration for container `c1` whose create is `/bin/true` and
    /// whose bundle, pid file and exit file are in `dir`; nothing else.
    pub(crate) fn for_test(dir: &Path) -> MonitorConfig {
        MonitorConfig {
            container_id: "c1".into(),
            create_command: vec!["/bin/true".into()],
            bundle: dir.into(),
            pid_file: dir.join("pid"),
            log_path: None,
            exit_file: dir.join("exit"),
            control_fifo: None,
            oom_file: None,
            console_socket: None,
            stdin: false,
            stdin_once: false,
            attach_socket: None,
        }
    }
}
