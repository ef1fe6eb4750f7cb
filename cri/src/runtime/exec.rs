//! Exec: checks the request and the container, and answers with a one-time
//! URL on the streaming server; the command runs when the client comes to
//! that URL (see `streaming::remotecommand`), through [`RuntimeExec`].

use std::sync::Arc;

use crius_runtime::Runtime;
use crius_runtime::container::ExecStdio;
use crius_runtime::validate;
use k8s_cri::v1::{ExecRequest, ExecResponse};
use tokio::sync::mpsc;
use tonic::Status;

use crate::error::{missing, to_status, url_status};
use crate::streaming::StreamingServer;
use crate::streaming::backend::{
    BackendError, BoxFuture, ExecBackend, ExecSpec, ProcessIo, StdioOptions, TerminalSize,
};

/// Handles Exec.
pub fn handle(
    rt: &Runtime,
    streaming: Option<&StreamingServer>,
    req: ExecRequest,
) -> Result<ExecResponse, Status> {
    if req.container_id.is_empty() {
        return Err(missing("container_id"));
    }
    if req.cmd.is_empty() {
        return Err(missing("cmd"));
    }
    let t = stream_target(
        rt,
        streaming,
        "Exec",
        "exec in",
        &req.container_id,
        Streams {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            tty: req.tty,
        },
    )?;
    let url = t
        .server
        .exec_url(ExecSpec {
            container_id: t.id,
            cmd: req.cmd,
            stdio: t.stdio,
        })
        .map_err(url_status)?;
    Ok(ExecResponse { url })
}

/// What an Exec or Attach hands out once checked: the running
/// container's full id, the streams granted, and the streaming server
/// that serves the URL.
pub(crate) struct StreamTarget<'a> {
    pub id: String,
    pub stdio: StdioOptions,
    pub server: &'a StreamingServer,
}

/// The streams asked of an Exec or Attach.
pub(crate) struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Checks an Exec or Attach (`method`) of container `container_id`
/// through the runtime: the streams asked, and that the container runs
/// (`verb` says what is to be done in it).
pub(crate) fn stream_target<'a>(
    rt: &Runtime,
    streaming: Option<&'a StreamingServer>,
    method: &str,
    verb: &str,
    container_id: &str,
    s: Streams,
) -> Result<StreamTarget<'a>, Status> {
    validate::stdio(method, container_id, s.stdin, s.stdout, s.stderr, s.tty).map_err(to_status)?;
    let id = rt
        .running_container(container_id, verb)
        .map_err(to_status)?;
    let server =
        streaming.ok_or_else(|| Status::unavailable("the streaming server is not running"))?;
    Ok(StreamTarget {
        id,
        stdio: StdioOptions {
            stdin: s.stdin,
            stdout: s.stdout,
            stderr: s.stderr,
            tty: s.tty,
        },
        server,
    })
}

/// The runtime's stdio options for the streams a session was granted.
pub(crate) fn exec_stdio(o: &StdioOptions) -> ExecStdio {
    ExecStdio {
        stdin: o.stdin,
        stdout: o.stdout,
        stderr: o.stderr,
        tty: o.tty,
    }
}

/// A channel whose terminal sizes go to `resize` (logged if it fails),
/// for as long as the session holds the sender.
pub(crate) fn forward_resizes(
    what: &'static str,
    resize: impl Fn(TerminalSize) -> crius_runtime::Result<()> + Send + 'static,
) -> mpsc::Sender<TerminalSize> {
    let (tx, mut rx) = mpsc::channel::<TerminalSize>(8);
    tokio::spawn(async move {
        while let Some(size) = rx.recv().await {
            if let Err(e) = resize(size) {
                tracing::debug!("{what}: resize: {e}");
            }
        }
    });
    tx
}

/// Runs exec sessions' commands through the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeExec(pub Arc<Runtime>);

impl ExecBackend for RuntimeExec {
    fn exec(&self, spec: ExecSpec) -> BoxFuture<'_, Result<ProcessIo, BackendError>> {
        Box::pin(async move {
            let session = self
                .0
                .exec(&spec.container_id, &spec.cmd, exec_stdio(&spec.stdio))
                .await
                .map_err(|e| BackendError::new(e.to_string()))?;
            let resize = session.terminal.map(|terminal| {
                forward_resizes("exec", move |size| terminal.resize(size.width, size.height))
            });
            let exit = session.exit;
            Ok(ProcessIo {
                stdin: session.stdin,
                stdout: session.stdout,
                stderr: session.stderr,
                resize,
                exit: Box::pin(
                    async move { exit.await.map_err(|e| BackendError::new(e.to_string())) },
                ),
                stdin_end_detaches: false,
            })
        })
    }
}
