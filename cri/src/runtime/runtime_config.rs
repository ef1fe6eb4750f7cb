//! RuntimeConfig: the cgroup driver kubelet must match.

use crius_runtime::Runtime;
use k8s_cri::v1::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse,
};
use tonic::Status;

/// Handles RuntimeConfig: the cgroup driver crius uses, which kubelet
/// adopts (KEP-4033).
pub fn handle(rt: &Runtime, _req: RuntimeConfigRequest) -> Result<RuntimeConfigResponse, Status> {
    let driver = match rt.cgroup_driver() {
        "systemd" => CgroupDriver::Systemd,
        _ => CgroupDriver::Cgroupfs,
    };
    Ok(RuntimeConfigResponse {
        linux: Some(LinuxRuntimeConfiguration {
            cgroup_driver: driver as i32,
        }),
    })
}
