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

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, pipe2, setsid};

use super::attach::{
    Attach, FromAttacher, MAX_STDIN_PACKET, STDERR_TAG, STDOUT_TAG, read_attacher,
};
use super::console::{ConsoleSocket, set_window_size};
use super::control::{Control, take_requests};
use super::cri_log::{LineSplitter, Stream, timestamp_now};
use super::exit_status::{ExitStatus, oom_kills, unix_nanos_now, write_exit_file};
use super::sync::Report;
use super::{LOG_FILE, MonitorConfig};
use crate::error::{Error, IoContext, Result};
use crate::oci::runtime_message;

/// How long the runtime's create may take before it is killed.
const CREATE_TIMEOUT: Duration = Duration::from_secs(240);
/// How long to keep reading the pipes once the init has exited, when some
/// other process still holds them open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// One read from a pipe.
const READ_BUF: usize = 32 * 1024;
/// How long the monitor must have had nothing to do before it gives back
/// its buffers and the code pages its last activity brought in.
const QUIET_BEFORE_TRIM: Duration = Duration::from_secs(5);
/// Reads from one pipe before going back to `poll`.
const READS_PER_WAKE: usize = 16;
/// The most of the runtime's own output kept for an error report.
const MAX_CAPTURED: usize = 64 * 1024;

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
        container_pid: monitor.container_pid.as_raw(),
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

/// One of the container's output pipes.
struct Output {
    stream: Stream,
    /// The read end, non-blocking; `None` once it reached end of file.
    fd: Option<OwnedFd>,
    splitter: LineSplitter,
}

enum Read {
    Data(usize),
    Eof,
    Empty,
}

impl Output {
    fn read(&mut self, buf: &mut [u8]) -> Read {
        let Some(fd) = &self.fd else {
            return Read::Eof;
        };
        loop {
            match nix::unistd::read(fd, buf) {
                Ok(0) => {
                    self.fd = None;
                    return Read::Eof;
                }
                Ok(n) => return Read::Data(n),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Read::Empty,
                // A terminal whose last process has gone.
                Err(Errno::EIO) => {
                    self.fd = None;
                    return Read::Eof;
                }
                Err(e) => {
                    eprintln!(
                        "crius-monitor: read container {}: {e}",
                        self.stream.as_str()
                    );
                    self.fd = None;
                    return Read::Eof;
                }
            }
        }
    }
}

/// Which watched fds are ready.
#[derive(Default)]
struct Ready {
    outputs: [bool; 2],
    signal: bool,
    control: bool,
    listener: bool,
    /// Attachers with events, and whether they hung up.
    attachers: Vec<(usize, bool)>,
    stdin: bool,
}

impl Ready {
    /// Something is ready.
    fn any(&self) -> bool {
        let Ready {
            outputs,
            signal,
            control,
            listener,
            attachers,
            stdin,
        } = self;
        outputs.iter().any(|o| *o)
            || *signal
            || *control
            || *listener
            || *stdin
            || !attachers.is_empty()
    }
}

/// What a poll slot watches.
#[derive(Clone, Copy)]
enum Slot {
    Output(usize),
    Signal,
    Control,
    Listener,
    Attacher(usize),
    Stdin,
}

struct Monitor {
    signals: SignalFd,
    outputs: [Output; 2],
    log: Option<File>,
    log_failed: bool,
    /// The control FIFO, read end (opened read-write so that it never
    /// reports end of file when a writer goes).
    control: Option<File>,
    control_pending: Vec<u8>,
    container_pid: Pid,
    /// Where attachers' stdin goes (non-blocking): the write end of the
    /// container's stdin pipe, or the terminal's master; held open so
    /// that the container does not read end-of-file.
    stdin: Option<OwnedFd>,
    /// Stdin not yet taken by the container; attachers are not read
    /// meanwhile.
    stdin_pending: Vec<u8>,
    /// The attach socket and attachers, once the container is created.
    attach: Option<Attach>,
    /// The container has a terminal (outputs[0] is its master).
    tty: bool,
    /// Children reaped before the container's pid was known.
    reaped_early: Vec<(Pid, WaitStatus)>,
    buf: Vec<u8>,
    records: Vec<u8>,
    /// Code mappings to drop right before the next wait.
    drop_pending: Vec<(usize, usize)>,
}

