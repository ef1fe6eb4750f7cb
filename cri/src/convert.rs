//! Protobuf ⇄ runtime types. Pure functions; validation of what the
//! runtime cannot represent happens here.

use std::collections::{BTreeMap, HashMap};

use crius_runtime::container::{
    Container, ContainerConfig, ContainerState, Device, Mount, Propagation, Resources,
    SecurityContext, SecurityProfile, SupplementalGroupsPolicy,
};
use crius_runtime::image::Image;
use crius_runtime::sandbox::{
    DnsConfig, IdMapping, NamespaceMode, NamespaceModes, PodConfig, PortMapping, Sandbox,
    SandboxState, UserNamespace,
};
use k8s_cri::v1 as cri;
use tonic::Status;

use crate::error::missing;

fn btree(m: &HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn hash(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

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
fn userns_to_cri(u: Option<&UserNamespace>) -> cri::UserNamespace {
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
fn user_namespace(
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
        .namespace("net")
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

fn propagation(v: i32) -> Result<Propagation, Status> {
    match cri::MountPropagation::try_from(v) {
        Ok(cri::MountPropagation::PropagationPrivate) => Ok(Propagation::Private),
        Ok(cri::MountPropagation::PropagationHostToContainer) => Ok(Propagation::HostToContainer),
        Ok(cri::MountPropagation::PropagationBidirectional) => Ok(Propagation::Bidirectional),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown mount propagation {v}"
        ))),
    }
}

fn propagation_to_cri(p: Propagation) -> i32 {
    match p {
        Propagation::Private => cri::MountPropagation::PropagationPrivate as i32,
        Propagation::HostToContainer => cri::MountPropagation::PropagationHostToContainer as i32,
        Propagation::Bidirectional => cri::MountPropagation::PropagationBidirectional as i32,
    }
}

/// A CreateContainer request's config as the runtime takes it.
pub fn container_config(config: Option<cri::ContainerConfig>) -> Result<ContainerConfig, Status> {
    let config = config.ok_or_else(|| missing("container config"))?;
    let meta = config
        .metadata
        .ok_or_else(|| missing("container config.metadata"))?;
    let image = config
        .image
        .map(|i| i.image)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| missing("container config.image"))?;
    let mounts = config
        .mounts
        .into_iter()
        .map(|m| {
            // An image volume (KEP-4639) names an image instead of a host
            // path; kubelet always asks for it read-only.
            let image = m.image.map(|i| i.image).unwrap_or_default();
            if !image.is_empty() {
                if !m.host_path.is_empty() {
                    return Err(Status::invalid_argument(format!(
                        "mount {}: both host_path {:?} and image {image:?} are set",
                        m.container_path, m.host_path
                    )));
                }
                if !m.readonly {
                    return Err(Status::invalid_argument(format!(
                        "mount {}: image volume {image:?} must be read-only",
                        m.container_path
                    )));
                }
            }
            let paths = [
                ("container_path", &m.container_path),
                ("host_path", &m.host_path),
            ];
            let paths = if image.is_empty() {
                &paths[..]
            } else {
                &paths[..1]
            };
            for (field, path) in paths {
                if !path.starts_with('/') {
                    return Err(Status::invalid_argument(format!(
                        "mount {field} {path:?} must be an absolute path"
                    )));
                }
            }
            if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "mount {}: id-mapped mounts are not supported (no user namespaces)",
                    m.container_path
                )));
            }
            Ok(Mount {
                container_path: m.container_path,
                host_path: m.host_path,
                readonly: m.readonly,
                propagation: propagation(m.propagation)?,
                recursive_read_only: m.recursive_read_only,
                image,
            })
        })
        .collect::<Result<_, _>>()?;
    let devices = config
        .devices
        .into_iter()
        .map(|d| Device {
            container_path: d.container_path,
            host_path: d.host_path,
            permissions: d.permissions,
        })
        .collect();
    let linux = config.linux.unwrap_or_default();
    let sc = linux.security_context.unwrap_or_default();
    let caps = sc.capabilities.unwrap_or_default();
    let pid_target_id = match sc.namespace_options {
        Some(ns) if ns.pid == cri::NamespaceMode::Target as i32 => {
            if ns.target_id.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "container {:?}: PID namespace mode TARGET needs namespace_options.target_id",
                    meta.name
                )));
            }
            ns.target_id
        }
        _ => String::new(),
    };
    // As containerd: a group alone would run as the image's user with
    // another group, which kubelet never asks for.
    if sc.run_as_group.is_some() && sc.run_as_user.is_none() && sc.run_as_username.is_empty() {
        return Err(Status::invalid_argument(format!(
            "container {:?}: run_as_group is set without run_as_user or run_as_username",
            meta.name
        )));
    }
    if !caps.add_ambient_capabilities.is_empty() {
        return Err(Status::invalid_argument(
            "ambient capabilities are not supported",
        ));
    }
    // The string fields are deprecated but older kubelets and crictl
    // configs still send them.
    #[allow(deprecated)]
    let (seccomp_path, apparmor_path) = (&sc.seccomp_profile_path, &sc.apparmor_profile);
    let seccomp = match sc.seccomp {
        Some(p) => security_profile(&p, "seccomp")?,
        None => profile_from_path(seccomp_path, "seccomp")?,
    };
    let apparmor = match sc.apparmor {
        Some(p) => security_profile(&p, "apparmor")?,
        None => profile_from_path(apparmor_path, "apparmor")?,
    };
    let supplemental_groups_policy =
        match cri::SupplementalGroupsPolicy::try_from(sc.supplemental_groups_policy) {
            Ok(cri::SupplementalGroupsPolicy::Merge) => SupplementalGroupsPolicy::Merge,
            Ok(cri::SupplementalGroupsPolicy::Strict) => SupplementalGroupsPolicy::Strict,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown supplemental_groups_policy {}",
                    sc.supplemental_groups_policy
                )));
            }
        };
    Ok(ContainerConfig {
        name: meta.name,
        attempt: meta.attempt,
        image,
        command: config.command,
        args: config.args,
        working_dir: config.working_dir,
        envs: config
            .envs
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect(),
        mounts,
        devices,
        labels: btree(&config.labels),
        annotations: btree(&config.annotations),
        log_path: config.log_path,
        stdin: config.stdin,
        stdin_once: config.stdin_once,
        tty: config.tty,
        resources: resources(linux.resources.unwrap_or_default()),
        security: SecurityContext {
            // `fn container_config` checked that a group comes with a user.
            run_as_user: sc.run_as_user.map(|v| v.value),
            run_as_group: sc.run_as_group.map(|v| v.value),
            run_as_username: sc.run_as_username,
            supplemental_groups: sc.supplemental_groups,
            readonly_rootfs: sc.readonly_rootfs,
            no_new_privs: sc.no_new_privs,
            add_capabilities: caps.add_capabilities,
            drop_capabilities: caps.drop_capabilities,
            privileged: sc.privileged,
            masked_paths: sc.masked_paths,
            readonly_paths: sc.readonly_paths,
            seccomp,
            apparmor,
            supplemental_groups_policy,
        },
        pid_target_id,
    })
}

