//! Containers: config and resources in, status and list items out.

use crius_runtime::container::{
    Container, ContainerConfig, ContainerState, Device, Mount, Propagation, Resources,
    SecurityContext, SecurityProfile, SupplementalGroupsPolicy,
};
use k8s_cri::v1 as cri;
use tonic::Status;

use super::image::image_spec;
use super::maps::{btree, hash};
use crate::error::missing;

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
    // No AppArmor profile named means the runtime's default (kubelet
    // sends none unless the pod names one; containerd and CRI-O alike),
    // where no seccomp profile means none.
    let apparmor = match sc.apparmor {
        Some(p) => security_profile(&p, "apparmor")?,
        None if apparmor_path.is_empty() => SecurityProfile::RuntimeDefault,
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
pub(super) fn resources_to_cri(r: &Resources) -> cri::LinuxContainerResources {
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
