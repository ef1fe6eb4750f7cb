//! Attach, daemon side: a connection to the container monitor's attach
//! socket ([`crate::monitor::attach`]) turned into byte streams, and
//! terminal resizes through the monitor's control FIFO.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, Shutdown, SockFlag, SockType, UnixAddr, connect, recv, send, shutdown,
    socket,
};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::task::JoinHandle;

use super::ContainerState;
use super::Containers;
use super::exec_session::{ExecExit, ExecRead, ExecStdio, ExecWrite};
use crate::error::{Error, Result};
use crate::monitor::attach::{ATTACH_SOCKET, MAX_STDIN_PACKET, STDERR_TAG, STDOUT_TAG};
use crate::monitor::control::{self, CONTROL_FIFO, Control};

/// How much of the container's output is held for a client that reads
/// slowly before the monitor's socket fills (and the monitor drops the
/// attacher).
const OUTPUT_BUFFER: usize = 1 << 20;
/// The largest packet the monitor sends (its read buffer and a tag).
const MAX_PACKET: usize = 32 * 1024 + 1;

/// A client attached to a container's stdio.
pub struct AttachSession {
    /// Into the container's stdin (when it was created with one); ending
    /// it ends this attacher's stdin.
    pub stdin: Option<ExecWrite>,
    /// The container's stdout (or terminal output) from now on.
    pub stdout: Option<ExecRead>,
    /// The container's stderr from now on.
    pub stderr: Option<ExecRead>,
    /// Resolves (to 0) when the container has ended; dropping it detaches.
    pub exit: ExecExit,
}

impl std::fmt::Debug for AttachSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachSession")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .finish_non_exhaustive()
    }
}

/// Aborts the session's tasks (closing the connection) when dropped.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Containers {
    /// Attaches to running container `id`'s stdio: the streams in `stdio`
    /// (`tty` is the container's own and is not changed here).
    pub(crate) async fn attach(&self, id: &str, stdio: ExecStdio) -> Result<AttachSession> {
        let c = self.objects.find(id)?.get();
        if c.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running ({:?}); cannot attach to it",
                c.id, c.state
            )));
        }
        let path = self.dirs.container_state(&c.id).join(ATTACH_SOCKET);
        let fd = connect_attach(&path).map_err(|e| match e {
            Errno::ENOENT | Errno::ECONNREFUSED => Error::FailedPrecondition(format!(
                "the monitor of container {} serves no attach socket (it has exited, or an \
                 older crius started it)",
                c.id
            )),
            e => Error::io(
                format!("connect to the attach socket of container {}", c.id),
                e.into(),
            ),
        })?;
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the
        // same until the AsyncFd is dropped.
        let registered = unsafe { AsyncFd::register(fd) };
        let sock = Arc::new(registered.map_err(|e| {
            Error::io(
                format!("register the attach of container {}", c.id),
                e.into(),
            )
        })?);
        let (mut out_w, stdout) = half_duplex(stdio.stdout);
        let (mut err_w, stderr) = half_duplex(stdio.stderr);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let reader = {
            let sock = sock.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; MAX_PACKET];
                loop {
                    let n = match sock
                        .async_io(Interest::READABLE, |fd| {
                            recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)
                                .map_err(io::Error::from)
                        })
                        .await
                    {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let (tag, data) = (buf[0], &buf[1..n]);
                    let to = match tag {
                        STDOUT_TAG => &mut out_w,
                        STDERR_TAG => &mut err_w,
                        _ => continue,
                    };
                    if let Some(w) = to
                        && w.write_all(data).await.is_err()
                    {
                        // Its reader went: drop what comes for it.
                        *to = None;
                    }
                }
                let _ = done_tx.send(());
            })
        };
        let mut tasks = vec![reader];
        let stdin = match stdio.stdin {
            true => {
                let (ours, mut theirs) = tokio::io::duplex(MAX_STDIN_PACKET);
                let sock = sock.clone();
                tasks.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; MAX_STDIN_PACKET];
                    loop {
                        let n = match theirs.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let sent = sock
                            .async_io(Interest::WRITABLE, |fd| {
                                send(
                                    fd.as_raw_fd(),
                                    &buf[..n],
                                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                                )
                                .map_err(io::Error::from)
                            })
                            .await;
                        if sent.is_err() {
                            return;
                        }
                    }
                    // The client's stdin ended: tell the monitor (stdin_once).
                    let _ = shutdown(sock.get_ref().as_raw_fd(), Shutdown::Write);
                }));
                Some(Box::new(ours) as ExecWrite)
            }
            false => None,
        };
        let tasks = Tasks(tasks);
        Ok(AttachSession {
            stdin,
            stdout,
            stderr,
            exit: Box::pin(async move {
                let _tasks = tasks;
                let _ = done_rx.await;
                Ok(0)
            }),
        })
    }

    /// Sets the size of running container `id`'s terminal (through its
    /// monitor); a container without one ignores it.
    pub(crate) fn resize_terminal(&self, id: &str, width: u16, height: u16) -> Result<()> {
        let c = self.objects.find(id)?.get();
        let fifo = self.dirs.container_state(&c.id).join(CONTROL_FIFO);
        control::send(&fifo, Control::Resize { width, height })
    }
}

/// A stream the reader task writes and the client reads, or nothing.
fn half_duplex(on: bool) -> (Option<tokio::io::DuplexStream>, Option<ExecRead>) {
    if !on {
        return (None, None);
    }
    let (w, r) = tokio::io::duplex(OUTPUT_BUFFER);
    (Some(w), Some(Box::new(r)))
}

/// Connects to the attach socket at `path` (through the directory's fd:
/// the path may be longer than a socket address holds).
fn connect_attach(path: &Path) -> std::result::Result<OwnedFd, Errno> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Errno::EINVAL);
    };
    let dir =
        std::fs::File::open(dir).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    let short = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    let addr = UnixAddr::new(&short)?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(fd.as_raw_fd(), &addr)?;
    Ok(fd)
}
