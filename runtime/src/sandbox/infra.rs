//! The daemon's side of a pod's infra process: the init of the PID
//! namespace a pod's containers share (CRI PID mode POD). The process
//! body, a mode of `crius-monitor`, is [`crate::monitor::pod_infra`].
//!
//! [`start`] runs it and returns its PID; [`stop`] kills it through a
//! pidfd after checking that the PID is still this pod's infra process,
//! and waits until it is gone. Its command line names the pod's state
//! directory, so [`stop_all`] finds and kills a pod's infra processes
//! without knowing their PIDs (after a crash, or a start that failed
//! half-way): no PID file has to be trusted.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::error::{Error, IoContext, Result};
use crate::monitor::INFRA_ARG;
/// How long starting it may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to die after SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for its keeper (or the host's init) to reap it once dead.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// Starts the infra process of the pod whose state directory is `pod_dir`
/// with `monitor_bin`; returns its PID once it runs, dropped to nobody,
/// as init of its own PID namespace.
///
/// With `userns` (the pin of the pod's user namespace), the PID namespace
/// is made inside it, so that the pod's containers, in that user
/// namespace, may mount its /proc.
pub async fn start(monitor_bin: &Path, pod_dir: &Path, userns: Option<&Path>) -> Result<i32> {
    let what = format!("start the infra process of pod {}", pod_dir.display());
    let mut child = tokio::process::Command::new(monitor_bin)
        .arg(INFRA_ARG)
        .arg(pod_dir)
        .args(userns)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context(|| format!("{what}: run {}", monitor_bin.display()))?;
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let talk = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (o, e, status) = tokio::join!(
            async {
                match stdout.as_mut() {
                    Some(s) => s.read_to_end(&mut out).await.map(drop),
                    None => Ok(()),
                }
            },
            async {
                match stderr.as_mut() {
                    Some(s) => s.read_to_end(&mut err).await.map(drop),
                    None => Ok(()),
                }
            },
            child.wait(),
        );
        o.and(e).and(status).map(|status| (out, err, status))
    };
    let reported = tokio::time::timeout(START_TIMEOUT, talk)
        .await
        .map_err(|_| Error::External {
            what: what.clone(),
            message: format!("no report within {}s", START_TIMEOUT.as_secs()),
        })
        .and_then(|r| r.context(|| format!("{what}: talk to {}", monitor_bin.display())));
    let started = reported.and_then(|(out, err, status)| {
        let report = String::from_utf8_lossy(&out);
        let report = report.trim();
        if let Some(pid) = report.strip_prefix("ok ") {
            return pid.parse().map_err(|_| Error::External {
                what: what.clone(),
                message: format!("bad report {report:?}"),
            });
        }
        let message = match report.strip_prefix("error ") {
            Some(m) => m.to_string(),
            None => format!(
                "{} {status} without reporting: {}",
                monitor_bin.display(),
                String::from_utf8_lossy(&err).trim()
            ),
        };
        Err(Error::External {
            what: what.clone(),
            message,
        })
    });
    if started.is_err() {
        // Whatever it got to fork must not outlive the failed start.
        drop(child);
        if let Err(e) = stop_all(pod_dir).await {
            tracing::warn!(pod_dir = %pod_dir.display(), error = %e, "stopping what a failed infra start left");
        }
    }
    started
}

/// The processes running `<monitor> pod-infra <pod_dir>`: the pod's infra
/// process and its keeper (and a first process not yet gone).
pub fn find(pod_dir: &Path) -> Vec<i32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|&pid| is_infra_of(pid, pod_dir))
        .collect()
}

/// Kills every infra process of the pod at `pod_dir` ([`find`]) and waits
/// until each is gone: the namespace's init before its keeper, so that the
/// keeper is still there to reap it at once (killed first, it would leave
/// the reaping to the host's init, which may take its time).
pub async fn stop_all(pod_dir: &Path) -> Result<()> {
    // A keeper forks once: two rounds see everything it made.
    for _ in 0..3 {
        let found = find(pod_dir);
        if found.is_empty() {
            return Ok(());
        }
        for pid in children_first(found, parent_of) {
            stop(pod_dir, pid).await?;
        }
    }
    match find(pod_dir).as_slice() {
        [] => Ok(()),
        left => Err(Error::Internal(format!(
            "infra processes {left:?} of pod {} are still there after SIGKILL",
            pod_dir.display()
        ))),
    }
}

