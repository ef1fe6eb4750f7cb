//! UpdateContainerResources: new cgroup limits for a running container.

use crius_runtime::Runtime;
use k8s_cri::v1::{UpdateContainerResourcesRequest, UpdateContainerResourcesResponse};
use tonic::Status;

use crate::convert;
use crate::error::{missing, to_status};

/// Handles UpdateContainerResources.
pub async fn handle(
    rt: &Runtime,
    req: UpdateContainerResourcesRequest,
) -> Result<UpdateContainerResourcesResponse, Status> {
    if req.container_id.is_empty() {
        return Err(missing("container_id"));
    }
    let linux = req.linux.ok_or_else(|| missing("linux resources"))?;
    rt.update_container_resources(&req.container_id, convert::resources(linux))
        .await
        .map_err(to_status)?;
    Ok(UpdateContainerResourcesResponse {})
}