/// A CRI security profile (seccomp or AppArmor).
fn security_profile(p: &cri::SecurityProfile, what: &str) -> Result<SecurityProfile, Status> {
    match cri::security_profile::ProfileType::try_from(p.profile_type) {
        Ok(cri::security_profile::ProfileType::RuntimeDefault) => {
            Ok(SecurityProfile::RuntimeDefault)
        }
        Ok(cri::security_profile::ProfileType::Unconfined) => Ok(SecurityProfile::Unconfined),
        Ok(cri::security_profile::ProfileType::Localhost) if !p.localhost_ref.is_empty() => {
            Ok(SecurityProfile::Localhost(p.localhost_ref.clone()))
        }
        Ok(cri::security_profile::ProfileType::Localhost) => Err(Status::invalid_argument(
            format!("{what} profile type Localhost needs a localhost_ref"),
        )),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown {what} profile type {}",
            p.profile_type
        ))),
    }
}

/// The deprecated string form: "", "unconfined", "runtime/default",
/// "docker/default", "localhost/<ref>".
fn profile_from_path(s: &str, what: &str) -> Result<SecurityProfile, Status> {
    match s {
        "" | "unconfined" => Ok(SecurityProfile::Unconfined),
        "runtime/default" | "docker/default" => Ok(SecurityProfile::RuntimeDefault),
        _ => match s.strip_prefix("localhost/") {
            Some(r) if !r.is_empty() => Ok(SecurityProfile::Localhost(r.to_string())),
            _ => Err(Status::invalid_argument(format!(
                "unknown {what} profile {s:?}"
            ))),
        },
    }
}

/// CRI Linux resources as the runtime takes them.
pub fn resources(r: cri::LinuxContainerResources) -> Resources {
    Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit: r.memory_limit_in_bytes,
        memory_swap_limit: r.memory_swap_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
        hugepage_limits: r
            .hugepage_limits
            .into_iter()
            .map(|h| (h.page_size, h.limit))
            .collect(),
        unified: r.unified.into_iter().collect(),
    }
}

