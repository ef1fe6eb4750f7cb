//! ContainerStatus: one container's state, exit code and times; with
//! `verbose`, its process, OCI spec and files as JSON under `info`.

use std::collections::HashMap;

use crius_runtime::Runtime;
use crius_runtime::container::{Container, ContainerDetail, ContainerState};
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
    let info = if req.verbose {
        verbose_info(&c, &rt.container_detail(&c))
    } else {
        Default::default()
    };
    Ok(ContainerStatusResponse {
        status: Some(convert::container_status(&c)),
        info,
    })
}

/// `info["info"]`: what `crictl inspect` shows, under containerd's key
/// names where containerd has one (`pid`, `sandboxID`, `runtimeSpec`,
/// `config`, `privileged`), so `crictl inspect -o go-template
/// --template '{{.info.pid}}'` works as there; then crius's own.
fn verbose_info(c: &Container, d: &ContainerDetail) -> HashMap<String, String> {
    let running = c.state == ContainerState::Running;
    let info = serde_json::json!({
        "sandboxID": c.sandbox_id,
        "pid": if running { c.pid } else { 0 },
        "runtimeHandler": c.runtime_handler,
        "runtimeType": d.runtime_binary,
        "privileged": c.config.security.privileged,
        "config": c.config,
        "runtimeSpec": d.runtime_spec,
        "imageRef": c.image_ref,
        "monitorPid": c.monitor_pid,
        "logPath": c.log_path,
        "bundle": d.bundle,
        "rootfs": d.rootfs,
        "writableLayer": d.writable_layer,
    });
    HashMap::from([("info".to_string(), info.to_string())])
}
