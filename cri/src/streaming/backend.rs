//! What the streaming server needs from the node: a process to exec or
//! attach to, and a connection to a port inside a pod. The server speaks
//! the protocols; a backend only hands over byte streams.
//!
//! Exec and Attach plug in by implementing [`ExecBackend`] /
//! [`AttachBackend`] over the runtime: start the process (or open the
//! monitor's attach socket), return its stdio as [`ProcessIo`], and
//! resolve `exit` with its exit code. The server copies stdin, stdout and
//! stderr, forwards terminal resizes, waits for `exit`, and reports the
//! result on the error stream.

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// A boxed future, as the backends return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A byte stream the server reads.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// A byte stream the server writes.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection both ways (a TCP stream into a pod).
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// Why a backend could not do what was asked; the message reaches the
/// client (on the error stream), so it names the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

impl BackendError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        BackendError(message.into())
    }
}

/// A terminal size, as kubectl sends it on the resize stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// A running process as the server sees it.
pub struct ProcessIo {
    /// Its stdin, if the client asked for one; shut down at the client's
    /// EOF.
    pub stdin: Option<BoxWrite>,
    /// Its stdout (with a terminal: the terminal's output).
    pub stdout: Option<BoxRead>,
    /// Its stderr (never with a terminal).
    pub stderr: Option<BoxRead>,
    /// Where terminal resizes go, when it has a terminal.
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    /// Resolves when the process is over: its exit code (128 + signal when
    /// killed), or why it could not be waited for.
    pub exit: BoxFuture<'static, Result<i32, BackendError>>,
    /// The client's end of stdin ends the session, the process going on:
    /// an attach to a container whose stdin outlives its attachers (no
    /// `stdin_once`), as containerd ends it. Otherwise the session lasts
    /// until the process exits.
    pub stdin_end_detaches: bool,
}

impl std::fmt::Debug for ProcessIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessIo")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// Which stdio streams a client asked for, and whether with a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StdioOptions {
    /// The client sends stdin.
    pub stdin: bool,
    /// The client wants stdout.
    pub stdout: bool,
    /// The client wants stderr (never with `tty`).
    pub stderr: bool,
    /// Run with a terminal.
    pub tty: bool,
}

/// An Exec request, as the CRI call made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// The container (full id).
    pub container_id: String,
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Streams and terminal.
    pub stdio: StdioOptions,
}

/// An Attach request, as the CRI call made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachSpec {
    /// The container (full id).
    pub container_id: String,
    /// Streams and terminal.
    pub stdio: StdioOptions,
}

/// Runs a command in a container (Exec).
pub trait ExecBackend: Send + Sync + 'static {
    /// Starts `spec.cmd` in the container, with stdio pipes (or a
    /// terminal) for the streams asked for.
    fn exec(&self, spec: ExecSpec) -> BoxFuture<'_, Result<ProcessIo, BackendError>>;
}

/// Attaches to a container's main process (Attach).
pub trait AttachBackend: Send + Sync + 'static {
    /// Connects to the container's stdio; `exit` resolves when the
    /// container exits (the server then reports success, as the kubelet
    /// does for attach).
    fn attach(&self, spec: AttachSpec) -> BoxFuture<'_, Result<ProcessIo, BackendError>>;
}

/// Connects to ports inside pods (PortForward).
pub trait PortForwardBackend: Send + Sync + 'static {
    /// A connection to `port` on the loopback of the pod's network
    /// namespace.
    fn connect(
        &self,
        sandbox_id: &str,
        port: u16,
    ) -> BoxFuture<'_, Result<Box<dyn Duplex>, BackendError>>;
}
