//! Status: whether the runtime and pod networking are ready; verbose
//! (`crictl info`), the configuration in effect, the runtime handlers with
//! their binaries and versions, the network's state, what the node's
//! AppArmor is to containers and the cgroup driver.

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

/// Handles Status; `config` is the daemon's configuration in effect,
/// shown in the verbose info.
pub async fn handle(
    rt: &Runtime,
    config: &serde_json::Value,
    req: StatusRequest,
) -> Result<StatusResponse, Status> {
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
            reason: s.network.reason.clone(),
            message: s.network.message.clone(),
        },
    ];
    let mut info = std::collections::HashMap::new();
    if req.verbose {
        if !config.is_null() {
            info.insert("config".to_string(), config.to_string());
        }
        let mut handlers = Vec::new();
        for name in &s.handlers {
            let (binary, version) = rt.handler_binary(name).await.unwrap_or_default();
            handlers.push(serde_json::json!({
                "name": name,
                "binary": binary,
                "version": version,
            }));
        }
        info.insert(
            "runtimeHandlers".to_string(),
            serde_json::Value::from(handlers).to_string(),
        );
        info.insert(
            "network".to_string(),
            serde_json::json!({
                "ready": s.network.ready,
                "reason": s.network.reason,
                "message": s.network.message,
            })
            .to_string(),
        );
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
