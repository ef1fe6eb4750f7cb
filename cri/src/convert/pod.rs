//! Pod sandboxes: config in, status, info and list items out.

use std::collections::HashMap;

use crius_runtime::sandbox::{
    DnsConfig, IdMapping, NamespaceMode, NamespaceModes, PodConfig, PortMapping, Sandbox,
    SandboxState, UserNamespace,
};
use k8s_cri::v1 as cri;
use tonic::Status;

use super::maps::{btree, hash};
use crate::error::missing;

fn namespace_mode(v: i32) -> Result<NamespaceMode, Status> {
    match cri::NamespaceMode::try_from(v) {
        Ok(cri::NamespaceMode::Pod) => Ok(NamespaceMode::Pod),
        Ok(cri::NamespaceMode::Container) => Ok(NamespaceMode::Container),
        Ok(cri::NamespaceMode::Node) => Ok(NamespaceMode::Node),
        Ok(cri::NamespaceMode::Target) => Ok(NamespaceMode::Target),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown namespace mode {v}"
        ))),
    }
}

fn namespace_mode_to_cri(m: NamespaceMode) -> i32 {
    match m {
        NamespaceMode::Pod => cri::NamespaceMode::Pod as i32,
        NamespaceMode::Container => cri::NamespaceMode::Container as i32,
        NamespaceMode::Node => cri::NamespaceMode::Node as i32,
        NamespaceMode::Target => cri::NamespaceMode::Target as i32,
    }
}

/// A RunPodSandbox request's config as the runtime takes it.
pub fn pod_config(
    config: Option<cri::PodSandboxConfig>,
    handler: String,
) -> Result<PodConfig, Status> {
    let config = config.ok_or_else(|| missing("pod sandbox config"))?;
    let meta = config
        .metadata
        .ok_or_else(|| missing("pod sandbox config.metadata"))?;
    let linux = config.linux.unwrap_or_default();
    let ns = linux
        .security_context
        .and_then(|sc| sc.namespace_options)
        .unwrap_or_default();
    let user_namespace = user_namespace(&meta.name, ns.userns_options.as_ref())?;
    let port_mappings = config
        .port_mappings
        .iter()
        .map(|p| {
            let protocol = match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Tcp) => "tcp",
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "port mapping {}: unknown protocol {}",
                        p.container_port, p.protocol
                    )));
                }
            };
            Ok(PortMapping {
                protocol: protocol.into(),
                container_port: p.container_port,
                host_port: p.host_port,
                host_ip: p.host_ip.clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(PodConfig {
        name: meta.name,
        uid: meta.uid,
        namespace: meta.namespace,
        attempt: meta.attempt,
        hostname: config.hostname,
        log_directory: config.log_directory.into(),
        dns: config.dns_config.map(|d| DnsConfig {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings,
        labels: btree(&config.labels),
        annotations: btree(&config.annotations),
        cgroup_parent: linux.cgroup_parent,
        namespaces: NamespaceModes {
            network: namespace_mode(ns.network)?,
            pid: namespace_mode(ns.pid)?,
            ipc: namespace_mode(ns.ipc)?,
        },
        runtime_handler: handler,
        sysctls: btree(&linux.sysctls),
        user_namespace,
    })
}

/// A pod's user namespace as PodSandboxStatus reports it.
pub(super) fn userns_to_cri(u: Option<&UserNamespace>) -> cri::UserNamespace {
    let maps = |m: &[IdMapping]| {
        m.iter()
            .map(|m| cri::IdMapping {
                container_id: m.container_id,
                host_id: m.host_id,
                length: m.length,
            })
            .collect()
    };
    match u {
        Some(u) => cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: maps(&u.uids),
            gids: maps(&u.gids),
        },
        None => cri::UserNamespace {
            mode: cri::NamespaceMode::Node as i32,
            ..Default::default()
        },
    }
}

/// A pod's user namespace request: NODE (or none) runs it in the node's;
/// POD gives it its own with the mappings sent (checked by the runtime);
/// CONTAINER and TARGET are not defined for user namespaces.
pub(super) fn user_namespace(
    pod: &str,
    userns: Option<&cri::UserNamespace>,
) -> Result<Option<UserNamespace>, Status> {
    let Some(u) = userns else { return Ok(None) };
    let maps = |m: &[cri::IdMapping]| {
        m.iter()
            .map(|m| IdMapping {
                container_id: m.container_id,
                host_id: m.host_id,
                length: m.length,
            })
            .collect()
    };
    match cri::NamespaceMode::try_from(u.mode) {
        Ok(cri::NamespaceMode::Node) => Ok(None),
        Ok(cri::NamespaceMode::Pod) => Ok(Some(UserNamespace {
            uids: maps(&u.uids),
            gids: maps(&u.gids),
        })),
        _ => Err(Status::invalid_argument(format!(
            "pod {pod:?}: user namespace mode {} is not supported (POD or NODE)",
            cri::NamespaceMode::try_from(u.mode)
                .map(|m| m.as_str_name().to_string())
                .unwrap_or_else(|_| u.mode.to_string())
        ))),
    }
}

/// The CRI metadata of a pod.
pub fn pod_metadata(c: &PodConfig) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: c.name.clone(),
        uid: c.uid.clone(),
        namespace: c.namespace.clone(),
        attempt: c.attempt,
    }
}

