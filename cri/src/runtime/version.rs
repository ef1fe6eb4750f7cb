//! Version: the runtime's name and version and the CRI API version.

use crius_runtime::Runtime;
use k8s_cri::v1::{VersionRequest, VersionResponse};
use tonic::Status;

/// The CRI API version crius serves.
pub const CRI_API_VERSION: &str = "v1";
/// The kubelet runtime API version this server answers as.
const KUBE_API_VERSION: &str = "0.1.0";

/// Handles Version.
pub fn handle(rt: &Runtime, _req: VersionRequest) -> Result<VersionResponse, Status> {
    let (name, version) = rt.version();
    Ok(VersionResponse {
        version: KUBE_API_VERSION.into(),
        runtime_name: name.into(),
        runtime_version: version.into(),
        runtime_api_version: CRI_API_VERSION.into(),
    })
}
