//! The pod's network, IPC and UTS namespaces, created fresh in-process (one
//! `unshare` on a thread of its own) and pinned by bind mounts so they live
//! as long as the pod, with no process inside. The PID namespace, which
//! needs a process, is pinned from the pod's infra process.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use crate::error::{Error, IoContext, Result};

/// Where a pod's new namespaces are pinned; `None` for those it does not
/// get.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    /// Network namespace (its `lo` is brought up).
    pub net: Option<PathBuf>,
    /// IPC namespace.
    pub ipc: Option<PathBuf>,
    /// UTS namespace (named `hostname`).
    pub uts: Option<PathBuf>,
}

/// Creates the namespaces `pins` asks for, sets `hostname` in the UTS
/// one, brings `lo` up in the network one, and pins each at its path. On
/// failure none is left pinned.
///
/// This runs on a thread of its own that exits afterwards: `unshare` moves
/// the calling thread, and a tokio worker must never change namespaces.
pub fn create_pinned(pins: Pins, hostname: &str) -> Result<()> {
    let hostname = hostname.to_string();
    std::thread::Builder::new()
        .name("crius-ns".into())
        .spawn(move || pin_on_this_thread(pins, &hostname))
        .map_err(|e| Error::io("spawn namespace thread", e))?
        .join()
        .map_err(|_| Error::Internal("namespace thread panicked".into()))?
}

fn pin_on_this_thread(pins: Pins, hostname: &str) -> Result<()> {
    let mut flags = CloneFlags::empty();
    for (pin, flag) in [
        (&pins.net, CloneFlags::CLONE_NEWNET),
        (&pins.ipc, CloneFlags::CLONE_NEWIPC),
        (&pins.uts, CloneFlags::CLONE_NEWUTS),
    ] {
        if pin.is_some() {
            flags |= flag;
        }
    }
    if flags.is_empty() {
        return Ok(());
    }
    unshare(flags).context(|| "unshare the pod's namespaces")?;
    if pins.uts.is_some() {
        nix::unistd::sethostname(hostname).context(|| format!("set hostname {hostname:?}"))?;
    }
    if pins.net.is_some() {
        crius_cni::netns::set_loopback_up()
            .context(|| "bring lo up in the pod's network namespace")?;
    }
    let mut pinned: Vec<&Path> = Vec::new();
    for (kind, pin) in [("net", &pins.net), ("ipc", &pins.ipc), ("uts", &pins.uts)] {
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