/// The CRI state of a pod.
pub fn sandbox_state(s: SandboxState) -> i32 {
    match s {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady as i32,
        SandboxState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
    }
}

/// The runtime state a CRI pod state filter names.
pub fn sandbox_state_from_cri(v: i32) -> Result<SandboxState, Status> {
    match cri::PodSandboxState::try_from(v) {
        Ok(cri::PodSandboxState::SandboxReady) => Ok(SandboxState::Ready),
        Ok(cri::PodSandboxState::SandboxNotready) => Ok(SandboxState::NotReady),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown pod sandbox state {v}"
        ))),
    }
}

/// A pod as PodSandboxStatus reports it.
pub fn sandbox_status(sb: &Sandbox) -> cri::PodSandboxStatus {
    let mut ips = sb.ips.iter();
    cri::PodSandboxStatus {
        id: sb.id.clone(),
        metadata: Some(pod_metadata(&sb.config)),
        state: sandbox_state(sb.state),
        created_at: sb.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: ips.next().cloned().unwrap_or_default(),
            additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network: namespace_mode_to_cri(sb.config.namespaces.network),
                    pid: namespace_mode_to_cri(sb.config.namespaces.pid),
                    ipc: namespace_mode_to_cri(sb.config.namespaces.ipc),
                    userns_options: Some(userns_to_cri(sb.config.user_namespace.as_ref())),
                    ..Default::default()
                }),
            }),
        }),
        labels: hash(&sb.config.labels),
        annotations: hash(&sb.config.annotations),
        runtime_handler: sb.runtime_handler.clone(),
    }
}

/// PodSandboxStatus's verbose `info`: one JSON document under "info", as
/// crictl inspectp shows it (the keys containerd uses where they apply).
pub fn sandbox_info(sb: &Sandbox) -> HashMap<String, String> {
    let netns = sb
        .namespace(crius_runtime::sandbox::NamespaceKind::Net)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let info = serde_json::json!({
        "pid": sb.infra_pid.unwrap_or(0),
        "netns": netns,
        "netNamespaceClosed": sb.network_released,
        "namespaces": sb.namespaces,
        "runtimeHandler": sb.runtime_handler,
        "cgroupParent": sb.cgroup_parent,
        "hostname": sb.hostname,
        "shm": sb.shm,
        "filesDir": sb.files_dir,
        "config": sb.config,
        // containerd's key; crius runs no pause container, so there is no
        // sandbox `runtimeSpec` to show.
        "cniResult": sb.network_result,
    });
    HashMap::from([("info".to_string(), info.to_string())])
}

/// A pod as ListPodSandbox reports it.
pub fn sandbox_item(sb: &Sandbox) -> cri::PodSandbox {
    cri::PodSandbox {
        id: sb.id.clone(),
        metadata: Some(pod_metadata(&sb.config)),
        state: sandbox_state(sb.state),
        created_at: sb.created_at,
        labels: hash(&sb.config.labels),
        annotations: hash(&sb.config.annotations),
        runtime_handler: sb.runtime_handler.clone(),
    }
}
