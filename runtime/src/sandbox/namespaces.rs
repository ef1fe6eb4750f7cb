//! The pod's network, IPC and UTS namespaces, created fresh in-process (one
//! `unshare` on a thread of its own) and pinned by bind mounts so they live
//! as long as the pod, with no process inside. The PID namespace, which
//! needs a process, is pinned from the pod's infra process.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use crate::error::{Error, IoContext, Result};
use crate::records::pod::NamespaceKind;

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
    for (kind, pin) in [
        (NamespaceKind::Net, &pins.net),
        (NamespaceKind::Ipc, &pins.ipc),
        (NamespaceKind::Uts, &pins.uts),
    ] {
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
fn pin_namespace(kind: NamespaceKind, pin: &Path) -> Result<()> {
    pin_from(&format!("/proc/thread-self/ns/{kind}"), kind, pin)
}

/// Bind-mounts the namespace of `kind` of process `pid` onto a new file
/// at `pin`.
pub fn pin_process_namespace(pid: i32, kind: NamespaceKind, pin: &Path) -> Result<()> {
    pin_from(&format!("/proc/{pid}/ns/{kind}"), kind, pin)
}

fn pin_from(source: &str, kind: NamespaceKind, pin: &Path) -> Result<()> {
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

/// Whether this node can run pods in user namespaces as crius does it:
/// user namespaces enabled, and a kernel of 5.19 or later (ID-mapped
/// Removes the network namespace pin of pod `id` at `netns`; a missing
/// one is fine.
pub fn remove_netns(id: &str, netns: &Path) -> Result<()> {
    crius_cni::netns::remove(netns).map_err(|source| Error::Network {
        context: format!("remove network namespace of pod sandbox {id}"),
        source: Box::new(source),
    })
}

/// mounts under overlayfs lower layers).
pub fn user_namespaces_supported() -> bool {
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    max > 0 && version >= (5, 19)
}

/// Creates the pod's user namespace with `userns`'s mappings and, owned
/// by it, the network, IPC and UTS namespaces `pins` asks for (so that
/// the pod's containers, inside the user namespace, may use them fully:
/// mount sysfs and mqueue, and runc may join them after the user
/// namespace). Pins the user namespace at `user_pin` and the others at
/// their pins. On failure none is left pinned.
///
/// A user namespace cannot be made by a thread of a multi-threaded
/// process, so a forked child makes them; it only ever makes raw system
/// calls, and exits once the parent has pinned its namespaces.
pub fn create_pinned_in_userns(
    userns: &super::UserNamespace,
    user_pin: &Path,
    pins: &Pins,
    hostname: &str,
) -> Result<()> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    let hostname = std::ffi::CString::new(hostname)
        .map_err(|_| Error::InvalidArgument(format!("hostname {hostname:?} contains a NUL")))?;
    let mut flags = 0;
    for (pin, flag) in [
        (&pins.net, libc::CLONE_NEWNET),
        (&pins.ipc, libc::CLONE_NEWIPC),
        (&pins.uts, libc::CLONE_NEWUTS),
    ] {
        if pin.is_some() {
            flags |= flag;
        }
    }
    let child_steps = ChildSteps {
        flags,
        hostname: pins.uts.is_some().then_some(hostname.as_c_str()),
        loopback: pins.net.is_some(),
    };
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (from_child, to_parent) = nix::unistd::pipe2(cloexec).context(|| "create a pipe")?;
    let (from_parent, to_child) = nix::unistd::pipe2(cloexec).context(|| "create a pipe")?;
    // SAFETY: the child runs only `ChildSteps::run` — raw system calls on
    // memory prepared before the fork, no allocation, no locks — and
    // leaves with `_exit`, as a child of a multi-threaded process must.
    let child = match unsafe { nix::unistd::fork() }.context(|| "fork the namespace maker")? {
        nix::unistd::ForkResult::Child => {
            let code = child_steps.run(
                to_parent.as_raw_fd(),
                from_parent.as_raw_fd(),
                to_child.as_raw_fd(),
            );
            // SAFETY: ends the child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(to_parent);
    drop(from_parent);
    let mut from_child = fs::File::from(from_child);
    let mut to_child = fs::File::from(to_child);
    let mut pinned: Vec<PathBuf> = Vec::new();
    let mut steps = || -> Result<()> {
        let mut expect = |want: u8, what: &str| -> Result<()> {
            let mut b = [0u8; 1];
            match from_child.read(&mut b) {
                Ok(1) if b[0] == want => Ok(()),
                _ => Err(Error::Internal(format!(
                    "the pod's namespace maker failed to {what}"
                ))),
            }
        };
        expect(b'u', "create the user namespace")?;
        for (file, maps) in [("uid_map", &userns.uids), ("gid_map", &userns.gids)] {
            let path = format!("/proc/{child}/{file}");
            fs::write(&path, super::UserNamespace::map_text(maps))
                .context(|| format!("write {path}"))?;
        }
        to_child
            .write_all(b"m")
            .context(|| "signal the namespace maker")?;
        expect(b'n', "create the pod's namespaces in its user namespace")?;
        pin_process_namespace(child.as_raw(), NamespaceKind::User, user_pin)?;
        pinned.push(user_pin.to_path_buf());
        for (kind, pin) in [
            (NamespaceKind::Net, &pins.net),
            (NamespaceKind::Ipc, &pins.ipc),
            (NamespaceKind::Uts, &pins.uts),
        ] {
            if let Some(pin) = pin {
                pin_process_namespace(child.as_raw(), kind, pin)?;
                pinned.push(pin.clone());
            }
        }
        Ok(())
    };
    let made = steps();
    // Done (or failed): the child may go.
    let _ = to_child.write_all(b"x");
    if made.is_err() {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        for p in &pinned {
            let _ = unpin(p);
        }
    }
    let _ = nix::sys::wait::waitpid(child, None);
    made
}

/// What the forked child of [`create_pinned_in_userns`] does, prepared
/// before the fork.
struct ChildSteps<'a> {
    flags: libc::c_int,
    hostname: Option<&'a std::ffi::CStr>,
    loopback: bool,
}

impl ChildSteps<'_> {
    /// Runs in the child: only raw system calls. Returns its exit code.
    fn run(&self, tell: i32, wait: i32, parents_end: i32) -> i32 {
        let say = |b: &u8| {
            // SAFETY: writes one byte from a live reference.
            unsafe { libc::write(tell, (b as *const u8).cast(), 1) == 1 }
        };
        let hear = || {
            let mut b = 0u8;
            // SAFETY: reads one byte into a live local.
            unsafe { libc::read(wait, (&mut b as *mut u8).cast(), 1) == 1 }
        };
        // SAFETY: plain system calls on integers and a C string that
        // lives in the parent's (copied) memory.
        unsafe {
            // Every fd but our two pipe ends goes. Our copy of the
            // parent's write end would keep our reads from ever seeing the
            // parent go; and a copy of the daemon's listeners (the
            // metrics port, the CRI socket) would keep a daemon restarted
            // after a kill -9 from binding them while we live on.
            // (close_range is Linux 5.9; before it, the write end at least.)
            let (lo, hi) = (tell.min(wait), tell.max(wait));
            let mut closed = true;
            for (first, last) in [(3, lo - 1), (lo + 1, hi - 1), (hi + 1, i32::MAX)] {
                if first <= last
                    && libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32) != 0
                {
                    closed = false;
                }
            }
            if !closed {
                libc::close(parents_end);
            }
            if libc::unshare(libc::CLONE_NEWUSER) != 0 || !say(&b'u') || !hear() {
                return 1;
            }
            if self.flags != 0 && libc::unshare(self.flags) != 0 {
                return 2;
            }
            if let Some(h) = self.hostname
                && libc::sethostname(h.as_ptr(), h.to_bytes().len()) != 0
            {
                return 3;
            }
        }
        if self.loopback && crius_cni::netns::set_loopback_up().is_err() {
            return 4;
        }
        if !say(&b'n') {
            return 5;
        }
        // Until the parent has pinned our namespaces (or gone).
        hear();
        0
    }
}
