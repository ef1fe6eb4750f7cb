//! StartContainer: run a created container's process.

use crius_runtime::Runtime;
use k8s_cri::v1::{StartContainerRequest, StartContainerResponse};
use tonic::Status;

use crate::error::to_status;

/// Handles StartContainer.
pub async fn handle(
    rt: &Runtime,
    req: StartContainerRequest,
) -> Result<StartContainerResponse, Status> {
    rt.start_container(&req.container_id)
        .await
        .map_err(to_status)?;
    Ok(StartContainerResponse {})
}
