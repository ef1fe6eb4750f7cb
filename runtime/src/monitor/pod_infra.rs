//! The pod-infra process body: `crius-monitor pod-infra <pod state dir>
//! [<user namespace pin>]`, the init of a pod whose containers share one
//! PID namespace (CRI PID mode POD, Kubernetes' `shareProcessNamespace`).
//!
//! A PID namespace dies with its init, and no process can enter it after
//! that, so such a pod needs a process of its own to be that init. crius
//! brings it itself — no pause image is ever pulled: it is a mode of the
//! `crius-monitor` binary, which every node running crius already has
//! beside the daemon. Like a monitor it detaches, so it outlives daemon
//! restarts. The daemon's side (start, stop, find) is
//! in the pod part (`sandbox/infra.rs`).
//!
//! What it does (see [`infra_main`]):
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

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork, pipe2};

use crate::error::{Error, IoContext, Result};

/// `crius-monitor`'s first argument that selects this mode.
pub const INFRA_ARG: &str = "pod-infra";
/// The empty directory that becomes the infra process's root.
const ROOT_DIR: &str = "infra-root";
/// Its command name, as `ps` shows it inside the pod.
const COMM: &str = "crius-pod-infra";
/// The unprivileged user and group it runs as (nobody/nogroup).
const NOBODY: u32 = 65534;

/// Whether `crius-monitor` was started as a pod's infra process.
pub fn is_pod_infra() -> bool {
    std::env::args_os().nth(1).is_some_and(|a| a == INFRA_ARG)
}

/// The entry point of `crius-monitor pod-infra <pod state dir>`. Only
/// ever returns by exiting.
pub fn infra_main() -> ! {
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
