//! Plugin calls an earlier client of the same cache left running. A
//! daemon killed mid-call leaves its plugin processes orphaned, still
//! making (ADD) or undoing (DEL) what a DEL of the next daemon must find
//! done: an ADD finishing after recovery's DEL would leave its veth and
//! NAT rules behind for good. So the next client's first call waits for
//! them to end ([`settle`]), as long as the plugin timeout, which the
//! earlier client would have enforced too, and then kills what is left,
//! as that client would have.
//!
//! Two marks find such calls, each covering the other's gap:
//! - the calls lock, `.calls.lock` in the cache directory: each client
//!   holds it shared through one open file, and every plugin it runs
//!   inherits that open file from its fork on, before its exec and across
//!   the execs of a wrapper script (as do the delegates of a plugin that
//!   does not close it; Go's `os/exec` does, and then the plugin waits for
//!   its delegates). An exclusive try succeeds only once every call of
//!   every earlier client is over;
//! - the environment, [`CLIENT_ENV`], which every call and every process
//!   it starts carries: it finds the processes to kill at the timeout,
//!   delegates that closed the lock included. It cannot tell a process
//!   between fork and exec (that one shows its parent's environment) or
//!   in the middle of an exec (its environment reads empty then), which is
//!   why the lock is what is waited for.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The variable every plugin call gets (and the delegates it runs inherit),
/// naming the client that made it by its cache directory.
pub(crate) const CLIENT_ENV: &str = "CRIUS_CNI_CLIENT";

/// The calls lock's file in the cache directory. Dot-prefixed and not
/// `.json`: the cache's listings never take it for an entry.
const LOCK_FILE: &str = ".calls.lock";

/// The most of a process's environment [`calls_of`] reads. A plugin's is
/// the daemon's plus a few `CNI_*` variables; this bounds what a foreign
/// process with a huge environment costs the scan.
const MAX_ENVIRON: u64 = 1 << 20;

/// How often the wait looks again.
const POLL: Duration = Duration::from_millis(20);

/// How long killed calls get to die before this client goes on.
const KILLED_GRACE: Duration = Duration::from_secs(2);

/// This client's hold on the calls lock: shared, through the one open
/// file every plugin it runs inherits ([`CallsLock::fd`]).
#[derive(Debug)]
pub(crate) struct CallsLock(Flock<File>);

