//! Attach: checks the request and the container, and answers with a
//! one-time URL on the streaming server; the client is attached to the
//! container's stdio (through its monitor) when it comes to that URL, by
//! [`RuntimeAttach`].

use std::sync::Arc;

use crius_runtime::Runtime;
use k8s_cri::v1::{AttachRequest, AttachResponse};
use tonic::Status;

use super::exec::{Streams, exec_stdio, forward_resizes, stream_target};
use crate::error::{missing, url_status};
use crate::streaming::StreamingServer;
use crate::streaming::backend::{AttachBackend, AttachSpec, BackendError, BoxFuture, ProcessIo};

/// Handles Attach.
pub fn handle(
    rt: &Runtime,
    streaming: Option<&StreamingServer>,
    req: AttachRequest,
) -> Result<AttachResponse, Status> {
    if req.container_id.is_empty() {
        return Err(missing("container_id"));
    }
    let t = stream_target(
        rt,
        streaming,
        "Attach",
        "attach to",
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
        .attach_url(AttachSpec {
            container_id: t.id,
            stdio: t.stdio,
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
            let stdin_once = self
                .0
                .container(&spec.container_id)
                .map(|c| c.config.stdin_once)
                .unwrap_or(false);
            let session = self
                .0
                .attach(&spec.container_id, exec_stdio(&spec.stdio))
                .await
                .map_err(|e| BackendError::new(e.to_string()))?;
            let resize = spec.stdio.tty.then(|| {
                let rt = self.0.clone();
                let id = spec.container_id.clone();
                forward_resizes("attach", move |size| {
                    rt.resize_container_terminal(&id, size.width, size.height)
                })
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
                // stdin_once: the monitor closes the container's stdin at
                // this attacher's end, and the session waits for the exit
                // so that the client sees the last output.
                stdin_end_detaches: !stdin_once,
            })
        })
    }
}
