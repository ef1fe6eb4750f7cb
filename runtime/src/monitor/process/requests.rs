//! Control, monitor side: reading the requests the daemon writes into the
//! control FIFO ([`super::super::control`] has the protocol).

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::super::control::{Control, take_requests};
use crate::error::{IoContext, Result};

/// The control FIFO and the unfinished request read from it.
pub(super) struct Requests {
    /// The read end (opened read-write so that it never reports end of
    /// file when a writer goes); `None`: no FIFO, or reading it failed.
    fifo: Option<File>,
    pending: Vec<u8>,
}

impl Requests {
    /// Opens the control FIFO the daemon made at `path`, read-write and
    /// non-blocking: holding a write end ourselves, it never reads as
    /// ended. `None`: the container takes no requests.
    pub(super) fn open(path: Option<&Path>) -> Result<Requests> {
        let fifo = path
            .map(|path| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(path)
                    .context(|| format!("open control FIFO {}", path.display()))
            })
            .transpose()?;
        Ok(Requests {
            fifo,
            pending: Vec::new(),
        })
    }

    /// The fd to poll, while there is one.
    pub(super) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fifo.as_ref().map(|f| f.as_fd())
    }

    /// The requests waiting in the FIFO. A read that fails ends the
    /// requests for good (it cannot happen with a FIFO we hold).
    pub(super) fn take(&mut self) -> Vec<Control> {
        let mut buf = [0u8; 512];
        let Some(fifo) = self.fifo.as_mut() else {
            return Vec::new();
        };
        let n = match std::io::Read::read(fifo, &mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Vec::new(),
            Err(e) => {
                eprintln!("crius-monitor: read control FIFO: {e}; no more requests");
                self.fifo = None;
                return Vec::new();
            }
        };
        take_requests(&mut self.pending, &buf[..n])
    }

    /// Gives back the room of an empty hold.
    pub(super) fn trim(&mut self) {
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::super::control::{self, CONTROL_FIFO};
    use super::*;

    #[test]
    fn requests_are_read_as_they_come_and_a_quiet_fifo_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONTROL_FIFO);
        control::create_fifo(&path).unwrap();
        let mut requests = Requests::open(Some(&path)).unwrap();
        assert!(requests.take().is_empty());
        assert!(requests.fd().is_some());

        control::send(&path, Control::ReopenLog).unwrap();
        control::send(
            &path,
            Control::Resize {
                width: 80,
                height: 24,
            },
        )
        .unwrap();
        assert_eq!(
            requests.take(),
            [
                Control::ReopenLog,
                Control::Resize {
                    width: 80,
                    height: 24
                }
            ]
        );

        // A request split across writes waits for its end; the writer
        // going is no end of file.
        let mut writer = OpenOptions::new().write(true).open(&path).unwrap();
        writer.write_all(b"reopen").unwrap();
        drop(writer);
        assert!(requests.take().is_empty());
        let mut writer = OpenOptions::new().write(true).open(&path).unwrap();
        writer.write_all(b"-log\n").unwrap();
        assert_eq!(requests.take(), [Control::ReopenLog]);
        assert!(requests.fd().is_some());
    }

    #[test]
    fn without_a_fifo_there_are_no_requests() {
        let mut requests = Requests::open(None).unwrap();
        assert!(requests.fd().is_none() && requests.take().is_empty());
        let dir = tempfile::tempdir().unwrap();
        let err = Requests::open(Some(&dir.path().join("missing")))
            .err()
            .unwrap();
        assert!(err.to_string().contains("open control FIFO"), "{err}");
    }
}