impl CallsLock {
    /// The descriptor a plugin call inherits (it is close-on-exec here;
    /// the call's child clears that).
    pub(crate) fn fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Waits until no plugin call of an earlier client of the cache `client`
/// is running (see the module docs), then returns the lock this client's
/// own calls will hold; `None` when the lock file cannot be had (then the
/// environment alone tells, and the wait is logged as such).
pub(crate) async fn settle(client: &Path, timeout: Duration) -> Option<CallsLock> {
    let mut lock = {
        let dir = client.to_path_buf();
        match tokio::task::spawn_blocking(move || open_lock(&dir)).await {
            Ok(Ok(file)) => Some(file),
            Ok(Err(e)) => {
                tracing::warn!(cache = %client.display(), error = %e, "cannot open the CNI calls lock; earlier calls are found by their environment alone");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "CNI calls lock task");
                None
            }
        }
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut killed_at = None;
    let mut waited = false;
    let held = loop {
        let (exclusive, file) = try_exclusive(lock.take(), client);
        lock = file;
        let free = exclusive.is_some() || lock.is_none();
        let left = scan(client).await;
        if free && left.is_empty() {
            break exclusive;
        }
        if !waited {
            tracing::info!(pids = ?left, lock_free = free, cache = %client.display(), "waiting for CNI plugin calls an earlier crius left running");
            waited = true;
        }
        let now = tokio::time::Instant::now();
        match killed_at {
            None if now >= deadline => {
                let holders = match &lock {
                    Some(file) => holders_of(file).await,
                    None => Vec::new(),
                };
                let mut pids = left.clone();
                pids.extend(holders.iter().filter(|p| !left.contains(p)));
                for &pid in &pids {
                    kill_call(pid, client, &holders);
                }
                tracing::warn!(pids = ?pids, timeout = ?timeout, "killed CNI plugin calls an earlier crius left running past the plugin timeout");
                killed_at = Some(now);
            }
            Some(at) if now >= at + KILLED_GRACE => {
                tracing::warn!(pids = ?left, lock_free = free, "CNI plugin calls an earlier crius left running outlived SIGKILL; going on");
                break exclusive;
            }
            _ => {}
        }
        tokio::time::sleep(POLL).await;
    };
    if waited {
        tracing::info!("the CNI plugin calls an earlier crius left running are over");
    }
    share(held, lock)
}

/// Opens (creates) the calls lock of the cache `client`, close-on-exec.
fn open_lock(client: &Path) -> std::io::Result<File> {
    std::fs::create_dir_all(client)?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(client.join(LOCK_FILE))
}

/// Tries for the lock exclusively: the lock when it was free; otherwise
/// the file back to try again (none if the file does not take locks).
fn try_exclusive(file: Option<File>, client: &Path) -> (Option<Flock<File>>, Option<File>) {
    let Some(file) = file else {
        return (None, None);
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => (Some(held), None),
        Err((file, Errno::EWOULDBLOCK)) => (None, Some(file)),
        Err((_, e)) => {
            tracing::warn!(cache = %client.display(), error = %e, "the CNI calls lock cannot be taken; earlier calls are found by their environment alone");
            (None, None)
        }
    }
}

/// Holds the lock shared from now on: converted from the exclusive hold,
/// or taken beside the earlier holders that outlived the wait.
fn share(held: Option<Flock<File>>, file: Option<File>) -> Option<CallsLock> {
    let shared = match (held, file) {
        (Some(held), _) => held
            .relock(FlockArg::LockSharedNonblock)
            .map(|()| held)
            .map_err(|e| e.to_string()),
        (None, Some(file)) => {
            Flock::lock(file, FlockArg::LockSharedNonblock).map_err(|(_, e)| e.to_string())
        }
        (None, None) => return None,
    };
    match shared {
        Ok(held) => Some(CallsLock(held)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot hold the CNI calls lock shared; a later crius finds this one's calls by their environment alone");
            None
        }
    }
}

/// Kills `pid` if it is a call of `client`: its environment says so
/// (checked again just before: a PID that went away and was reused is not
/// ours to kill), or it was found holding the calls lock (`holders`).
fn kill_call(pid: i32, client: &Path, holders: &[i32]) {
    if is_call_of(pid, client) || holders.contains(&pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The processes running a call of `client` by their environment.
async fn scan(client: &Path) -> Vec<i32> {
    let client = client.to_path_buf();
    tokio::task::spawn_blocking(move || calls_of(&client))
        .await
        .unwrap_or_default()
}

/// The processes of this process's real user, this one aside, with the
/// calls lock `file` open: calls whose environment does not show them.
async fn holders_of(file: &File) -> Vec<i32> {
    let Ok(meta) = file.metadata() else {
        return Vec::new();
    };
    let (dev, ino) = (meta.dev(), meta.ino());
    tokio::task::spawn_blocking(move || {
        other_pids()
            .filter(|&pid| real_uid_of(pid) == Some(nix::unistd::getuid().as_raw()))
            .filter(|&pid| {
                std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|fd| {
                        std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
                    })
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// Every PID in /proc but this process's.
fn other_pids() -> impl Iterator<Item = i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|p| p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(move |&pid| pid != me)
}

/// The processes (plugins and their delegates) running a call of the
/// client whose cache directory is `client` ([`CLIENT_ENV`]), this process
/// aside. Zombies and processes that vanish during the scan are left out.
pub(crate) fn calls_of(client: &Path) -> Vec<i32> {
    other_pids()
        .filter(|&pid| is_call_of(pid, client))
        .collect()
}

/// Whether `pid` is a plugin call of `client`: its environment holds
/// `CRIUS_CNI_CLIENT=<client>` and it runs as this process's real user (a
/// host user who sets the variable on a process of their own, even a
/// setuid one, must not make the daemon wait for it, or kill it).
pub(crate) fn is_call_of(pid: i32, client: &Path) -> bool {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    if real_uid_of(pid) != Some(nix::unistd::getuid().as_raw()) {
        return false;
    }
    let Ok(file) = File::open(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let mut environ = Vec::new();
    if file.take(MAX_ENVIRON).read_to_end(&mut environ).is_err() {
        return false;
    }
    let mut wanted = CLIENT_ENV.as_bytes().to_vec();
    wanted.push(b'=');
    wanted.extend_from_slice(client.as_os_str().as_bytes());
    environ.split(|&b| b == 0).any(|var| var == wanted)
}

/// The real user id of `pid` (the first of /proc/<pid>/status's `Uid:`).
fn real_uid_of(pid: i32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}
