//! The pod's IPC and UTS namespaces, created fresh and pinned by bind
//! mounts so they live as long as the pod, with no process inside. (The
//! network namespace is pinned the same way by the CNI library; the PID
//! namespace, which needs a process, is pinned from its infra process.)

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use crate::error::{Error, IoContext, Result};

/// Creates new IPC and/or UTS namespaces (as `ipc`/`uts` are `Some`), sets
/// `hostname` in the UTS one, and pins each at its path.
///
/// This runs on a thread of its own that exits afterwards: `unshare` moves
/// the calling thread, and a tokio worker must never change namespaces.
pub fn create_pinned(ipc: Option<&Path>, uts: Option<&Path>, hostname: &str) -> Result<()> {
    let ipc = ipc.map(Path::to_path_buf);
    let uts = uts.map(Path::to_path_buf);
    let hostname = hostname.to_string();
    std::thread::Builder::new()
        .name("crius-ns".into())
        .spawn(move || pin_on_this_thread(ipc, uts, &hostname))
        .map_err(|e| Error::io("spawn namespace thread", e))?
        .join()
        .map_err(|_| Error::Internal("namespace thread panicked".into()))?
}

fn pin_on_this_thread(ipc: Option<PathBuf>, uts: Option<PathBuf>, hostname: &str) -> Result<()> {
    let mut flags = CloneFlags::empty();
    if ipc.is_some() {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    if uts.is_some() {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    if flags.is_empty() {
        return Ok(());
    }
    unshare(flags).context(|| "unshare IPC/UTS namespaces")?;
    if uts.is_some() {
        nix::unistd::sethostname(hostname).context(|| format!("set hostname {hostname:?}"))?;
    }
    let mut pinned: Vec<&Path> = Vec::new();
    for (kind, pin) in [("ipc", &ipc), ("uts", &uts)] {
        let Some(pin) = pin else { continue };
        if let Err(e) = pin_namespace(kind, pin) {
            for p in pinned {
                let _ = unpin(p);
            }
            return Err(e);
        }
        pinned.push(pin);
    }
    Ok(())
}

/// Bind-mounts this thread's namespace of `kind` onto a new file at `pin`.
fn pin_namespace(kind: &str, pin: &Path) -> Result<()> {
    pin_from(&format!("/proc/thread-self/ns/{kind}"), kind, pin)
}

/// Bind-mounts the namespace of `kind` of process `pid` onto a new file
/// at `pin`.
pub fn pin_process_namespace(pid: i32, kind: &str, pin: &Path) -> Result<()> {
    pin_from(&format!("/proc/{pid}/ns/{kind}"), kind, pin)
}

fn pin_from(source: &str, kind: &str, pin: &Path) -> Result<()> {
    fs::File::create(pin).context(|| format!("create namespace pin {}", pin.display()))?;
    let mounted = mount(
        Some(source),
        pin,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context(|| format!("pin {kind} namespace at {}", pin.display()));
    if mounted.is_err() {
        let _ = fs::remove_file(pin);
    }
    mounted
}

/// Unmounts and removes a pinned namespace; a missing pin is fine.
pub fn unpin(pin: &Path) -> Result<()> {
    crate::fsutil::unmount(pin, "namespace pin")?;
    crate::fsutil::remove_file(pin)
}
