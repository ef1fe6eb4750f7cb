//! CreateContainer: a container in a ready pod, created but not started.

use std::sync::Arc;

use crius_runtime::Runtime;
use crius_runtime::container::SentPodConfig;
use k8s_cri::v1::{CreateContainerRequest, CreateContainerResponse, NamespaceMode};
use tonic::Status;

use crate::convert;
use crate::error::{missing, to_status};

/// Handles CreateContainer.
pub async fn handle(
    rt: &Arc<Runtime>,
    req: CreateContainerRequest,
) -> Result<CreateContainerResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(missing("pod_sandbox_id"));
    }
    // kubelet sends the pod's config along; the runtime checks what it
    // says against the pod as RunPodSandbox made it.
    let userns = req
        .sandbox_config
        .as_ref()
        .and_then(|p| p.linux.as_ref())
        .and_then(|l| l.security_context.as_ref())
        .and_then(|sc| sc.namespace_options.as_ref())
        .and_then(|ns| ns.userns_options.as_ref());
    let sent = SentPodConfig {
        user_namespace: userns.is_some_and(|u| u.mode == NamespaceMode::Pod as i32),
    };
    let config = convert::container_config(req.config)?;
    let container_id = rt
        .create_container(&req.pod_sandbox_id, config, &sent)
        .await
        .map_err(to_status)?;
    Ok(CreateContainerResponse { container_id })
}
