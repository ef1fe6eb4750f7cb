//! Status: whether the runtime and pod networking are ready; verbose, what
//! the node's AppArmor is to containers and the cgroup driver.

use crius_runtime::Runtime;
use k8s_cri::v1::{
    RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus,
    StatusRequest, StatusResponse,
};
use tonic::Status;

/// Condition type: the runtime can run containers.
const RUNTIME_READY: &str = "RuntimeReady";
/// Condition type: pod networking is configured.
const NETWORK_READY: &str = "NetworkReady";

/// Handles Status.
pub async fn handle(rt: &Runtime, req: StatusRequest) -> Result<StatusResponse, Status> {
    let s = rt.status().await;
    // runc and crun alike: crius makes the user namespace and the pod's
    // namespaces inside it, and the ID-mapped mounts, itself.
    let user_namespaces = crius_runtime::sandbox::user_namespaces_supported();
    let conditions = vec![
        RuntimeCondition {
            r#type: RUNTIME_READY.into(),
            status: s.runtime_ready,
            reason: String::new(),
            message: String::new(),
        },
        RuntimeCondition {
            r#type: NETWORK_READY.into(),
            status: s.network.ready,
            reason: s.network.reason,
            message: s.network.message,
        },
    ];
    let mut info = std::collections::HashMap::new();
    if req.verbose {
        let a = &s.apparmor;
        info.insert(
            "apparmor".to_string(),
            serde_json::json!({
                "enabled": a.enabled,
                "defaultProfile": a.default_profile,
                "defaultProfileLoaded": a.default_loaded,
            })
            .to_string(),
        );
        info.insert(
            "cgroupDriver".to_string(),
            serde_json::Value::from(rt.cgroup_driver()).to_string(),
        );
    }
    Ok(StatusResponse {
        status: Some(RuntimeStatus { conditions }),
        info,
        // The default handler is listed under its name and, as the CRI
        // defines it, under the empty name too (what RunPodSandbox with
        // no runtime_handler gets; critest looks it up that way).
        runtime_handlers: s
            .handlers
            .first()
            .map(|_| String::new())
            .into_iter()
            .chain(s.handlers)
            .map(|name| RuntimeHandler {
                name,
                features: Some(RuntimeHandlerFeatures {
                    // crius makes recursively read-only copies itself
                    // (mount_setattr), whatever the OCI runtime.
                    recursive_read_only_mounts: true,
                    user_namespaces,
                }),
            })
            .collect(),
        // Merge and Strict are both honoured (runtime/src/container/user.rs),
        // and ContainerStatus reports the identity the process got.
        features: Some(RuntimeFeatures {
            supplemental_groups_policy: true,
        }),
    })
}