/// Kills the infra process `pid` of the pod at `pod_dir` and waits until it
/// has exited. A PID that is gone, or that now belongs to another process,
/// is fine: there is nothing left to kill.
pub async fn stop(pod_dir: &Path, pid: i32) -> Result<()> {
    let Some(pidfd) = pidfd_open(pid)? else {
        return Ok(());
    };
    // Checked once the pidfd is held: from here on it names this process.
    if !is_infra_of(pid, pod_dir) {
        return Ok(());
    }
    // Its keeper, which exits once it has reaped it.
    let keeper = parent_of(pid)
        .filter(|&k| is_infra_of(k, pod_dir))
        .map(pidfd_open)
        .transpose()?
        .flatten();
    pidfd_signal(&pidfd, pid, libc::SIGKILL)?;
    // SAFETY: the AsyncFd owns the pidfd from here on and nothing else
    // closes or changes it.
    let fd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
        .map_err(|e| Error::io(format!("watch infra process {pid}"), e.into_parts().1))?;
    let exited = tokio::time::timeout(STOP_TIMEOUT, fd.readable()).await;
    match exited {
        Ok(ready) => ready
            .map(drop)
            .context(|| format!("wait for infra process {pid}"))?,
        Err(_) => {
            return Err(Error::Internal(format!(
                "infra process {pid} of pod {} did not exit within {}s of SIGKILL",
                pod_dir.display(),
                STOP_TIMEOUT.as_secs()
            )));
        }
    }
    // It has exited. Its keeper reaps it: wait a little for that too, so
    // that nothing of the pod shows in the process table once it is
    // stopped; signal 0 through the pidfd tells a zombie (still there)
    // from a reaped process (ESRCH). A process without a keeper (a keeper
    // itself, or one whose keeper is gone) is reaped by its parent, the
    // host's init or a first process about to exit, in its own time: a
    // zombie holds nothing of the pod, and nothing is won by waiting.
    if keeper.is_none() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + REAP_WAIT;
    while pidfd_signal(fd.get_ref(), pid, 0)? {
        if tokio::time::Instant::now() >= deadline {
            tracing::debug!(pid, "infra process exited but is not reaped yet");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Some(keeper) = keeper {
        // SAFETY: as above, for the keeper's pidfd.
        let fd = unsafe { AsyncFd::register_with_interest(keeper, Interest::READABLE) }
            .map_err(|e| Error::io(format!("watch keeper of {pid}"), e.into_parts().1))?;
        let _ = tokio::time::timeout(REAP_WAIT, fd.readable()).await;
    }
    Ok(())
}

/// `pids` ordered so that a process comes before its parent when both are
/// in the set (`parent` tells a PID's parent).
fn children_first(mut pids: Vec<i32>, parent: impl Fn(i32) -> Option<i32>) -> Vec<i32> {
    let set = pids.clone();
    // How many of its ancestors are in the set: the deepest first.
    let depth = |pid: i32| {
        let mut depth = 0;
        let mut at = pid;
        while let Some(p) = parent(at).filter(|p| set.contains(p)) {
            depth += 1;
            at = p;
            if depth > set.len() {
                break;
            }
        }
        depth
    };
    pids.sort_by_cached_key(|&pid| std::cmp::Reverse(depth(pid)));
    pids
}

/// The parent PID of `pid`, from /proc.
fn parent_of(pid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("PPid:")?.trim().parse().ok())
}

/// Whether `pid` runs `<monitor> pod-infra <pod_dir>`.
pub fn is_infra_of(pid: i32, pod_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|&b| b == 0).skip(1);
    args.next() == Some(INFRA_ARG.as_bytes())
        && args.next().map(|a| Path::new(OsStr::from_bytes(a))) == Some(pod_dir)
}

/// A pidfd for `pid`; `None` if there is no such process.
fn pidfd_open(pid: i32) -> Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
    // it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(None);
        }
        return Err(Error::io(format!("pidfd_open infra process {pid}"), err));
    }
    let fd = i32::try_from(fd).map_err(|_| Error::Internal(format!("pidfd_open returned {fd}")))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Sends `signal` (0: none, only a check) through a pidfd, which cannot
/// hit a process that reused the PID. False when the process is gone.
fn pidfd_signal(pidfd: &OwnedFd, pid: i32, signal: i32) -> Result<bool> {
    // SAFETY: pidfd_send_signal reads only the fd and the signal number (no
    // siginfo is passed); the fd is valid for the borrow.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(false);
        }
        return Err(Error::io(format!("signal infra process {pid}"), err));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_needs_the_mode_and_the_pod_dir() {
        // This test process is not an infra process of anything.
        let me = std::process::id() as i32;
        assert!(!is_infra_of(me, Path::new("/run/crius/pods/x")));
        assert!(!is_infra_of(i32::MAX, Path::new("/run/crius/pods/x")));
    }

    #[test]
    fn children_come_before_their_parents() {
        // 10 first process → 11 keeper → 12 init; 40's parent is not ours.
        let parent = |pid| match pid {
            10 => Some(1),
            11 => Some(10),
            12 => Some(11),
            40 => Some(3),
            _ => None,
        };
        let order = children_first(vec![10, 11, 12, 40], parent);
        let at = |pid| order.iter().position(|&p| p == pid).unwrap();
        assert!(at(12) < at(11) && at(11) < at(10), "{order:?}");
        assert_eq!(order.len(), 4);
        // A parent loop (PIDs reused mid-scan) still ends.
        let looped = children_first(vec![1, 2], |p| Some(3 - p));
        assert_eq!(looped.len(), 2);
    }

    #[tokio::test]
    async fn stopping_a_gone_process_is_fine() {
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        stop(Path::new("/run/crius/pods/x"), pid).await.unwrap();
        // A live process that is not an infra process is left alone.
        let mut sleeper = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        stop(Path::new("/run/crius/pods/x"), sleeper.id() as i32)
            .await
            .unwrap();
        assert!(sleeper.try_wait().unwrap().is_none());
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }
}
