//! The terminal of a container created with `tty`: the OCI runtime makes
//! the pseudo-terminal in the container and sends its master end over a
//! unix socket (`--console-socket`); the monitor reads the container's
//! output from it (and attach, once served, writes input and sizes to it).

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

use crate::error::{Error, IoContext, Result};

/// The socket a runtime sends the terminal's master to.
pub(crate) struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listens at `path` (a stale socket there is replaced). Bound through
    /// the directory's fd, so a path longer than a socket address may hold
    /// (108 bytes) works.
    pub(crate) fn bind(path: &Path) -> Result<ConsoleSocket> {
        crate::fsutil::remove_file(path)?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Error::InvalidArgument(format!(
                "console socket {} has no directory",
                path.display()
            )));
        };
        let dir = std::fs::File::open(dir).context(|| format!("open {}", dir.display()))?;
        let short = Path::new("/proc/self/fd")
            .join(dir.as_raw_fd().to_string())
            .join(name);
        let listener =
            UnixListener::bind(&short).context(|| format!("listen on {}", path.display()))?;
        listener
            .set_nonblocking(true)
            .context(|| format!("make {} non-blocking", path.display()))?;
        Ok(ConsoleSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// The terminal's master, sent by the runtime during its create (which
    /// has finished: the connection waits in the backlog).
    pub(crate) fn receive_master(&self) -> Result<OwnedFd> {
        let (stream, _) = self.listener.accept().map_err(|e| Error::External {
            what: "console socket".into(),
            message: format!(
                "the runtime sent no terminal on {}: {e}",
                self.path.display()
            ),
        })?;
        stream
            .set_nonblocking(false)
            .context(|| "make the console connection blocking")?;
        receive_fd(&stream)
    }

    /// The listening socket (non-blocking).
    pub(crate) fn listener(&self) -> &UnixListener {
        &self.listener
    }
}

/// Receives the terminal master a runtime sends on `stream` (blocking).
pub(crate) fn receive_fd(stream: &UnixStream) -> Result<OwnedFd> {
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context(|| "receive the terminal from the runtime")?;
    for cmsg in msg.cmsgs().context(|| "read the console message")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            for &extra in &fds[1..] {
                // SAFETY: the kernel just gave us these fds; nothing
                // else owns them.
                drop(unsafe { OwnedFd::from_raw_fd(extra) });
            }
            // SAFETY: as above, this fd is new and ours alone.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(Error::External {
        what: "console socket".into(),
        message: "the runtime's message carried no terminal".into(),
    })
}

/// Sets the size of the terminal whose master is `master`; the kernel
/// tells the terminal's foreground processes (SIGWINCH).
pub(crate) fn set_window_size(master: BorrowedFd<'_>, width: u16, height: u16) -> Result<()> {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which points
    // to a live local; the fd is borrowed for the call.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if r < 0 {
        return Err(Error::io(
            "set the terminal size",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
