//! RemovePodSandbox: remove a pod and everything in it.

use crius_runtime::Runtime;
use k8s_cri::v1::{RemovePodSandboxRequest, RemovePodSandboxResponse};
use tonic::Status;

use crate::error::{missing, to_status};

/// Handles RemovePodSandbox.
pub async fn handle(
    rt: &Runtime,
    req: RemovePodSandboxRequest,
) -> Result<RemovePodSandboxResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(missing("pod_sandbox_id"));
    }
    rt.remove_pod_sandbox(&req.pod_sandbox_id)
        .await
        .map_err(to_status)?;
    Ok(RemovePodSandboxResponse {})
}
