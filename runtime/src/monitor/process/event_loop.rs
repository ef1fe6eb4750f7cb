//! The `poll` loop that ties the monitor's jobs together: output into the
//! log and to attachers ([`super::output`]), attachers' stdin
//! ([`super::attachers`]), control requests ([`super::requests`]) and
//! reaping ([`super::exits`]); after start-up and after every few quiet
//! seconds it gives back buffers, heap and code pages
//! ([`super::super::trim`]).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

use super::super::MonitorConfig;
use super::super::attach::Attach;
use super::super::console::set_window_size;
use super::super::control::Control;
use super::super::exit_status::unix_nanos_now;
use super::super::trim;
use super::attachers::{self, Stdin};
use super::exits::{Exits, reap_children};
use super::oom::OomWatch;
use super::output::Outputs;
use super::requests::Requests;
use crate::error::{IoContext, Result};

/// One read from a pipe.
pub(super) const READ_BUF: usize = 32 * 1024;
/// How long the monitor must have had nothing to do before it gives back
/// its buffers and the code pages its last activity brought in.
const QUIET_BEFORE_TRIM: Duration = Duration::from_secs(5);

/// The monitor of a created container: every job's state.
pub(super) struct Monitor {
    /// SIGCHLD, read rather than handled.
    pub(super) signals: SignalFd,
    pub(super) outputs: Outputs,
    pub(super) requests: Requests,
    pub(super) stdin: Stdin,
    /// The attach socket and attachers, once the container is created.
    pub(super) attach: Option<Attach>,
    /// The container has a terminal (the first output is its master).
    pub(super) tty: bool,
    pub(super) exits: Exits,
    /// The OOM kill count of the container's cgroup, once it is created
    /// (if it has an OOM file).
    pub(super) oom: Option<OomWatch>,
    /// The read buffer; empty while quiet ([`scratch`] allocates it).
    pub(super) buf: Vec<u8>,
    /// Code mappings to drop right before the next wait.
    pub(super) drop_pending: Vec<(usize, usize)>,
}

/// Which watched fds are ready.
#[derive(Default)]
pub(super) struct Ready {
    pub(super) outputs: [bool; 2],
    pub(super) signal: bool,
    oom: bool,
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
            oom,
            control,
            listener,
            attachers,
            stdin,
        } = self;
        outputs.iter().any(|o| *o)
            || *signal
            || *oom
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
    Oom,
    Control,
    Listener,
    Attacher(usize),
    Stdin,
}

/// The read buffer, allocated again after [`Monitor::quiet`] freed it.
pub(super) fn scratch(buf: &mut Vec<u8>) -> &mut [u8] {
    if buf.is_empty() {
        *buf = vec![0; READ_BUF];
    }
    buf
}

impl Monitor {
    /// The container's init.
    pub(super) fn container_pid(&self) -> Pid {
        self.exits.container().unwrap_or(Pid::from_raw(0))
    }

