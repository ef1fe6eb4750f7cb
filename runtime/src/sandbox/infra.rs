//! The infra process of a pod whose containers share one PID namespace
//! (CRI PID mode POD, Kubernetes' `shareProcessNamespace`).
//!
//! A PID namespace dies with its init, and no process can enter it after
//! that, so such a pod needs a process of its own to be that init. crius
//! brings it itself — no pause image is ever pulled: it is a mode of the
//! `crius-monitor` binary (`crius-monitor pod-infra <pod state dir>`), which
//! every node running crius already has beside the daemon. Like a monitor
//! it detaches, so it outlives daemon restarts; StopPodSandbox kills it.
//!
//! What it does (see [`main`]):
//! 1. The first process forks a keeper and exits once the keeper has
//!    reported; the keeper, detached in a session of its own, does
//!    `unshare(CLONE_NEWPID)` and forks: the child is PID 1 of the new
//!    namespace. The keeper reports the child's host PID (the first
//!    process prints it on stdout), then waits to reap the child the
//!    moment it dies, so that a stopped pod leaves no zombie waiting for
//!    the host's init. If anything fails once the child exists, the keeper
//!    kills and reaps it before exiting: a failed start leaves no process.
//! 2. The child leaves the session, gets a mount namespace of its own whose
//!    root is an empty read-only tmpfs (so that `/proc/1/root`, seen from
//!    the pod's containers, shows nothing of the host), drops to
//!    uid/gid 65534 with no capabilities, no new privileges and not
//!    dumpable, blocks every signal, and reaps whatever the namespace
//!    orphans until it is killed. Processes inside the namespace cannot
//!    kill it: signals from inside only reach an init that handles them.
//!
//! Daemon side: [`start`] runs it and returns its PID; [`stop`] kills it
//! through a pidfd after checking that the PID is still this pod's infra
//! process, and waits until it is gone. Its command line names the pod's
//! state directory, so [`stop_all`] finds and kills a pod's infra
//! processes without knowing their PIDs (after a crash, or a start that
//! failed half-way): no PID file has to be trusted.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork, pipe2};
use tokio::io::AsyncReadExt;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::error::{Error, IoContext, Result};

/// `crius-monitor`'s first argument that selects this mode.
pub const INFRA_ARG: &str = "pod-infra";
/// The empty directory that becomes the infra process's root.
const ROOT_DIR: &str = "infra-root";
/// Its command name, as `ps` shows it inside the pod.
const COMM: &str = "crius-pod-infra";
/// The unprivileged user and group it runs as (nobody/nogroup).
const NOBODY: u32 = 65534;
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

/// The `pod-infra` mode of `crius-monitor`: `crius-monitor pod-infra
/// <pod state dir>`. Only ever returns by exiting.
pub fn main() -> ! {
    let pod_dir = std::env::args_os().nth(2).map(PathBuf::from);
    let userns = std::env::args_os().nth(3).map(PathBuf::from);
    let code = match pod_dir {
        Some(dir) if dir.is_absolute() => match run(&dir, userns.as_deref()) {
            Ok(pid) => {
                println!("ok {pid}");
                0
            }
            Err(e) => {
                println!("error {e}");
                1
            }
        },
        _ => {
            println!("error usage: crius-monitor {INFRA_ARG} <absolute pod state dir>");
            2
        }
    };
    std::process::exit(code)
}

/// The first process: forks the keeper and returns the init's PID once
/// the keeper reports it. The keeper goes on detached.
fn run(pod_dir: &Path, userns: Option<&Path>) -> Result<i32> {
    let (report_r, report_w) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).context(|| "create the report pipe")?;
    // SAFETY: this process is single-threaded (a fresh exec of
    // crius-monitor that started no threads), so the child may run any
    // code.
    match unsafe { fork() }.context(|| "fork the keeper")? {
        ForkResult::Child => {
            drop(report_r);
            keeper(pod_dir, userns, File::from(report_w))
        }
        ForkResult::Parent { .. } => {
            drop(report_w);
            let mut said = String::new();
            File::from(report_r)
                .read_to_string(&mut said)
                .context(|| "read the keeper's report")?;
            match said.strip_prefix("ok ").map(str::parse::<i32>) {
                Some(Ok(pid)) => Ok(pid),
                _ => Err(Error::External {
                    what: "infra process".into(),
                    message: if said.is_empty() {
                        "the keeper died before it reported".into()
                    } else {
                        said
                    },
                }),
            }
        }
    }
}

