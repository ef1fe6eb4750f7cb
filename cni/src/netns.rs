//! Network namespaces pinned by a bind mount of their nsfs file, so they
//! outlive every process in them and can be handed to CNI plugins by path.
//!
//! Namespace changes are made on a dedicated short-lived thread: unshare
//! and setns act on the calling thread only, and a tokio worker (or any
//! thread of the multi-threaded daemon) must never be left in another
//! namespace. Nothing here forks.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::error::Error;

fn netns_err(pin: &Path, context: &str) -> impl FnOnce(std::io::Error) -> Error {
    let path = pin.to_path_buf();
    let context = context.to_string();
    move |source| Error::Netns {
        path,
        context,
        source,
    }
}

/// Creates a new network namespace pinned at `pin` (a file that must not
/// exist yet; its parent directory is created if missing), with its
/// loopback interface up, as the loopback plugin would leave it.
pub fn create(pin: &Path) -> Result<(), Error> {
    if let Some(parent) = pin.parent() {
        std::fs::create_dir_all(parent).map_err(netns_err(pin, "create parent directory"))?;
    }
    std::thread::scope(|s| {
        // Builder: a thread the system cannot give is an error, not a panic.
        std::thread::Builder::new()
            .spawn_scoped(s, || create_on_this_thread(pin))
            .map_err(netns_err(pin, "start a thread for"))?
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("netns create thread panicked".into())))
    })
}

/// Runs on a thread that exits right after: it is left in the new namespace.
fn create_on_this_thread(pin: &Path) -> Result<(), Error> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(pin)
        .map_err(netns_err(pin, "create pin file"))?;
    let pinned = nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| netns_err(pin, "unshare network namespace")(e.into()))
        .and_then(|()| set_loopback_up().map_err(netns_err(pin, "bring lo up")))
        .and_then(|()| {
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                pin,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| netns_err(pin, "bind-mount namespace onto pin file")(e.into()))
        });
    if pinned.is_err() {
        let _ = std::fs::remove_file(pin);
    }
    pinned
}

/// Brings the loopback interface `lo` of the calling thread's network
/// namespace up (what the CNI loopback plugin does, without running it).
/// Call it on a thread that is in the namespace, such as one that has just
/// unshared a new one.
pub fn set_loopback_up() -> std::io::Result<()> {
    // SAFETY: socket() takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data (arrays, integers and a union of them,
    // plus a pointer that ioctl does not use here); all zeros is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifr_flags, both
    // inside `req`, which outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the union's flags member.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads ifr_name and ifr_flags from `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts and removes the pin at `pin`; the namespace goes away once no
/// process is left in it. A missing pin is fine.
pub fn remove(pin: &Path) -> Result<(), Error> {
    match nix::mount::umount2(pin, MntFlags::MNT_DETACH) {
        // ENOENT: no pin; EINVAL: not a mount point (a leftover file).
        Ok(()) | Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(netns_err(pin, "unmount")(e.into())),
    }
    match std::fs::remove_file(pin) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(netns_err(pin, "remove pin file")(e))
        }
        _ => Ok(()),
    }
}

/// Runs `f` inside the namespace pinned at `pin`, on a dedicated thread,
/// and returns its value. A panic in `f` is carried over to the caller.
pub fn run_in<F, R>(pin: &Path, f: F) -> Result<R, Error>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let ns = File::open(pin).map_err(netns_err(pin, "open"))?;
    std::thread::scope(|s| {
        let joined = std::thread::Builder::new()
            .spawn_scoped(s, move || {
                nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| netns_err(pin, "enter network namespace")(e.into()))?;
                Ok(f())
            })
            .map_err(netns_err(pin, "start a thread for"))?
            .join();
        match joined {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_of_missing_pin_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        remove(&dir.path().join("nope")).unwrap();
    }

    #[test]
    fn run_in_a_plain_file_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("not-a-netns");
        std::fs::write(&pin, "").unwrap();
        let err = run_in(&pin, || ()).unwrap_err();
        assert!(err.to_string().contains("not-a-netns"), "{err}");
        // A leftover plain file is removed too.
        remove(&pin).unwrap();
        assert!(!pin.exists());
    }
}
