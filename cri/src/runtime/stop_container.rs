//! StopContainer: the stop signal, then SIGKILL after the timeout.

use std::time::Duration;

use crius_runtime::Runtime;
use k8s_cri::v1::{StopContainerRequest, StopContainerResponse};
use tonic::Status;

use crate::error::to_status;

/// Handles StopContainer; a negative timeout counts as zero.
pub async fn handle(
    rt: &Runtime,
    req: StopContainerRequest,
) -> Result<StopContainerResponse, Status> {
    let timeout = Duration::from_secs(req.timeout.max(0) as u64);
    rt.stop_container(&req.container_id, timeout)
        .await
        .map_err(to_status)?;
    Ok(StopContainerResponse {})
}