impl Monitor {
    /// Sets up, runs the runtime's create and returns once the container
    /// is created.
    fn create(config: &MonitorConfig) -> Result<Monitor> {
        nix::sys::prctl::set_child_subreaper(true).context(|| "become a child subreaper")?;
        let signals = block_signals()?;
        let log = config.log_path.as_deref().map(open_log).transpose()?;
        let control = config
            .control_fifo
            .as_deref()
            .map(open_control)
            .transpose()?;
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
            outputs: [
                Output {
                    stream: Stream::Stdout,
                    fd: Some(out_r),
                    splitter: LineSplitter::new(Stream::Stdout),
                },
                Output {
                    stream: Stream::Stderr,
                    fd: Some(err_r),
                    splitter: LineSplitter::new(Stream::Stderr),
                },
            ],
            log,
            log_failed: false,
            control,
            control_pending: Vec::new(),
            container_pid: Pid::from_raw(0),
            stdin: stdin_w,
            stdin_pending: Vec::new(),
            attach: None,
            tty: console.is_some(),
            reaped_early: Vec::new(),
            buf: vec![0; READ_BUF],
            records: Vec::new(),
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
        monitor.container_pid = read_pid_file(&config.pid_file)?;
        if let Some(console) = &console {
            // The container writes to its terminal, not to the pipes.
            let master = console.receive_master()?;
            fcntl(&master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .context(|| "make the terminal non-blocking")?;
            if config.stdin {
                monitor.stdin = Some(
                    master
                        .try_clone()
                        .context(|| "duplicate the terminal for stdin")?,
                );
            }
            monitor.outputs[0].fd = Some(master);
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
                    self.capture(i, captured);
                }
            }
            if ready.signal {
                self.drain_signals();
                for (pid, status) in reap_children() {
                    if pid == create_pid {
                        // The runtime's output is all in the pipes by now.
                        for i in 0..2 {
                            self.capture(i, captured);
                        }
                        return Ok((status, timed_out));
                    }
                    self.reaped_early.push((pid, status));
                }
            }
            if !timed_out && Instant::now() >= deadline {
                let _ = kill(create_pid, Signal::SIGKILL);
                timed_out = true;
            }
        }
    }

    /// Reads what is available on output `i` into `captured` (bounded).
    fn capture(&mut self, i: usize, captured: &mut Vec<u8>) {
        self.ensure_buf();
        while let Read::Data(n) = self.outputs[i].read(&mut self.buf) {
            let room = MAX_CAPTURED.saturating_sub(captured.len());
            captured.extend_from_slice(&self.buf[..n.min(room)]);
        }
    }

    /// Copies the container's output into the log until its init has ended
    /// and the pipes are drained; writes the exit file. Returns the exit
    /// code of the monitor.
    fn run(mut self, config: &MonitorConfig) -> i32 {
        let mut exit = self.take_early_exit();
        let mut drain_until = exit.as_ref().map(|_| Instant::now() + DRAIN_AFTER_EXIT);
        // What start-up brought in goes now; what activity brings in later
        // goes once things are quiet again.
        self.quiet();
        let mut trim_at = None;
        loop {
            let open = self.outputs.iter().any(|o| o.fd.is_some());
            if let Some(until) = drain_until
                && (!open || Instant::now() >= until)
            {
                break;
            }
            let wake = match (drain_until, trim_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = wake.map(|at| at.saturating_duration_since(Instant::now()));
            let ready = match self.poll(timeout) {
                Ok(ready) => ready,
                Err(e) => {
                    // Cannot happen with valid fds; still, never lose the
                    // exit status: stop logging and wait for the init.
                    eprintln!("crius-monitor: {e}; no more output is logged");
                    self.outputs.iter_mut().for_each(|o| o.fd = None);
                    if exit.is_none() {
                        exit = self.wait_blocking();
                    }
                    break;
                }
            };
            if ready.any() {
                trim_at = Some(Instant::now() + QUIET_BEFORE_TRIM);
            } else if trim_at.is_some_and(|at| Instant::now() >= at) {
                trim_at = None;
                self.quiet();
            }
            // Attachers first: the indices are the poll's, and sending
            // output may drop attachers.
            if !ready.attachers.is_empty() {
                self.serve_attachers(&ready.attachers, config);
            }
            if ready.stdin {
                self.flush_stdin();
            }
            if ready.listener
                && let Some(attach) = self.attach.as_mut()
            {
                attach.accept();
            }
            for i in 0..2 {
                if ready.outputs[i] {
                    self.copy_to_log(i);
                }
            }
            if ready.control {
                self.serve_control(config);
            }
            if ready.signal {
                self.drain_signals();
                for (pid, status) in reap_children() {
                    if pid == self.container_pid && exit.is_none() {
                        exit = ExitStatus::from_wait(status, unix_nanos_now());
                        drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
                    }
                }
            }
        }
        for i in 0..2 {
            self.end_stream(i);
        }
        let Some(mut exit) = exit else {
            eprintln!(
                "crius-monitor: container {} ended unseen; no exit status recorded",
                config.container_id
            );
            return 1;
        };
        // The container's cgroup outlives its processes until the runtime
        // deletes it, so its OOM count is still there.
        if let Some(file) = &config.oom_file {
            exit.oom_killed = std::fs::read_to_string(file).is_ok_and(|t| oom_kills(&t) > 0);
        }
        if let Err(e) = write_exit_file(&config.exit_file, &exit) {
            eprintln!("crius-monitor: {e}");
            return 1;
        }
        0
    }

    /// The container's status if it was reaped while the create ran.
    fn take_early_exit(&mut self) -> Option<ExitStatus> {
        let container = self.container_pid;
        self.reaped_early
            .drain(..)
            .find(|(pid, _)| *pid == container)
            .and_then(|(_, status)| ExitStatus::from_wait(status, unix_nanos_now()))
    }

    /// Blocks in `waitpid` until the container's init is reaped.
    fn wait_blocking(&mut self) -> Option<ExitStatus> {
        loop {
            match waitpid(None, None) {
                Ok(status) if status.pid() == Some(self.container_pid) => {
                    if let Some(exit) = ExitStatus::from_wait(status, unix_nanos_now()) {
                        return Some(exit);
                    }
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return None,
            }
        }
    }

    /// Reads what is available on output `i` (a bounded amount, so a chatty
    /// container cannot keep us from reaping) and appends it to the log.
    fn copy_to_log(&mut self, i: usize) {
        self.ensure_buf();
        for _ in 0..READS_PER_WAKE {
            match self.outputs[i].read(&mut self.buf) {
                Read::Data(n) => {
                    if let Some(attach) = self.attach.as_mut() {
                        let tag = match self.outputs[i].stream {
                            Stream::Stdout => STDOUT_TAG,
                            Stream::Stderr => STDERR_TAG,
                        };
                        attach.broadcast(tag, &self.buf[..n]);
                    }
                    if self.log.is_some() {
                        let ts = timestamp_now();
                        self.records.clear();
                        self.outputs[i]
                            .splitter
                            .push(&self.buf[..n], &ts, &mut self.records);
                        self.write_records();
                    }
                }
                Read::Eof => return self.end_stream(i),
                Read::Empty => return,
            }
        }
    }

    /// The read buffer, allocated again after [`Monitor::quiet`] freed it.
    fn ensure_buf(&mut self) {
        if self.buf.is_empty() {
            self.buf = vec![0; READ_BUF];
        }
    }

    /// Nothing happened for a while: frees the scratch buffers and gives
    /// back the memory and code pages the last activity brought in. An
    /// idle container's monitor then holds only what waiting takes.
    fn quiet(&mut self) {
        self.buf = Vec::new();
        self.records = Vec::new();
        if self.stdin_pending.is_empty() {
            self.stdin_pending = Vec::new();
        }
        if self.control_pending.is_empty() {
            self.control_pending = Vec::new();
        }
        self.drop_pending = super::trim::code_ranges();
        super::trim::trim_heap();
    }

    /// Writes out a stream's unfinished line once it has ended.
    fn end_stream(&mut self, i: usize) {
        self.outputs[i].fd = None;
        if self.log.is_some() {
            self.records.clear();
            self.outputs[i]
                .splitter
                .finish(&timestamp_now(), &mut self.records);
            self.write_records();
        }
    }

    fn write_records(&mut self) {
        let (Some(log), false) = (self.log.as_mut(), self.records.is_empty()) else {
            return;
        };
        if let Err(e) = log.write_all(&self.records) {
            // Keep draining the pipes whatever happens: a container must
            // never block on a full pipe because its log cannot be written.
            if !self.log_failed {
                eprintln!("crius-monitor: write container log: {e}");
                self.log_failed = true;
            }
        }
    }

    /// Reads and carries out the requests waiting in the control FIFO.
    fn serve_control(&mut self, config: &MonitorConfig) {
        let mut buf = [0u8; 512];
        let Some(fifo) = self.control.as_mut() else {
            return;
        };
        let n = match std::io::Read::read(fifo, &mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                eprintln!("crius-monitor: read control FIFO: {e}; no more requests");
                self.control = None;
                return;
            }
        };
        for request in take_requests(&mut self.control_pending, &buf[..n]) {
            match request {
                Control::ReopenLog => self.reopen_log(config),
                Control::Resize { width, height } => {
                    if let (true, Some(master)) = (self.tty, &self.outputs[0].fd)
                        && let Err(e) = set_window_size(master.as_fd(), width, height)
                    {
                        eprintln!("crius-monitor: {e}");
                    }
                }
            }
        }
    }

    /// Closes the CRI log and opens (creates) it again at its path, after
    /// kubelet has renamed the old file away.
    fn reopen_log(&mut self, config: &MonitorConfig) {
        let Some(path) = config.log_path.as_deref() else {
            return;
        };
        match open_log(path) {
            Ok(file) => {
                self.log = Some(file);
                self.log_failed = false;
            }
            Err(e) => eprintln!("crius-monitor: reopen container log: {e}"),
        }
    }

    /// Reads the attachers that have something, and drops those gone.
    fn serve_attachers(&mut self, ready: &[(usize, bool)], config: &MonitorConfig) {
        self.ensure_buf();
        let Some(attach) = self.attach.as_mut() else {
            return;
        };
        let mut gone = Vec::new();
        for &(i, hung_up) in ready {
            let Some(a) = attach.attachers.get_mut(i) else {
                continue;
            };
            // One packet at a time while the container keeps up.
            while !a.read_closed && self.stdin_pending.is_empty() {
                match read_attacher(a.fd.as_fd(), &mut self.buf[..MAX_STDIN_PACKET]) {
                    FromAttacher::Stdin(n) => {
                        a.sent_stdin = true;
                        if let Some(stdin) = &self.stdin {
                            let written = write_some(stdin, &self.buf[..n]);
                            match written {
                                Some(w) => self.stdin_pending.extend_from_slice(&self.buf[w..n]),
                                None => self.stdin = None,
                            }
                        }
                    }
                    FromAttacher::Ended => {
                        a.read_closed = true;
                        if a.sent_stdin && config.stdin_once {
                            // kubelet's stdin_once: the first session's end
                            // is the container's end of input.
                            self.stdin = None;
                            self.stdin_pending.clear();
                        }
                    }
                    FromAttacher::Nothing => break,
                }
            }
            if hung_up {
                // Gone for good (what it sent and was not read while
                // stdin was backed up is lost with it).
                if !a.read_closed && a.sent_stdin && config.stdin_once {
                    self.stdin = None;
                    self.stdin_pending.clear();
                }
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            attach.attachers.remove(i);
        }
    }

    /// Writes what stdin still holds, as far as the container takes it.
    fn flush_stdin(&mut self) {
        let Some(stdin) = &self.stdin else {
            self.stdin_pending.clear();
            return;
        };
        match write_some(stdin, &self.stdin_pending) {
            Some(w) => {
                self.stdin_pending.drain(..w);
            }
            None => {
                self.stdin = None;
                self.stdin_pending.clear();
            }
        }
    }

    fn drain_signals(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
    }

    /// Waits until an output pipe, the signalfd, the control FIFO or an
    /// attach socket is ready, or `timeout`.
    fn poll(&mut self, timeout: Option<Duration>) -> Result<Ready> {
        let mut to_drop = std::mem::take(&mut self.drop_pending);
        let mut fds = Vec::with_capacity(4);
        let mut which = Vec::with_capacity(4);
        for (i, output) in self.outputs.iter().enumerate() {
            if let Some(fd) = &output.fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(Slot::Output(i));
            }
        }
        fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
        which.push(Slot::Signal);
        if let Some(control) = &self.control {
            fds.push(PollFd::new(control.as_fd(), PollFlags::POLLIN));
            which.push(Slot::Control);
        }
        if let Some(attach) = &self.attach {
            fds.push(PollFd::new(attach.listener.as_fd(), PollFlags::POLLIN));
            which.push(Slot::Listener);
            // While stdin is backed up, attachers are not read (their
            // hang-ups still show).
            let reading = self.stdin_pending.is_empty();
            for (i, a) in attach.attachers.iter().enumerate() {
                let events = match reading && !a.read_closed {
                    true => PollFlags::POLLIN,
                    false => PollFlags::empty(),
                };
                fds.push(PollFd::new(a.fd.as_fd(), events));
                which.push(Slot::Attacher(i));
            }
        }
        if let (false, Some(stdin)) = (self.stdin_pending.is_empty(), &self.stdin) {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLOUT));
            which.push(Slot::Stdin);
        }
        let timeout = match timeout {
            None => PollTimeout::NONE,
            // Round up so a short remainder does not spin at 0 ms.
            Some(t) => {
                PollTimeout::try_from(t + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX)
            }
        };
        loop {
            match super::trim::drop_then_poll(&to_drop, &mut fds, timeout) {
                Err(Errno::EINTR) => {
                    to_drop.clear();
                    continue;
                }
                r => {
                    r.context(|| "poll")?;
                    break;
                }
            }
        }
        let mut ready = Ready::default();
        for (fd, which) in fds.iter().zip(which) {
            let revents = fd.revents().unwrap_or(PollFlags::empty());
            let is_ready = !revents.is_empty();
            match which {
                Slot::Output(i) => ready.outputs[i] = is_ready,
                Slot::Signal => ready.signal = is_ready,
                Slot::Control => ready.control = is_ready,
                Slot::Listener => ready.listener = is_ready,
                Slot::Attacher(i) if is_ready => {
                    let hung_up = revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR);
                    ready.attachers.push((i, hung_up));
                }
                Slot::Attacher(_) => {}
                Slot::Stdin => ready.stdin = is_ready,
            }
        }
        Ok(ready)
    }
}

