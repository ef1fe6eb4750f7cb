//! RunPodSandbox: namespaces, network and files of a new pod.

use crius_runtime::Runtime;
use k8s_cri::v1::{RunPodSandboxRequest, RunPodSandboxResponse};
use tonic::Status;

use crate::convert;
use crate::error::to_status;

/// Handles RunPodSandbox.
pub async fn handle(
    rt: &Runtime,
    req: RunPodSandboxRequest,
) -> Result<RunPodSandboxResponse, Status> {
    let config = convert::pod_config(req.config, req.runtime_handler)?;
    let pod_sandbox_id = rt.run_pod_sandbox(config).await.map_err(to_status)?;
    Ok(RunPodSandboxResponse { pod_sandbox_id })
}
