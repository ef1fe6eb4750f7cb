//! Network namespaces pinned by a bind mount of their nsfs file, so they
//! outlive every process in them and can be handed to CNI plugins by path.
//!
//! Namespace changes are made on a dedicated short-lived thread: unshare
//! and setns act on the calling thread only, and a tokio worker (or any
//! thread of the multi-threaded daemon) must never be left in another
//! namespace. Nothing here forks.

use std::fs::{File, OpenOptions};
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

/// Creates a new, empty network namespace pinned at `pin` (a file that
/// must not exist yet; its parent directory is created if missing).
pub fn create(pin: &Path) -> Result<(), Error> {
    if let Some(parent) = pin.parent() {
        std::fs::create_dir_all(parent).map_err(netns_err(pin, "create parent directory"))?;
    }
    std::thread::scope(|s| {
        s.spawn(|| create_on_this_thread(pin))
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
        let joined = s
            .spawn(move || {
                nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| netns_err(pin, "enter network namespace")(e.into()))?;
                Ok(f())
            })
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
