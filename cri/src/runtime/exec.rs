//! Exec: checks the request and the container, and answers with a one-time
//! URL on the streaming server; the command runs when the client comes to
//! that URL (see `streaming::remotecommand`), through [`RuntimeExec`].

use std::sync::Arc;

use crius_runtime::Runtime;
use crius_runtime::container::{ContainerState, ExecStdio};
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
    let stdio = check_stdio(
        "Exec",
        &req.container_id,
        req.stdin,
        req.stdout,
        req.stderr,
        req.tty,
    )?;
    let id = running_container(rt, &req.container_id, "exec in")?;
    let server =
        streaming.ok_or_else(|| Status::unavailable("the streaming server is not running"))?;
    let url = server
        .exec_url(ExecSpec {
            container_id: id,
            cmd: req.cmd,
            stdio,
        })
        .map_err(url_status)?;
    Ok(ExecResponse { url })
}

/// The streams of an Exec or Attach request, checked as kubelet and
/// containerd do: at least one stream, and no stderr with a terminal (a
/// terminal has one output).
pub(crate) fn check_stdio(
    method: &str,
    container_id: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Result<StdioOptions, Status> {
    if !(stdin || stdout || stderr) {
        return Err(Status::invalid_argument(format!(
            "{method} to container {container_id:?}: one of stdin, stdout and stderr must be set"
        )));
    }
    if tty && stderr {
        return Err(Status::invalid_argument(format!(
            "{method} to container {container_id:?}: tty and stderr cannot both be set"
        )));
    }
    Ok(StdioOptions {
        stdin,
        stdout,
        stderr,
        tty,
    })
}

/// The full id of container `id`, which must be running.
pub(crate) fn running_container(rt: &Runtime, id: &str, verb: &str) -> Result<String, Status> {
    let c = rt.container(id).map_err(to_status)?;
    if c.state != ContainerState::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is not running ({:?}); cannot {verb} it",
            c.id, c.state
        )));
    }
    Ok(c.id)
}

/// Runs exec sessions' commands through the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeExec(pub Arc<Runtime>);

impl ExecBackend for RuntimeExec {
    fn exec(&self, spec: ExecSpec) -> BoxFuture<'_, Result<ProcessIo, BackendError>> {
        Box::pin(async move {
            let stdio = ExecStdio {
                stdin: spec.stdio.stdin,
                stdout: spec.stdio.stdout,
                stderr: spec.stdio.stderr,
                tty: spec.stdio.tty,
            };
            let session = self
                .0
                .exec(&spec.container_id, &spec.cmd, stdio)
                .await
                .map_err(|e| BackendError::new(e.to_string()))?;
            let resize = session.terminal.map(|terminal| {
                let (tx, mut rx) = mpsc::channel::<TerminalSize>(8);
                tokio::spawn(async move {
                    while let Some(size) = rx.recv().await {
                        if let Err(e) = terminal.resize(size.width, size.height) {
                            tracing::debug!("exec: resize: {e}");
                        }
                    }
                });
                tx
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
            })
        })
    }
}