/// Writes what `fd` takes of `data` now: how much (0 when full), or
/// `None` when the reader has gone.
fn write_some(fd: &OwnedFd, data: &[u8]) -> Option<usize> {
    loop {
        match nix::unistd::write(fd, data) {
            Ok(n) => return Some(n),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Some(0),
            Err(_) => return None,
        }
    }
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

/// Reaps every child that has ended: the runtime's create, the
/// container's init, and orphans of the container that landed on us.
fn reap_children() -> Vec<(Pid, WaitStatus)> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return reaped,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    reaped.push((pid, status));
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("crius-monitor: waitpid: {e}");
                return reaped;
            }
        }
    }
}

/// A pipe for one output stream: the read end is ours and non-blocking;
/// the write end stays blocking, as the container expects.
fn output_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).context(|| "create output pipe")?;
    fcntl(&r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).context(|| "make output pipe non-blocking")?;
    Ok((r, w))
}

/// Opens the control FIFO made by the daemon, read-write and non-blocking:
/// holding a write end ourselves, it never reads as ended.
fn open_control(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .context(|| format!("open control FIFO {}", path.display()))
}

/// Opens (creating it and its directories) the CRI log for appending.
fn open_log(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        crate::fsutil::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .context(|| format!("open container log {}", path.display()))
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
