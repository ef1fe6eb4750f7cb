//! ContainerStatus: one container's state, exit code and times.

use crius_runtime::Runtime;
use k8s_cri::v1::{ContainerStatusRequest, ContainerStatusResponse};
use tonic::Status;

use crate::convert;
use crate::error::to_status;

/// Handles ContainerStatus.
pub fn handle(
    rt: &Runtime,
    req: ContainerStatusRequest,
) -> Result<ContainerStatusResponse, Status> {
    let c = rt.container(&req.container_id).map_err(to_status)?;
    Ok(ContainerStatusResponse {
        status: Some(convert::container_status(&c)),
        info: Default::default(),
    })
}
