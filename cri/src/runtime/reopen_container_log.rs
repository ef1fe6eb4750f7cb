//! ReopenContainerLog: the container's monitor reopens its log file after
//! kubelet rotated it.

use crius_runtime::Runtime;
use k8s_cri::v1::{ReopenContainerLogRequest, ReopenContainerLogResponse};
use tonic::Status;

use crate::error::{missing, to_status};

/// Handles ReopenContainerLog.
pub async fn handle(
    rt: &Runtime,
    req: ReopenContainerLogRequest,
) -> Result<ReopenContainerLogResponse, Status> {
    if req.container_id.is_empty() {
        return Err(missing("container_id"));
    }
    rt.reopen_container_log(&req.container_id)
        .await
        .map_err(to_status)?;
    Ok(ReopenContainerLogResponse {})
}
