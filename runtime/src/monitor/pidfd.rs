//! Daemon side: a helper process held by a pidfd.
//!
//! Monitors and pod-infra processes detach from whichever daemon started
//! them, so `waitpid` is no use for them and a bare PID may be reused by
//! the time it is signalled. A pidfd names one process for as long as it
//! is held: signals sent through it cannot reach a newcomer, and it
//! becomes readable when the process ends, child of ours or not.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::error::{Error, IoContext, Result};

/// One process, held by a pidfd watched by the async runtime.
#[derive(Debug)]
pub(crate) struct Pidfd {
    fd: AsyncFd<OwnedFd>,
    pid: i32,
    /// What the process is, for errors ("monitor", "infra process").
    what: &'static str,
}

impl Pidfd {
    /// Holds the process `pid`, which `what` names in errors; `None` if
    /// there is no such process. Must be called within the async runtime.
    pub(crate) fn open(pid: i32, what: &'static str) -> Result<Option<Pidfd>> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or
        // -1; it touches no memory of ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ESRCH) {
                return Ok(None);
            }
            return Err(Error::io(format!("pidfd_open {what} {pid}"), err));
        }
        let fd =
            i32::try_from(fd).map_err(|_| Error::Internal(format!("pidfd_open returned {fd}")))?;
        // SAFETY: the kernel just returned this fd to us; nothing else owns
        // it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the AsyncFd owns the pidfd from here on and nothing else
        // closes or changes it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| Error::io(format!("watch {what} {pid}"), e.into_parts().1))?;
        Ok(Some(Pidfd { fd, pid, what }))
    }

    /// Sends `signal` (0: none, only a check) to the process. False when
    /// it is gone (reaped); a zombie still counts as there.
    pub(crate) fn send_signal(&self, signal: i32) -> Result<bool> {
        // SAFETY: pidfd_send_signal reads only the fd and the signal number
        // (no siginfo is passed); the fd is valid for the borrow.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.get_ref().as_raw_fd(),
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
            return Err(Error::io(format!("signal {} {}", self.what, self.pid), err));
        }
        Ok(true)
    }

    /// Waits until the process has exited (reaped or not).
    pub(crate) async fn exited(&self) -> Result<()> {
        self.fd
            .readable()
            .await
            .map(drop)
            .context(|| format!("wait for {} {}", self.what, self.pid))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_process_is_watched_until_it_ends_and_then_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let pidfd = Pidfd::open(child.id() as i32, "test child")
            .unwrap()
            .unwrap();
        assert!(pidfd.send_signal(0).unwrap());
        let early = tokio::time::timeout(Duration::from_millis(50), pidfd.exited()).await;
        assert!(early.is_err(), "a live process has not exited");
        assert!(pidfd.send_signal(libc::SIGKILL).unwrap());
        pidfd.exited().await.unwrap();
        // A zombie is still there; once reaped it is gone.
        assert!(pidfd.send_signal(0).unwrap());
        child.wait().unwrap();
        assert!(!pidfd.send_signal(0).unwrap());
        assert!(!pidfd.send_signal(libc::SIGKILL).unwrap());
    }

    #[tokio::test]
    async fn a_gone_process_has_no_pidfd() {
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(Pidfd::open(pid, "test child").unwrap().is_none());
    }
}
