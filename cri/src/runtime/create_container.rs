//! CreateContainer: a container in a ready pod, created but not started.

use std::sync::Arc;

use crius_runtime::Runtime;
use k8s_cri::v1::{CreateContainerRequest, CreateContainerResponse};
use tonic::Status;

use crate::convert;
use crate::error::{missing, to_status};

/// Handles CreateContainer.
pub async fn handle(
    rt: &Arc<Runtime>,
    req: CreateContainerRequest,
) -> Result<CreateContainerResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(missing("pod_sandbox_id"));
    }
    let config = convert::container_config(req.config)?;
    let container_id = rt
        .create_container(&req.pod_sandbox_id, config)
        .await
        .map_err(to_status)?;
    Ok(CreateContainerResponse { container_id })
}
