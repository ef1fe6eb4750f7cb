//! Exits: reaping every child, learning how the container's init ended,
//! deciding when the monitor may stop reading the container's output, and
//! recording the exit status in the exit file.
//!
//! The monitor is a child subreaper: the runtime's create, the
//! container's init and whatever the container orphans all end up as its
//! children. Only the init's end counts; the rest are reaped and
//! forgotten. The init can end before the create has even returned, so a
//! child reaped then is kept until the init's pid is known.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::super::MonitorConfig;
use super::super::exit_status::{ExitStatus, unix_nanos_now, write_exit_file};

/// How long to keep reading the pipes once the init has exited, when some
/// other process still holds them open.
pub(super) const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// What the monitor knows of the container's end.
#[derive(Debug, Default)]
pub(super) struct Exits {
    /// The container's init; `None` until the create has returned.
    container: Option<Pid>,
    /// Children reaped before the container's pid was known.
    early: Vec<(Pid, WaitStatus)>,
    /// How the init ended, once it was reaped.
    status: Option<ExitStatus>,
    /// When to stop reading output: set once the init was reaped.
    drain_until: Option<Instant>,
}

impl Exits {
    /// Nothing known yet.
    pub(super) fn new() -> Exits {
        Exits::default()
    }

    /// A child reaped while the runtime's create ran, other than the
    /// create itself: it may be the container's init.
    pub(super) fn reaped_early(&mut self, pid: Pid, status: WaitStatus) {
        self.early.push((pid, status));
    }

    /// The container's init is `container`. If it was reaped while the
    /// create ran, it ended at `finished_at` (Unix nanoseconds) and the
    /// output is drained from `now` on.
    pub(super) fn created(&mut self, container: Pid, now: Instant, finished_at: i64) {
        self.container = Some(container);
        self.status = self
            .early
            .drain(..)
            .find(|(pid, _)| *pid == container)
            .and_then(|(_, status)| ExitStatus::from_wait(status, finished_at));
        self.early = Vec::new();
        if self.status.is_some() {
            self.drain_until = Some(now + DRAIN_AFTER_EXIT);
        }
    }

    /// The container's init, once known.
    pub(super) fn container(&self) -> Option<Pid> {
        self.container
    }

    /// A child reaped at `now` (`finished_at` in Unix nanoseconds) while
    /// the container runs. The init's first end counts; the rest are
    /// orphans.
    pub(super) fn reaped(&mut self, pid: Pid, status: WaitStatus, now: Instant, finished_at: i64) {
        if Some(pid) == self.container && self.status.is_none() {
            self.status = ExitStatus::from_wait(status, finished_at);
            self.drain_until = Some(now + DRAIN_AFTER_EXIT);
        }
    }

    /// When the monitor stops reading output, if the init has ended.
    pub(super) fn drain_until(&self) -> Option<Instant> {
        self.drain_until
    }

    /// Whether the monitor is done at `now`: the init has ended and its
    /// output is drained (`outputs_open` false) or has had its time.
    pub(super) fn done(&self, outputs_open: bool, now: Instant) -> bool {
        self.drain_until
            .is_some_and(|until| !outputs_open || now >= until)
    }

    /// Whether the init's end is known.
    pub(super) fn known(&self) -> bool {
        self.status.is_some()
    }

