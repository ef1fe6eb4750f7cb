//! PortForward: checks the pod, and answers with a one-time URL on the
//! streaming server; the forwarding itself happens when the client comes
//! to that URL (see `streaming::portforward`), through
//! [`RuntimePortForward`].

use std::sync::Arc;

use crius_runtime::Runtime;
use crius_runtime::sandbox::SandboxState;
use k8s_cri::v1::{PortForwardRequest, PortForwardResponse};
use tonic::Status;

use crate::error::{missing, to_status, url_status};
use crate::streaming::StreamingServer;
use crate::streaming::backend::{BackendError, BoxFuture, Duplex, PortForwardBackend};

/// Handles PortForward.
pub fn handle(
    rt: &Runtime,
    streaming: Option<&StreamingServer>,
    req: PortForwardRequest,
) -> Result<PortForwardResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(missing("pod_sandbox_id"));
    }
    let mut ports = Vec::with_capacity(req.port.len());
    for p in &req.port {
        match u16::try_from(*p) {
            Ok(port) if port > 0 => ports.push(port),
            _ => {
                return Err(Status::invalid_argument(format!(
                    "port {p} of PortForward to pod sandbox {:?} is not in 1-65535",
                    req.pod_sandbox_id
                )));
            }
        }
    }
    let sb = rt.pod_sandbox(&req.pod_sandbox_id).map_err(to_status)?;
    if sb.state != SandboxState::Ready {
        return Err(Status::failed_precondition(format!(
            "pod sandbox {} is not ready",
            sb.id
        )));
    }
    let server =
        streaming.ok_or_else(|| Status::unavailable("the streaming server is not running"))?;
    let url = server.port_forward_url(&sb.id, ports).map_err(url_status)?;
    Ok(PortForwardResponse { url })
}

/// Port forwarding into pods through the runtime.
#[derive(Debug, Clone)]
pub struct RuntimePortForward(pub Arc<Runtime>);

impl PortForwardBackend for RuntimePortForward {
    fn connect(
        &self,
        sandbox_id: &str,
        port: u16,
    ) -> BoxFuture<'_, Result<Box<dyn Duplex>, BackendError>> {
        let id = sandbox_id.to_string();
        Box::pin(async move {
            match self.0.port_forward(&id, port).await {
                Ok(stream) => Ok(Box::new(stream) as Box<dyn Duplex>),
                Err(e) => Err(BackendError::new(e.to_string())),
            }
        })
    }
}
