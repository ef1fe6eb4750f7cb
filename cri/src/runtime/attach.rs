//! Attach: checks the request and the container, and answers with a
//! one-time URL on the streaming server; the client is attached to the
//! container's stdio (through its monitor) when it comes to that URL, by
//! [`RuntimeAttach`].

use std::sync::Arc;

use crius_runtime::Runtime;
use crius_runtime::container::ExecStdio;
use k8s_cri::v1::{AttachRequest, AttachResponse};
use tokio::sync::mpsc;
use tonic::Status;

use super::exec::{check_stdio, running_container};
use crate::error::{missing, url_status};
use crate::streaming::StreamingServer;
use crate::streaming::backend::{
    AttachBackend, AttachSpec, BackendError, BoxFuture, ProcessIo, TerminalSize,
};

/// Handles Attach.
pub fn handle(
    rt: &Runtime,
    streaming: Option<&StreamingServer>,
    req: AttachRequest,
) -> Result<AttachResponse, Status> {
    if req.container_id.is_empty() {
        return Err(missing("container_id"));
    }
    let stdio = check_stdio(
        "Attach",
        &req.container_id,
        req.stdin,
        req.stdout,
        req.stderr,
        req.tty,
    )?;
    let id = running_container(rt, &req.container_id, "attach to")?;
    let server =
        streaming.ok_or_else(|| Status::unavailable("the streaming server is not running"))?;
    let url = server
        .attach_url(AttachSpec {
            container_id: id,
            stdio,
        })
        .map_err(url_status)?;
    Ok(AttachResponse { url })
}

/// Attaches sessions to containers through their monitors.
#[derive(Debug, Clone)]
pub struct RuntimeAttach(pub Arc<Runtime>);

impl AttachBackend for RuntimeAttach {
    fn attach(&self, spec: AttachSpec) -> BoxFuture<'_, Result<ProcessIo, BackendError>> {
        Box::pin(async move {
            let stdio = ExecStdio {
                stdin: spec.stdio.stdin,
                stdout: spec.stdio.stdout,
                stderr: spec.stdio.stderr,
                tty: spec.stdio.tty,
            };
            let session = self
                .0
                .attach(&spec.container_id, stdio)
                .await
                .map_err(|e| BackendError::new(e.to_string()))?;
            let resize = spec.stdio.tty.then(|| {
                let (tx, mut rx) = mpsc::channel::<TerminalSize>(8);
                let rt = self.0.clone();
                let id = spec.container_id.clone();
                tokio::spawn(async move {
                    while let Some(size) = rx.recv().await {
                        if let Err(e) = rt.resize_container_terminal(&id, size.width, size.height) {
                            tracing::debug!(container = %id, "attach: resize: {e}");
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
