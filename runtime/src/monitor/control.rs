//! Requests the daemon sends a running monitor, one line each, through a
//! FIFO in the container's directory (`ctl`, as conmon's control FIFO).
//!
//! A FIFO, not a socket: the requests are one-way and tiny, the monitor
//! polls one more fd and needs no accept loop. Attach and resize (the
//! streaming issue) add their own socket for the byte streams and a
//! `resize` request here; the monitor side dispatches on [`Control`].

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// The control FIFO's name in the container's directory.
pub const CONTROL_FIFO: &str = "ctl";

/// One request to a monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Reopen the CRI log file (kubelet rotated it).
    ReopenLog,
    /// The terminal's new size (for attach, not served yet: a monitor
    /// answers it by ignoring it).
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
}

impl Control {
    /// The request as a line.
    pub fn encode(&self) -> String {
        match self {
            Control::ReopenLog => "reopen-log\n".to_string(),
            Control::Resize { width, height } => format!("resize {width} {height}\n"),
        }
    }

    /// Parses one line (without its newline); `None` for anything else.
    pub fn decode(line: &[u8]) -> Option<Control> {
        let text = std::str::from_utf8(line).ok()?;
        let mut words = text.split_whitespace();
        let control = match words.next()? {
            "reopen-log" => Control::ReopenLog,
            "resize" => Control::Resize {
                width: words.next()?.parse().ok()?,
                height: words.next()?.parse().ok()?,
            },
            _ => return None,
        };
        words.next().is_none().then_some(control)
    }
}

/// Creates the control FIFO (mode 0600) at `path`, replacing a stale one.
pub fn create_fifo(path: &Path) -> Result<()> {
    crate::fsutil::remove_file(path)?;
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .context(|| format!("create control FIFO {}", path.display()))
}

/// Sends `control` to the monitor reading the FIFO at `path`. Fails at once
/// (never blocks) when no monitor has it open.
pub fn send(path: &Path, control: Control) -> Result<()> {
    let mut fifo = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) || e.kind() == std::io::ErrorKind::NotFound {
                Error::FailedPrecondition(format!(
                    "the container's monitor is not running ({})",
                    path.display()
                ))
            } else {
                Error::io(format!("open control FIFO {}", path.display()), e)
            }
        })?;
    // One short line is written whole (a FIFO write under PIPE_BUF is
    // atomic).
    fifo.write_all(control.encode().as_bytes())
        .context(|| format!("write to control FIFO {}", path.display()))
}

/// Splits what was read from the FIFO into requests; an unfinished line
/// stays in `pending` (bounded: a runaway writer's junk is dropped).
pub(crate) fn take_requests(pending: &mut Vec<u8>, data: &[u8]) -> Vec<Control> {
    pending.extend_from_slice(data);
    let mut out = Vec::new();
    while let Some(i) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=i).collect();
        if let Some(c) = Control::decode(&line[..line.len() - 1]) {
            out.push(c);
        }
    }
    if pending.len() > 4096 {
        pending.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_junk_is_dropped() {
        for c in [
            Control::ReopenLog,
            Control::Resize {
                width: 80,
                height: 24,
            },
        ] {
            let line = c.encode();
            assert_eq!(Control::decode(line.trim_end().as_bytes()), Some(c));
        }
        for junk in ["", "reopen", "resize 1", "resize a b", "reopen-log x"] {
            assert_eq!(Control::decode(junk.as_bytes()), None, "{junk:?}");
        }
        let mut pending = Vec::new();
        assert_eq!(
            take_requests(&mut pending, b"reopen-log\nresi"),
            [Control::ReopenLog]
        );
        assert_eq!(
            take_requests(&mut pending, b"ze 3 4\nbad\n"),
            [Control::Resize {
                width: 3,
                height: 4
            }]
        );
        assert!(pending.is_empty());
    }

    #[test]
    fn sending_without_a_reader_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONTROL_FIFO);
        create_fifo(&path).unwrap();
        let e = send(&path, Control::ReopenLog).unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
        let e = send(&dir.path().join("none"), Control::ReopenLog).unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
    }
}