/// Runtime resources as ContainerStatus reports them.
fn resources_to_cri(r: &Resources) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit,
        memory_swap_limit_in_bytes: r.memory_swap_limit,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|(page_size, limit)| cri::HugepageLimit {
                page_size: page_size.clone(),
                limit: *limit,
            })
            .collect(),
        unified: hash(&r.unified),
    }
}

/// The CRI state of a container.
pub fn container_state(s: ContainerState) -> i32 {
    match s {
        ContainerState::Created => cri::ContainerState::ContainerCreated as i32,
        ContainerState::Running => cri::ContainerState::ContainerRunning as i32,
        ContainerState::Exited => cri::ContainerState::ContainerExited as i32,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown as i32,
    }
}

/// The runtime state a CRI container state filter names.
pub fn container_state_from_cri(v: i32) -> Result<ContainerState, Status> {
    match cri::ContainerState::try_from(v) {
        Ok(cri::ContainerState::ContainerCreated) => Ok(ContainerState::Created),
        Ok(cri::ContainerState::ContainerRunning) => Ok(ContainerState::Running),
        Ok(cri::ContainerState::ContainerExited) => Ok(ContainerState::Exited),
        Ok(cri::ContainerState::ContainerUnknown) => Ok(ContainerState::Unknown),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown container state {v}"
        ))),
    }
}

/// The CRI metadata of a container.
pub fn container_metadata(c: &ContainerConfig) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: c.name.clone(),
        attempt: c.attempt,
    }
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

/// A container as ContainerStatus reports it.
pub fn container_status(c: &Container) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: c.id.clone(),
        metadata: Some(container_metadata(&c.config)),
        state: container_state(c.state),
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: Some(image_spec(&c.config.image)),
        image_ref: c.image_ref.clone(),
        image_id: c.image_id.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        labels: hash(&c.config.labels),
        annotations: hash(&c.config.annotations),
        mounts: c
            .config
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                propagation: propagation_to_cri(m.propagation),
                recursive_read_only: m.recursive_read_only,
                image: (!m.image.is_empty()).then(|| cri::ImageSpec {
                    image: m.image.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        log_path: c
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: Some(cri::ContainerResources {
            linux: Some(resources_to_cri(&c.config.resources)),
            windows: None,
        }),
        user: c.user.as_ref().map(|u| cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: i64::from(u.uid),
                gid: i64::from(u.gid),
                supplemental_groups: u.additional_gids.iter().map(|g| i64::from(*g)).collect(),
            }),
        }),
    }
}

/// A container as ListContainers reports it.
pub fn container_item(c: &Container) -> cri::Container {
    cri::Container {
        id: c.id.clone(),
        pod_sandbox_id: c.sandbox_id.clone(),
        metadata: Some(container_metadata(&c.config)),
        image: Some(image_spec(&c.config.image)),
        image_ref: c.image_ref.clone(),
        image_id: c.image_id.clone(),
        state: container_state(c.state),
        created_at: c.created_at,
        labels: hash(&c.config.labels),
        annotations: hash(&c.config.annotations),
    }
}

