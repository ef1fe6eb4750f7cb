//! PodSandboxStatus: one pod's state, IPs and namespaces; with `verbose`,
//! its netns path, infra process and config as JSON under `info`.

use crius_runtime::Runtime;
use k8s_cri::v1::{PodSandboxStatusRequest, PodSandboxStatusResponse};
use tonic::Status;

use crate::convert;
use crate::error::to_status;

/// Handles PodSandboxStatus.
pub fn handle(
    rt: &Runtime,
    req: PodSandboxStatusRequest,
) -> Result<PodSandboxStatusResponse, Status> {
    let sb = rt.pod_sandbox(&req.pod_sandbox_id).map_err(to_status)?;
    Ok(PodSandboxStatusResponse {
        status: Some(convert::sandbox_status(&sb)),
        info: if req.verbose {
            convert::sandbox_info(&sb)
        } else {
            Default::default()
        },
        ..Default::default()
    })
}
