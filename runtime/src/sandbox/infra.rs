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
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::monitor::{INFRA_ARG, Pidfd, helper};

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
    let mut command = tokio::process::Command::new(monitor_bin);
    command
        .arg(INFRA_ARG)
        .arg(pod_dir)
        .args(userns)
        .kill_on_drop(true);
    let started = helper::run(command, &what, Some(START_TIMEOUT))
        .await
        .and_then(|done| {
            let report = String::from_utf8_lossy(&done.stdout);
            let report = report.trim();
            if let Some(pid) = report.strip_prefix("ok ") {
                return pid.parse().map_err(|_| Error::External {
                    what: what.clone(),
                    message: format!("bad report {report:?}"),
                });
            }
            let message = match report.strip_prefix("error ") {
                Some(m) => m.to_string(),
                None => done.unreported(monitor_bin),
            };
            Err(Error::External {
                what: what.clone(),
                message,
            })
        });
    if started.is_err() {
        // Whatever it got to fork must not outlive the failed start (the
        // first process itself is gone: killed when dropped).
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
    let Some(pidfd) = Pidfd::open(pid, "infra process")? else {
        return Ok(());
    };
    // Checked once the pidfd is held: from here on it names this process.
    if !is_infra_of(pid, pod_dir) {
        return Ok(());
    }
    // Its keeper, which exits once it has reaped it.
    let keeper = parent_of(pid)
        .filter(|&k| is_infra_of(k, pod_dir))
        .map(|k| Pidfd::open(k, "infra keeper"))
        .transpose()?
        .flatten();
    pidfd.send_signal(libc::SIGKILL)?;
    match tokio::time::timeout(STOP_TIMEOUT, pidfd.exited()).await {
        Ok(exited) => exited?,
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
    let Some(keeper) = keeper else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + REAP_WAIT;
    while pidfd.send_signal(0)? {
        if tokio::time::Instant::now() >= deadline {
            tracing::debug!(pid, "infra process exited but is not reaped yet");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = tokio::time::timeout(REAP_WAIT, keeper.exited()).await;
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
