//! Monitor side: the `crius-monitor` process.
//!
//! 1. Read `monitor.json` (argv[1]).
//! 2. Detach: fork (the first process exits at once and its spawner reaps
//!    it, so the real monitor is re-parented and survives the daemon),
//!    `setsid`, close inherited fds, send our own stderr to `monitor.log`.
//! 3. Become a child subreaper, block SIGCHLD (read through a signalfd) and
//!    the signals a daemon's process group or terminal may get (SIGPIPE is
//!    already ignored by the Rust runtime).
//! 4. Run the runtime's create with fresh stdout/stderr pipes (stdin is
//!    /dev/null); the runtime hands them to the container's init. Whatever
//!    the runtime prints before it exits is its own output, kept for the
//!    error report.
//! 5. Report `ok <container pid> <monitor pid>` or `error <message>` on
//!    stdout, then drop stdout.
//! 6. Loop on `poll`: copy the pipes into the CRI log and to the attachers
//!    ([`super::attach`]), stdin from attachers to the container, reap
//!    every child; after start-up and after every few quiet seconds, give
//!    back buffers, heap and code pages ([`super::trim`]);
//!    when the container's init has been reaped and the pipes are drained
//!    (bounded, in case a stray process keeps them open), write the exit
//!    file and exit.
//!
//! One file a job, each owning its state: [`output`] (the container's
//! stdout and stderr into the CRI log and to attachers), [`attachers`]
//! (attachers' stdin into the container), [`requests`] (the control FIFO),
//! [`exits`] (reaping, the container's exit status, the exit file),
//! [`oom`] (the OOM kill count of the container's cgroup, watched),
//! [`create`] (setting up and running the runtime's create), and
//! [`event_loop`], the `poll` loop that ties them together.

mod attachers;
mod create;
mod event_loop;
mod exits;
mod oom;
mod output;
mod requests;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{ForkResult, fork, getpid, setsid};

use super::sync::Report;
use super::{LOG_FILE, MonitorConfig};
use crate::error::{Error, IoContext, Result};
use event_loop::Monitor;

/// The entry point of the `crius-monitor` binary: `crius-monitor
/// <monitor.json>`. Only ever returns by exiting.
pub fn main() -> ! {
    std::process::exit(run())
}

fn run() -> i32 {
    let Some(config_path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        report(&Report::Error("usage: crius-monitor <monitor.json>".into()));
        return 2;
    };
    let config = match load_config(&config_path) {
        Ok(config) => config,
        Err(e) => {
            report(&Report::Error(e.to_string()));
            return 1;
        }
    };
    match detach(&config_path) {
        Ok(Detached::FirstProcess) => return 0,
        Ok(Detached::Monitor) => {}
        Err(e) => {
            report(&Report::Error(e.to_string()));
            return 1;
        }
    }
    let monitor = match Monitor::create(&config) {
        Ok(monitor) => monitor,
        // The runtime's own words need no more context: the spawner names
        // the container.
        Err(Error::External { message, .. }) => {
            report(&Report::Error(message));
            return 1;
        }
        Err(e) => {
            report(&Report::Error(e.to_string()));
            return 1;
        }
    };
    report(&Report::Ok {
        container_pid: monitor.container_pid().as_raw(),
        monitor_pid: getpid().as_raw(),
    });
    // The spawner reads our stdout to its end: close it.
    let null = OpenOptions::new().write(true).open("/dev/null");
    if let Err(e) = null.and_then(|null| Ok(nix::unistd::dup2_stdout(null)?)) {
        eprintln!("crius-monitor: replace stdout: {e}");
    }
    monitor.run(&config)
}

fn load_config(path: &Path) -> Result<MonitorConfig> {
    let data = std::fs::read(path).context(|| format!("read {}", path.display()))?;
    let config: MonitorConfig = serde_json::from_slice(&data).map_err(|e| Error::Store {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if config.create_command.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{}: empty create_command",
            path.display()
        )));
    }
    Ok(config)
}

/// Writes the report on stdout; a spawner that has gone is no reason to stop.
fn report(report: &Report) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&report.encode());
    let _ = stdout.flush();
}

enum Detached {
    /// The process the daemon started; it exits now.
    FirstProcess,
    /// The detached monitor.
    Monitor,
}

fn detach(config_path: &Path) -> Result<Detached> {
    // SAFETY: nothing in this process has started a thread, so the child is
    // a full copy of a single-threaded program and may run any code.
    match unsafe { fork() }.context(|| "fork the monitor")? {
        ForkResult::Parent { .. } => return Ok(Detached::FirstProcess),
        ForkResult::Child => {}
    }
    setsid().context(|| "setsid")?;
    // Hold no mount busy.
    nix::unistd::chdir("/").context(|| "chdir /")?;
    close_inherited_fds()?;
    // Our own diagnostics; stderr must not stay the spawner's pipe, or the
    // spawner would wait for it until we exit.
    let log = config_path
        .parent()
        .map(|dir| dir.join(LOG_FILE))
        .unwrap_or_else(|| PathBuf::from("/dev/null"));
    let stderr = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(&log)
        .or_else(|_| File::options().write(true).open("/dev/null"))
        .context(|| format!("open {}", log.display()))?;
    nix::unistd::dup2_stderr(stderr).context(|| "redirect stderr")?;
    Ok(Detached::Monitor)
}

/// Closes every fd but stdin, stdout and stderr: the daemon (or a library
/// in it) may have leaked some without close-on-exec, and a held pipe end
/// or socket would outlive its owner for as long as the container runs.
fn close_inherited_fds() -> Result<()> {
    // SAFETY: close_range only closes fds; no Rust object owns an fd >= 3
    // at this point (the config file is closed), so none is left dangling.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if r < 0 {
        return Err(Error::io(
            "close inherited fds",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
