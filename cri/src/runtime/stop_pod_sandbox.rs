//! StopPodSandbox: stop a pod's containers and release its network.

use crius_runtime::Runtime;
use k8s_cri::v1::{StopPodSandboxRequest, StopPodSandboxResponse};
use tonic::Status;

use crate::error::to_status;

/// Handles StopPodSandbox.
pub async fn handle(
    rt: &Runtime,
    req: StopPodSandboxRequest,
) -> Result<StopPodSandboxResponse, Status> {
    rt.stop_pod_sandbox(&req.pod_sandbox_id)
        .await
        .map_err(to_status)?;
    Ok(StopPodSandboxResponse {})
}