    /// Copies the container's output into the log until its init has ended
    /// and the pipes are drained; writes the exit file. Returns the exit
    /// code of the monitor.
    pub(super) fn run(mut self, config: &MonitorConfig) -> i32 {
        // What start-up brought in goes now; what activity brings in later
        // goes once things are quiet again.
        self.quiet();
        let mut trim_at = None;
        loop {
            if self.exits.done(self.outputs.any_open(), Instant::now()) {
                break;
            }
            let wake = match (self.exits.drain_until(), trim_at) {
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
                    self.outputs.abandon();
                    if !self.exits.known() {
                        self.exits.wait_blocking();
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
            if !ready.attachers.is_empty()
                && let Some(attach) = self.attach.as_mut()
            {
                let buf = scratch(&mut self.buf);
                attachers::serve(attach, &mut self.stdin, &ready.attachers, buf);
            }
            if ready.stdin {
                self.stdin.flush();
            }
            if ready.listener
                && let Some(attach) = self.attach.as_mut()
            {
                attach.accept();
            }
            for i in 0..2 {
                if ready.outputs[i] {
                    let buf = scratch(&mut self.buf);
                    self.outputs.copy(i, buf, self.attach.as_mut());
                }
            }
            if ready.control {
                self.serve_control(config);
            }
            // Before the reaping: an OOM kill is counted before its victim
            // is gone, and the count may go with the cgroup. The count is
            // read at every child's end too, whether or not its inotify
            // event has come: the kernel sends that from a work queue,
            // which can be later than the victim's end, and systemd
            // removes a scope (its memory.events with it) as soon as its
            // last process has gone.
            if (ready.oom || ready.signal)
                && let Some(oom) = self.oom.as_mut()
            {
                oom.changed();
            }
            if ready.signal {
                self.drain_signals();
                for (pid, status) in reap_children() {
                    self.exits
                        .reaped(pid, status, Instant::now(), unix_nanos_now());
                }
            }
        }
        for i in 0..2 {
            self.outputs.end(i);
        }
        // No OOM file (no memory controller): no OOM kill to tell.
        let oom_killed = self.oom.take().is_some_and(OomWatch::killed);
        self.exits.record(config, oom_killed)
    }

    /// Carries out the requests waiting in the control FIFO.
    fn serve_control(&mut self, config: &MonitorConfig) {
        for request in self.requests.take() {
            match request {
                Control::ReopenLog => self.outputs.reopen_log(config.log_path.as_deref()),
                Control::Resize { width, height } => {
                    if let (true, Some(master)) = (self.tty, &self.outputs.streams[0].fd)
                        && let Err(e) = set_window_size(master.as_fd(), width, height)
                    {
                        eprintln!("crius-monitor: {e}");
                    }
                }
            }
        }
    }

    /// Nothing happened for a while: frees the scratch buffers and gives
    /// back the memory and code pages the last activity brought in. An
    /// idle container's monitor then holds only what waiting takes.
    fn quiet(&mut self) {
        self.buf = Vec::new();
        self.outputs.trim();
        self.stdin.trim();
        self.requests.trim();
        self.drop_pending = trim::code_ranges();
        trim::trim_heap();
    }

    pub(super) fn drain_signals(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
    }

    /// Waits until an output pipe, the signalfd, the control FIFO or an
    /// attach socket is ready, or `timeout`.
    pub(super) fn poll(&mut self, timeout: Option<Duration>) -> Result<Ready> {
        let mut to_drop = std::mem::take(&mut self.drop_pending);
        let mut fds = Vec::with_capacity(4);
        let mut which = Vec::with_capacity(4);
        for (i, output) in self.outputs.streams.iter().enumerate() {
            if let Some(fd) = &output.fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(Slot::Output(i));
            }
        }
        fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
        which.push(Slot::Signal);
        if let Some(oom) = self.oom.as_ref().and_then(OomWatch::fd) {
            fds.push(PollFd::new(oom, PollFlags::POLLIN));
            which.push(Slot::Oom);
        }
        if let Some(control) = self.requests.fd() {
            fds.push(PollFd::new(control, PollFlags::POLLIN));
            which.push(Slot::Control);
        }
        if let Some(attach) = &self.attach {
            fds.push(PollFd::new(attach.listener.as_fd(), PollFlags::POLLIN));
            which.push(Slot::Listener);
            // While stdin is backed up, attachers are not read (their
            // hang-ups still show).
            let reading = self.stdin.takes_more();
            for (i, a) in attach.attachers.iter().enumerate() {
                let events = match reading && !a.read_closed {
                    true => PollFlags::POLLIN,
                    false => PollFlags::empty(),
                };
                fds.push(PollFd::new(a.fd.as_fd(), events));
                which.push(Slot::Attacher(i));
            }
        }
        if let Some(stdin) = self.stdin.backed_up() {
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
            match trim::drop_then_poll(&to_drop, &mut fds, timeout) {
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
                Slot::Oom => ready.oom = is_ready,
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
