//! Creating the container: the monitor's set-up, and the runtime's create
//! run with fresh stdio pipes that the runtime hands to the container's
//! init. Whatever the runtime prints before it exits is its own output,
//! kept for the error report.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::WaitStatus;
use nix::unistd::{Pid, pipe2};

use super::super::MonitorConfig;
use super::super::attach::Attach;
use super::super::console::ConsoleSocket;
use super::super::exit_status::unix_nanos_now;
use super::attachers::Stdin;
use super::event_loop::{Monitor, READ_BUF, scratch};
use super::exits::{Exits, reap_children};
use super::oom::OomWatch;
use super::output::{Outputs, open_log};
use super::requests::Requests;
use crate::error::{Error, IoContext, Result};
use crate::oci::runtime_message;

/// How long the runtime's create may take before it is killed.
const CREATE_TIMEOUT: Duration = Duration::from_secs(240);

impl Monitor {
    /// Sets up, runs the runtime's create and returns once the container
    /// is created.
    pub(super) fn create(config: &MonitorConfig) -> Result<Monitor> {
        nix::sys::prctl::set_child_subreaper(true).context(|| "become a child subreaper")?;
        let signals = block_signals()?;
        let log = config.log_path.as_deref().map(open_log).transpose()?;
        let requests = Requests::open(config.control_fifo.as_deref())?;
        let console = config
            .console_socket
            .as_deref()
            .map(ConsoleSocket::bind)
            .transpose()?;
        let attach = config
            .attach_socket
            .as_deref()
            .map(Attach::bind)
            .transpose()?;
        let (stdin_r, stdin_w) = match config.stdin {
            true => {
                let (r, w) = pipe2(OFlag::O_CLOEXEC).context(|| "create stdin pipe")?;
                fcntl(&w, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                    .context(|| "make the stdin pipe non-blocking")?;
                (Some(r), Some(w))
            }
            false => (None, None),
        };
        let (out_r, out_w) = output_pipe()?;
        let (err_r, err_w) = output_pipe()?;
        let mut monitor = Monitor {
            signals,
            outputs: Outputs::new(out_r, err_r, log),
            requests,
            stdin: Stdin::new(stdin_w, config.stdin_once),
            attach: None,
            tty: console.is_some(),
            exits: Exits::new(),
            oom: None,
            buf: vec![0; READ_BUF],
            drop_pending: Vec::new(),
        };

        let argv = &config.create_command;
        let program = argv.first().map(String::as_str).unwrap_or_default();
        if !config.bundle.is_dir() {
            return Err(Error::FailedPrecondition(format!(
                "bundle {} is not a directory",
                config.bundle.display()
            )));
        }
        // The Command holds the write ends; it is dropped right after the
        // spawn so that only the runtime (and then the container) has them.
        let create_pid = Command::new(program)
            .args(&argv[1..])
            .current_dir(&config.bundle)
            .stdin(match stdin_r {
                Some(r) => Stdio::from(r),
                None => Stdio::null(),
            })
            .stdout(out_w)
            .stderr(err_w)
            .spawn()
            .context(|| format!("run {program}"))?
            .id();
        let create_pid = Pid::from_raw(create_pid as i32);

        let mut captured = Vec::new();
        let (status, timed_out) = monitor.wait_for_create(create_pid, &mut captured)?;
        let said = runtime_message(&captured, b"");
        create_outcome(program, create_pid, status, timed_out, said)?;
        let container = read_pid_file(&config.pid_file)?;
        monitor
            .exits
            .created(container, Instant::now(), unix_nanos_now());
        // The runtime's create made the cgroup; the init has not run yet.
        monitor.oom = config.oom_file.clone().map(OomWatch::start);
        if let Some(console) = &console {
            // The container writes to its terminal, not to the pipes.
            let master = console.receive_master()?;
            fcntl(&master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .context(|| "make the terminal non-blocking")?;
            if config.stdin {
                monitor.stdin.set_sink(
                    master
                        .try_clone()
                        .context(|| "duplicate the terminal for stdin")?,
                );
            }
            monitor.outputs.streams[0].fd = Some(master);
        }
        monitor.attach = attach;
        Ok(monitor)
    }

    /// Waits for the create to exit while keeping what it prints; kills it
    /// at the timeout. Returns its status and whether it was killed.
    fn wait_for_create(
        &mut self,
        create_pid: Pid,
        captured: &mut Vec<u8>,
    ) -> Result<(WaitStatus, bool)> {
        let deadline = Instant::now() + CREATE_TIMEOUT;
        let mut timed_out = false;
        loop {
            let timeout = (!timed_out).then(|| deadline.saturating_duration_since(Instant::now()));
            let ready = self.poll(timeout)?;
            for i in 0..2 {
                if ready.outputs[i] {
                    self.outputs.capture(i, scratch(&mut self.buf), captured);
                }
            }
            if ready.signal {
                self.drain_signals();
                for (pid, status) in reap_children() {
                    if pid == create_pid {
                        // The runtime's output is all in the pipes by now.
                        for i in 0..2 {
                            self.outputs.capture(i, scratch(&mut self.buf), captured);
                        }
                        return Ok((status, timed_out));
                    }
                    self.exits.reaped_early(pid, status);
                }
            }
            if !timed_out && Instant::now() >= deadline {
                let _ = kill(create_pid, Signal::SIGKILL);
                timed_out = true;
            }
        }
    }
}

/// Whether the create of `program` (pid `create_pid`) that ended with
/// `status` worked; `said` is what it printed. The runtime's own words
/// need no more context: the spawner names the container.
fn create_outcome(
    program: &str,
    create_pid: Pid,
    status: WaitStatus,
    timed_out: bool,
    said: Option<String>,
) -> Result<()> {
    if timed_out {
        return Err(Error::External {
            what: program.to_string(),
            message: format!(
                "create timed out after {}{}",
                humantime::format_duration(CREATE_TIMEOUT),
                said.map(|s| format!(": {s}")).unwrap_or_default()
            ),
        });
    }
    if status != WaitStatus::Exited(create_pid, 0) {
        return Err(Error::External {
            what: program.to_string(),
            message: said.unwrap_or_else(|| describe(status)),
        });
    }
    if let Some(said) = said {
        // Warnings of a create that worked: keep them for the operator.
        eprintln!("crius-monitor: {program} create said: {said}");
    }
    Ok(())
}

/// Blocks SIGCHLD, to read it from the returned signalfd, and the
/// signals that target a daemon's process group or terminal (TERM, INT,
/// HUP, QUIT), so none of them ends the monitor. Blocked rather than
/// ignored: children get a clean mask from `Command` but would inherit an
/// ignored disposition.
fn block_signals() -> Result<SignalFd> {
    let mut blocked = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        blocked.add(signal);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None).context(|| "block signals")?;
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context(|| "create signalfd")
}

/// A pipe for one output stream: the read end is ours and non-blocking;
/// the write end stays blocking, as the container expects.
fn output_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).context(|| "create output pipe")?;
    fcntl(&r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).context(|| "make output pipe non-blocking")?;
    Ok((r, w))
}