/// An image as ListImages and ImageStatus report it. The image's user
/// becomes `uid` when numeric and `username` otherwise, which kubelet uses
/// for runAsNonRoot.
pub fn image(img: &Image) -> cri::Image {
    let user = img.config.user.split(':').next().unwrap_or_default();
    let (uid, username) = match user.parse::<i64>() {
        Ok(uid) => (Some(cri::Int64Value { value: uid }), String::new()),
        Err(_) => (None, user.to_string()),
    };
    cri::Image {
        id: img.id.clone(),
        repo_tags: img.repo_tags.clone(),
        repo_digests: img.repo_digests.clone(),
        size: img.size,
        uid,
        username,
        spec: Some(image_spec(&img.id)),
        pinned: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_req() -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 2,
            }),
            hostname: "web-0".into(),
            port_mappings: vec![cri::PortMapping {
                protocol: cri::Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: String::new(),
            }],
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/pod1".into(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn user_namespace_modes() {
        let map = cri::IdMapping {
            container_id: 0,
            host_id: 100000,
            length: 65536,
        };
        let u = |mode: cri::NamespaceMode| cri::UserNamespace {
            mode: mode as i32,
            uids: vec![map],
            gids: vec![map],
        };
        assert_eq!(user_namespace("p", None).unwrap(), None);
        assert_eq!(
            user_namespace("p", Some(&u(cri::NamespaceMode::Node))).unwrap(),
            None
        );
        let pod = user_namespace("p", Some(&u(cri::NamespaceMode::Pod)))
            .unwrap()
            .unwrap();
        assert_eq!(pod.uids[0].host_id, 100000);
        assert_eq!(userns_to_cri(Some(&pod)), u(cri::NamespaceMode::Pod));
        for mode in [cri::NamespaceMode::Container, cri::NamespaceMode::Target] {
            let e = user_namespace("web", Some(&u(mode))).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(
                e.message().contains("web") && e.message().contains(mode.as_str_name()),
                "{e:?}"
            );
        }
    }

    #[test]
    fn pod_config_round_trip() {
        let c = pod_config(Some(pod_req()), "crun".into()).unwrap();
        assert_eq!((c.name.as_str(), c.attempt), ("web", 2));
        assert_eq!(c.namespaces.network, NamespaceMode::Node);
        assert_eq!(c.namespaces.pid, NamespaceMode::Container);
        assert_eq!(c.namespaces.ipc, NamespaceMode::Pod);
        assert_eq!(c.port_mappings[0].protocol, "udp");
        assert_eq!(c.cgroup_parent, "/kubepods/pod1");
        assert_eq!(c.runtime_handler, "crun");
    }

    #[test]
    fn missing_parts_are_invalid_arguments() {
        assert_eq!(
            pod_config(None, String::new()).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut req = pod_req();
        req.metadata = None;
        let e = pod_config(Some(req), String::new()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("metadata"), "{}", e.message());
        let mut req = pod_req();
        req.port_mappings[0].protocol = 9;
        assert!(pod_config(Some(req), String::new()).is_err());

        let e = container_config(Some(cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata::default()),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(e.message().contains("image"), "{}", e.message());

        let with_mount = |host: &str, ctr: &str| {
            container_config(Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata::default()),
                image: Some(cri::ImageSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                mounts: vec![cri::Mount {
                    host_path: host.into(),
                    container_path: ctr.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }))
        };
        assert!(with_mount("/srv", "/data").is_ok());
        let e = container_config(Some(cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata::default()),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    run_as_group: Some(cri::Int64Value { value: 5 }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(e.message().contains("run_as_group"), "{}", e.message());
        let e = with_mount("", "/data").unwrap_err();
        assert!(e.message().contains("host_path"), "{}", e.message());
        let e = with_mount("/srv", "data").unwrap_err();
        assert!(e.message().contains("container_path"), "{}", e.message());
    }

    fn ctr_with(sc: cri::LinuxContainerSecurityContext) -> Result<ContainerConfig, Status> {
        container_config(Some(cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata::default()),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(sc),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    #[test]
    #[allow(deprecated)] // the string forms are tested on purpose
    fn security_profiles_from_both_forms() {
        let c = ctr_with(Default::default()).unwrap();
        assert_eq!(c.security.seccomp, SecurityProfile::Unconfined);
        let c = ctr_with(cri::LinuxContainerSecurityContext {
            seccomp: Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::Localhost as i32,
                localhost_ref: "/p.json".into(),
            }),
            apparmor_profile: "runtime/default".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.security.seccomp,
            SecurityProfile::Localhost("/p.json".into())
        );
        assert_eq!(c.security.apparmor, SecurityProfile::RuntimeDefault);
        let c = ctr_with(cri::LinuxContainerSecurityContext {
            seccomp_profile_path: "localhost//x.json".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.security.seccomp,
            SecurityProfile::Localhost("/x.json".into())
        );
        for bad in [
            cri::LinuxContainerSecurityContext {
                seccomp_profile_path: "bogus".into(),
                ..Default::default()
            },
            cri::LinuxContainerSecurityContext {
                seccomp: Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::Localhost as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            },
            cri::LinuxContainerSecurityContext {
                supplemental_groups_policy: 7,
                ..Default::default()
            },
        ] {
            assert_eq!(
                ctr_with(bad).unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
    }

    #[test]
    fn status_reports_resources_and_user() {
        let mut r = cri::LinuxContainerResources {
            memory_limit_in_bytes: 1 << 20,
            ..Default::default()
        };
        r.hugepage_limits.push(cri::HugepageLimit {
            page_size: "2MB".into(),
            limit: 2 << 20,
        });
        let res = resources(r.clone());
        assert_eq!(resources_to_cri(&res), r);
    }

    #[test]
    fn image_user_becomes_uid_or_username() {
        let mut img = Image {
            id: "sha256:ab".into(),
            repo_tags: vec![],
            repo_digests: vec![],
            size: 1,
            config: Default::default(),
            layers: vec![],
            blobs: vec![],
        };
        img.config.user = "1000:1000".into();
        assert_eq!(image(&img).uid, Some(cri::Int64Value { value: 1000 }));
        img.config.user = "nginx".into();
        let i = image(&img);
        assert_eq!((i.uid, i.username.as_str()), (None, "nginx"));
    }
}
