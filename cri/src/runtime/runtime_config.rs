//! RuntimeConfig: the cgroup driver kubelet must match.

use k8s_cri::v1::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse,
};
use tonic::Status;

/// Handles RuntimeConfig. crius manages cgroups through cgroupfs paths.
pub fn handle(_req: RuntimeConfigRequest) -> Result<RuntimeConfigResponse, Status> {
    Ok(RuntimeConfigResponse {
        linux: Some(LinuxRuntimeConfiguration {
            cgroup_driver: CgroupDriver::Cgroupfs as i32,
        }),
    })
}
