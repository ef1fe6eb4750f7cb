//! RemoveContainer: kill if needed, then remove.

use crius_runtime::Runtime;
use k8s_cri::v1::{RemoveContainerRequest, RemoveContainerResponse};
use tonic::Status;

use crate::error::{missing, to_status};

/// Handles RemoveContainer.
pub async fn handle(
    rt: &Runtime,
    req: RemoveContainerRequest,
) -> Result<RemoveContainerResponse, Status> {
    if req.container_id.is_empty() {
        return Err(missing("container_id"));
    }
    rt.remove_container(&req.container_id)
        .await
        .map_err(to_status)?;
    Ok(RemoveContainerResponse {})
}