fn read_pid_file(path: &Path) -> Result<Pid> {
    let text = std::fs::read_to_string(path)
        .context(|| format!("read the runtime's pid file {}", path.display()))?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|&pid| pid > 0)
        .map(Pid::from_raw)
        .ok_or_else(|| {
            Error::Internal(format!(
                "pid file {} holds {:?}, not a pid",
                path.display(),
                text.trim()
            ))
        })
}

/// How a process ended, for when it said nothing.
fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with code {code} without a message"),
        WaitStatus::Signaled(_, signal, _) => format!("killed by {signal} without a message"),
        other => format!("ended oddly: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: Pid = Pid::from_raw(7);

    fn message(r: Result<()>) -> String {
        match r.unwrap_err() {
            Error::External { what, message } => {
                assert_eq!(what, "runc");
                message
            }
            other => panic!("not the runtime's error: {other}"),
        }
    }

    #[test]
    fn a_create_that_worked_is_ok_even_with_warnings() {
        let ok = WaitStatus::Exited(CREATE, 0);
        create_outcome("runc", CREATE, ok, false, None).unwrap();
        create_outcome("runc", CREATE, ok, false, Some("warning".into())).unwrap();
    }

    #[test]
    fn a_failed_create_says_what_the_runtime_said_or_how_it_ended() {
        let failed = WaitStatus::Exited(CREATE, 1);
        let said = Some("no such image".to_string());
        assert_eq!(
            message(create_outcome("runc", CREATE, failed, false, said)),
            "no such image"
        );
        assert_eq!(
            message(create_outcome("runc", CREATE, failed, false, None)),
            "exited with code 1 without a message"
        );
        let killed = WaitStatus::Signaled(CREATE, Signal::SIGSEGV, false);
        assert_eq!(
            message(create_outcome("runc", CREATE, killed, false, None)),
            "killed by SIGSEGV without a message"
        );
    }

    #[test]
    fn a_create_killed_at_its_timeout_says_so_first() {
        let killed = WaitStatus::Signaled(CREATE, Signal::SIGKILL, false);
        let msg = message(create_outcome(
            "runc",
            CREATE,
            killed,
            true,
            Some("stuck".into()),
        ));
        assert_eq!(msg, "create timed out after 4m: stuck");
        let msg = message(create_outcome("runc", CREATE, killed, true, None));
        assert_eq!(msg, "create timed out after 4m");
    }

    #[test]
    fn the_pid_file_must_hold_a_positive_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        std::fs::write(&path, "4242\n").unwrap();
        assert_eq!(read_pid_file(&path).unwrap(), Pid::from_raw(4242));
        for bad in ["", "0", "-3", "abc"] {
            std::fs::write(&path, bad).unwrap();
            let err = read_pid_file(&path).unwrap_err();
            assert!(err.to_string().contains("not a pid"), "{bad:?}: {err}");
        }
        assert!(read_pid_file(&dir.path().join("none")).is_err());
    }
}
