//! Attach: the monitor's unix socket (`attach` in the container's
//! directory, SOCK_SEQPACKET, as conmon's) through which the daemon
//! attaches clients to the container's stdio.
//!
//! Monitor → attacher: one packet per read of the container's output,
//! tagged by its first byte ([`STDOUT_TAG`], [`STDERR_TAG`]; a terminal's
//! output is stdout). Attacher → monitor: packets of stdin, at most
//! [`MAX_STDIN_PACKET`] bytes, written to the container's stdin when it
//! was created with one (dropped otherwise); the attacher shutting down
//! its sending side ends its stdin. With `stdin_once`, the container's
//! stdin is closed when the first attacher that sent stdin has ended it
//! or gone. The monitor exiting (the container ended) closes every
//! attacher.
//!
//! Nothing here ever blocks the monitor: sends are non-blocking, and an
//! attacher whose socket is full (it stopped reading) is dropped rather
//! than waited for, so the container and its log go on.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr, accept4, bind, listen, recv,
    sendmsg, setsockopt, socket, sockopt,
};

use crate::error::{Error, IoContext, Result};

/// The attach socket's name in the container's directory.
pub const ATTACH_SOCKET: &str = "attach";
/// The tag of a packet of the container's stdout (or terminal output).
pub const STDOUT_TAG: u8 = 1;
/// The tag of a packet of the container's stderr.
pub const STDERR_TAG: u8 = 2;
/// The largest stdin packet an attacher may send.
pub const MAX_STDIN_PACKET: usize = 16 * 1024;
/// Room the kernel keeps for each attacher's unread output, so that a
/// burst does not drop an attacher that reads a moment later.
const ATTACHER_BUFFER: usize = 4 << 20;

/// One attached client (the daemon, for one attach session).
pub(crate) struct Attacher {
    pub(crate) fd: OwnedFd,
    /// It sent stdin.
    pub(crate) sent_stdin: bool,
    /// It ended its stdin (or went): its packets are no longer read.
    pub(crate) read_closed: bool,
}

/// The listening socket and the attachers.
pub(crate) struct Attach {
    pub(crate) listener: OwnedFd,
    pub(crate) attachers: Vec<Attacher>,
}

impl Attach {
    /// Listens at `path` (replacing a stale socket), mode 0600. Bound
    /// through the directory's fd: the path may be longer than a socket
    /// address holds.
    pub(crate) fn bind(path: &Path) -> Result<Attach> {
        crate::fsutil::remove_file(path)?;
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .context(|| "create the attach socket")?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Error::InvalidArgument(format!(
                "attach socket {} has no directory",
                path.display()
            )));
        };
        let dir = std::fs::File::open(dir).context(|| format!("open {}", dir.display()))?;
        let short = Path::new("/proc/self/fd")
            .join(dir.as_raw_fd().to_string())
            .join(name);
        let addr = UnixAddr::new(&short).context(|| format!("address {}", path.display()))?;
        bind(fd.as_raw_fd(), &addr).context(|| format!("bind {}", path.display()))?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .context(|| format!("chmod {}", path.display()))?;
        listen(&fd, Backlog::new(16).unwrap_or(Backlog::MAXCONN))
            .context(|| format!("listen on {}", path.display()))?;
        Ok(Attach {
            listener: fd,
            attachers: Vec::new(),
        })
    }

    /// Accepts the attachers waiting.
    pub(crate) fn accept(&mut self) {
        loop {
            match accept4(
                self.listener.as_raw_fd(),
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            ) {
                Ok(raw) => {
                    // SAFETY: accept4 just returned this fd; nothing else
                    // owns it.
                    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                    // Best effort: root may go past wmem_max; else the
                    // default buffer is kept.
                    if setsockopt(&fd, sockopt::SndBufForce, &ATTACHER_BUFFER).is_err() {
                        let _ = setsockopt(&fd, sockopt::SndBuf, &ATTACHER_BUFFER);
                    }
                    self.attachers.push(Attacher {
                        fd,
                        sent_stdin: false,
                        read_closed: false,
                    });
                }
                Err(Errno::EINTR | Errno::ECONNABORTED) => {}
                Err(Errno::EAGAIN) => return,
                Err(e) => {
                    eprintln!("crius-monitor: accept an attacher: {e}");
                    return;
                }
            }
        }
    }

    /// Sends `data` tagged `tag` to every attacher; drops those that are
    /// gone or too slow.
    pub(crate) fn broadcast(&mut self, tag: u8, data: &[u8]) {
        if self.attachers.is_empty() {
            return;
        }
        let tag = [tag];
        let iov = [IoSlice::new(&tag), IoSlice::new(data)];
        self.attachers.retain(|a| {
            match sendmsg::<()>(
                a.fd.as_raw_fd(),
                &iov,
                &[],
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => true,
                Err(Errno::EAGAIN) => {
                    eprintln!("crius-monitor: an attacher stopped reading; dropped");
                    false
                }
                Err(_) => false,
            }
        });
    }
}

/// What reading an attacher gave.
pub(crate) enum FromAttacher {
    /// Stdin bytes (in the buffer).
    Stdin(usize),
    /// Its stdin ended, or it went.
    Ended,
    /// Nothing now.
    Nothing,
}

/// Reads one packet from attacher `fd` into `buf`.
pub(crate) fn read_attacher(fd: BorrowedFd<'_>, buf: &mut [u8]) -> FromAttacher {
    loop {
        match recv(fd.as_fd().as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => return FromAttacher::Ended,
            Ok(n) => return FromAttacher::Stdin(n),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return FromAttacher::Nothing,
            Err(_) => return FromAttacher::Ended,
        }
    }
}