/// The keeper: detaches (new session, stdio on /dev/null, so that the
/// daemon's read of the first process's output ends), makes the PID
/// namespace, forks its init, reports the init's PID on `report`, then
/// waits for the init to die and reaps it at once (the host's init may
/// take its time) before exiting.
fn keeper(pod_dir: &Path, userns: Option<&Path>, mut report: File) -> ! {
    let started = (|| -> Result<Pid> {
        nix::unistd::setsid().context(|| "setsid")?;
        stdio_to_dev_null()?;
        close_fds_except(report.as_raw_fd())?;
        let (ready_r, ready_w) =
            pipe2(nix::fcntl::OFlag::O_CLOEXEC).context(|| "create the ready pipe")?;
        if let Some(userns) = userns {
            // Inside, the pod's directory (the host's root's) is not
            // writable: what the init needs there is made first.
            let root = pod_dir.join(ROOT_DIR);
            std::fs::create_dir_all(&root).context(|| format!("create {}", root.display()))?;
            let ns = File::open(userns).context(|| format!("open {}", userns.display()))?;
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWUSER)
                .context(|| format!("enter the pod's user namespace {}", userns.display()))?;
        }
        unshare(CloneFlags::CLONE_NEWPID).context(|| "unshare the PID namespace")?;
        // SAFETY: single-threaded, as above.
        match unsafe { fork() }.context(|| "fork the namespace's init")? {
            ForkResult::Child => {
                drop(ready_r);
                init(pod_dir, File::from(ready_w))
            }
            ForkResult::Parent { child } => {
                drop(ready_w);
                let mut said = String::new();
                File::from(ready_r)
                    .read_to_string(&mut said)
                    .context(|| "read the init's report")?;
                if said != "ok" {
                    // It may be alive still (it failed to say so): it must
                    // not outlive a start that failed.
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    return Err(Error::External {
                        what: "infra process".into(),
                        message: if said.is_empty() {
                            "the namespace's init died before it was ready".into()
                        } else {
                            said
                        },
                    });
                }
                Ok(child)
            }
        }
    })();
    let child = match started {
        Ok(child) => child,
        Err(e) => {
            let _ = report.write_all(e.to_string().as_bytes());
            std::process::exit(1);
        }
    };
    if report.write_all(format!("ok {child}").as_bytes()).is_err() {
        // Nobody will learn of it: it must not stay.
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        std::process::exit(1);
    }
    drop(report);
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => break,
            Err(nix::errno::Errno::EINTR) | Ok(_) => continue,
            Err(_) => break,
        }
    }
    std::process::exit(0)
}

/// The namespace's init: isolates itself, reports "ok" on `ready` (or
/// why it cannot run), then reaps until killed.
fn init(pod_dir: &Path, mut ready: File) -> ! {
    let isolated = isolate(pod_dir, ready.as_raw_fd())
        .and_then(|()| ready.write_all(b"ok").context(|| "report readiness"));
    if let Err(e) = isolated {
        let _ = ready.write_all(e.to_string().as_bytes());
        std::process::exit(1);
    }
    // Closing the last write end ends the keeper's read.
    drop(ready);
    reap_forever();
    // Nobody is left to tell.
    std::process::exit(1)
}

fn stdio_to_dev_null() -> Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context(|| "open /dev/null")?;
    nix::unistd::dup2_stdin(&null)
        .and_then(|()| nix::unistd::dup2_stdout(&null))
        .and_then(|()| nix::unistd::dup2_stderr(&null))
        .context(|| "point stdio at /dev/null")
}

/// Everything between fork and readiness (see the module docs).
fn isolate(pod_dir: &Path, keep_fd: i32) -> Result<()> {
    nix::unistd::setsid().context(|| "setsid")?;
    close_fds_except(keep_fd)?;

    unshare(CloneFlags::CLONE_NEWNS).context(|| "unshare the mount namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context(|| "make mounts private")?;
    let root = pod_dir.join(ROOT_DIR);
    match std::fs::create_dir(&root) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(Error::io(format!("create {}", root.display()), e));
        }
        _ => {}
    }
    let quiet = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("crius-pod-infra"),
        &root,
        Some("tmpfs"),
        quiet,
        Some("size=4k,nr_inodes=4,mode=0555"),
    )
    .context(|| format!("mount the empty root at {}", root.display()))?;
    nix::unistd::chdir(&root).context(|| "enter the empty root")?;
    // pivot_root(".", "."): the old root ends up stacked on the new one
    // and is detached right away.
    nix::unistd::pivot_root(".", ".").context(|| "pivot_root into the empty root")?;
    umount2(".", MntFlags::MNT_DETACH).context(|| "detach the host's root")?;
    nix::unistd::chdir("/").context(|| "chdir /")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | quiet,
        None::<&str>,
    )
    .context(|| "make the root read-only")?;

    let _ = nix::sys::prctl::set_name(&std::ffi::CString::new(COMM).unwrap_or_default());
    nix::unistd::setgroups(&[]).context(|| "drop supplementary groups")?;
    let (gid, uid) = (Gid::from_raw(NOBODY), Uid::from_raw(NOBODY));
    nix::unistd::setresgid(gid, gid, gid).context(|| "setgid nobody")?;
    // Leaving uid 0 clears every capability.
    nix::unistd::setresuid(uid, uid, uid).context(|| "setuid nobody")?;
    nix::sys::prctl::set_no_new_privs().context(|| "set no_new_privs")?;
    nix::sys::prctl::set_dumpable(false).context(|| "make it not dumpable")?;
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None).context(|| "block signals")?;
    Ok(())
}

/// Closes every inherited fd above 2 but `keep`.
fn close_fds_except(keep: i32) -> Result<()> {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .context(|| "list /proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2 && fd != keep)
        .collect();
    for fd in fds {
        // The directory listing's own fd is among them and already
        // closed: EBADF is expected.
        let _ = nix::unistd::close(fd);
    }
    Ok(())
}

/// Waits for SIGCHLD and reaps, forever. Returns only if waiting fails.
fn reap_forever() {
    let chld = SigSet::from(Signal::SIGCHLD);
    loop {
        if chld.wait().is_err() {
            return;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
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