    /// Blocks in `waitpid` until the container's init is reaped: the last
    /// resort when `poll` fails, so that the exit status is never lost.
    pub(super) fn wait_blocking(&mut self) {
        let Some(container) = self.container else {
            return;
        };
        loop {
            match waitpid(None, None) {
                Ok(status) if status.pid() == Some(container) => {
                    if let Some(exit) = ExitStatus::from_wait(status, unix_nanos_now()) {
                        self.status = Some(exit);
                        return;
                    }
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    /// Writes the exit file, `oom_killed` telling whether the container's
    /// cgroup counted an OOM kill; returns the
    /// monitor's exit code (1 if the init's end was never seen or the file
    /// cannot be written).
    pub(super) fn record(self, config: &MonitorConfig, oom_killed: bool) -> i32 {
        let Some(exit) = self.final_status(oom_killed) else {
            eprintln!(
                "crius-monitor: container {} ended unseen; no exit status recorded",
                config.container_id
            );
            return 1;
        };
        if let Err(e) = write_exit_file(&config.exit_file, &exit) {
            eprintln!("crius-monitor: {e}");
            return 1;
        }
        0
    }

    /// The status to record, given whether the cgroup counted an OOM
    /// kill.
    fn final_status(self, oom_killed: bool) -> Option<ExitStatus> {
        let mut exit = self.status?;
        exit.oom_killed = oom_killed;
        Some(exit)
    }
}

/// Reaps every child that has ended: the runtime's create, the
/// container's init, and orphans of the container that landed on us.
pub(super) fn reap_children() -> Vec<(Pid, WaitStatus)> {
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

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;

    use super::*;

    const INIT: Pid = Pid::from_raw(40);
    const ORPHAN: Pid = Pid::from_raw(41);

    #[test]
    fn only_the_inits_first_end_counts_and_starts_the_drain() {
        let t0 = Instant::now();
        let mut exits = Exits::new();
        exits.created(INIT, t0, 1);
        assert_eq!(exits.container(), Some(INIT));
        assert!(!exits.known() && !exits.done(false, t0 + DRAIN_AFTER_EXIT));
        exits.reaped(ORPHAN, WaitStatus::Exited(ORPHAN, 9), t0, 2);
        assert!(!exits.known() && exits.drain_until().is_none());
        let t1 = t0 + Duration::from_secs(1);
        exits.reaped(
            INIT,
            WaitStatus::Signaled(INIT, Signal::SIGKILL, false),
            t1,
            3,
        );
        exits.reaped(INIT, WaitStatus::Exited(INIT, 0), t1, 4);
        assert_eq!(exits.drain_until(), Some(t1 + DRAIN_AFTER_EXIT));
        let exit = exits.final_status(false).unwrap();
        assert_eq!(
            (exit.exit_code, exit.signal, exit.finished_at),
            (137, Some(9), 3)
        );
    }

    #[test]
    fn the_monitor_is_done_once_output_is_drained_or_has_had_its_time() {
        let t0 = Instant::now();
        let mut exits = Exits::new();
        exits.created(INIT, t0, 1);
        // Running: never done, even with every stream closed.
        assert!(!exits.done(false, t0));
        exits.reaped(INIT, WaitStatus::Exited(INIT, 0), t0, 2);
        assert!(exits.done(false, t0));
        // A stray process holds the pipes: keep reading, but not forever.
        assert!(!exits.done(true, t0 + Duration::from_secs(1)));
        assert!(exits.done(true, t0 + DRAIN_AFTER_EXIT));
    }

    #[test]
    fn an_init_reaped_while_the_create_ran_counts_once_its_pid_is_known() {
        let t0 = Instant::now();
        let mut exits = Exits::new();
        exits.reaped_early(ORPHAN, WaitStatus::Exited(ORPHAN, 1));
        exits.reaped_early(INIT, WaitStatus::Exited(INIT, 7));
        exits.created(INIT, t0, 5);
        assert!(exits.known());
        assert_eq!(exits.drain_until(), Some(t0 + DRAIN_AFTER_EXIT));
        // A later reap of a reused pid changes nothing.
        exits.reaped(INIT, WaitStatus::Exited(INIT, 0), t0, 6);
        assert_eq!(exits.final_status(false).unwrap().exit_code, 7);

        // Without the init among them, the early reaps are forgotten.
        let mut exits = Exits::new();
        exits.reaped_early(ORPHAN, WaitStatus::Exited(ORPHAN, 1));
        exits.created(INIT, t0, 5);
        assert!(!exits.known() && exits.drain_until().is_none());
        assert!(exits.early.is_empty());
    }

    #[test]
    fn oom_kills_mark_the_status_and_an_unseen_end_records_nothing() {
        let ended = || {
            let mut exits = Exits::new();
            exits.created(INIT, Instant::now(), 1);
            exits.reaped(INIT, WaitStatus::Exited(INIT, 137), Instant::now(), 2);
            exits
        };
        assert!(ended().final_status(true).unwrap().oom_killed);
        assert!(!ended().final_status(false).unwrap().oom_killed);

        let mut unseen = Exits::new();
        unseen.created(INIT, Instant::now(), 1);
        assert!(unseen.final_status(false).is_none());
    }

    #[test]
    fn the_exit_file_is_written_only_for_a_seen_end() {
        let dir = tempfile::tempdir().unwrap();
        let config = MonitorConfig::for_test(dir.path());
        let mut unseen = Exits::new();
        unseen.created(INIT, Instant::now(), 1);
        assert_eq!(unseen.record(&config, false), 1);
        assert!(!config.exit_file.exists());

        let mut seen = Exits::new();
        seen.created(INIT, Instant::now(), 1);
        seen.reaped(INIT, WaitStatus::Exited(INIT, 3), Instant::now(), 2);
        assert_eq!(seen.record(&config, false), 0);
        let status = super::super::super::read_exit_file(&config.exit_file)
            .unwrap()
            .unwrap();
        assert_eq!((status.exit_code, status.finished_at), (3, 2));
    }
}
