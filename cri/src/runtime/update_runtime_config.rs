//! UpdateRuntimeConfig: kubelet hands over the node's pod CIDR.

use k8s_cri::v1::{UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse};
use tonic::Status;

/// Handles UpdateRuntimeConfig. The pod CIDR is logged and otherwise
/// unused: crius takes pod networks from the CNI config directory as
/// written, as CRI-O does, instead of templating a config from the CIDR.
pub fn handle(req: UpdateRuntimeConfigRequest) -> Result<UpdateRuntimeConfigResponse, Status> {
    if let Some(cidr) = req
        .runtime_config
        .and_then(|c| c.network_config)
        .map(|n| n.pod_cidr)
        .filter(|c| !c.is_empty())
    {
        tracing::info!(pod_cidr = %cidr, "node pod CIDR (CNI config is taken as written)");
    }
    Ok(UpdateRuntimeConfigResponse {})
}
