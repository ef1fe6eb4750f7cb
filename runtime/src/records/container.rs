//! What a container is asked to be and what crius records of it: the
//! plain data that the container part owns and the pod part, the stats
//! readers and the CRI layer read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use super::stop_signal::StopSignal;

/// What CreateContainer's copy of the pod config (kubelet sends it along)
/// says that the runtime checks against the pod as it was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentPodConfig {
    /// It asks for a user namespace of the pod's own (`hostUsers: false`).
    pub user_namespace: bool,
}

/// The annotation naming the termination message file in the container.
pub const TERMINATION_MESSAGE_PATH_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePath";

/// What CreateContainer asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Container name, unique in its pod per attempt.
    pub name: String,
    /// Attempt number.
    pub attempt: u32,
    /// The image as the user named it (reference or id).
    pub image: String,
    /// Overrides the image's Entrypoint.
    pub command: Vec<String>,
    /// Overrides the image's Cmd.
    pub args: Vec<String>,
    /// Overrides the image's WorkingDir.
    pub working_dir: String,
    /// Environment added to (and overriding) the image's.
    pub envs: Vec<(String, String)>,
    /// Bind mounts.
    pub mounts: Vec<Mount>,
    /// Host devices made available in the container.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Log file, relative to the pod's log directory; empty means none.
    pub log_path: String,
    /// Keep stdin open.
    pub stdin: bool,
    /// Close stdin after the first attach ends.
    pub stdin_once: bool,
    /// Allocate a terminal.
    pub tty: bool,
    /// Resource limits.
    pub resources: Resources,
    /// Identity and privileges.
    pub security: SecurityContext,
    /// The container whose PID namespace this one joins (CRI PID mode
    /// TARGET, as kubelet asks for ephemeral containers); empty otherwise.
    #[serde(default)]
    pub pid_target_id: String,
}

impl ContainerConfig {
    /// The name that must be unique within a pod.
    pub fn unique_name(&self) -> String {
        format!("{}_{}", self.name, self.attempt)
    }
}

/// A bind mount into the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    /// Path in the container.
    pub container_path: String,
    /// Path on the host.
    pub host_path: String,
    /// Read-only.
    pub readonly: bool,
    /// Propagation.
    pub propagation: Propagation,
    /// Read-only all the way down (submounts too; needs kernel 5.12 and
    /// an OCI runtime that knows `rro`).
    #[serde(default)]
    pub recursive_read_only: bool,
    /// An image volume: the image (reference or id, pulled already) whose
    /// file tree is mounted read-only at `container_path`; `host_path` is
    /// then empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
}

/// A host device node given to the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Path in the container.
    pub container_path: String,
    /// The device node (or a directory of them) on the host.
    pub host_path: String,
    /// Cgroup permissions: a combination of `r`, `w` and `m`.
    pub permissions: String,
}

/// Mount propagation between host and container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Propagation {
    /// No propagation (rprivate).
    #[default]
    Private,
    /// Host mounts appear in the container (rslave).
    HostToContainer,
    /// Both ways (rshared).
    Bidirectional,
}

/// Linux resources of a container; zero means unset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// CFS period, µs.
    pub cpu_period: i64,
    /// CFS quota, µs.
    pub cpu_quota: i64,
    /// CPU shares (relative weight).
    pub cpu_shares: i64,
    /// Memory limit, bytes.
    pub memory_limit: i64,
    /// Memory + swap limit, bytes.
    pub memory_swap_limit: i64,
    /// OOM score adjustment.
    pub oom_score_adj: i64,
    /// CPUs allowed ("0-3").
    pub cpuset_cpus: String,
    /// Memory nodes allowed.
    pub cpuset_mems: String,
    /// Hugepage limits: page size ("2MB", "1GB") and limit in bytes.
    #[serde(default)]
    pub hugepage_limits: Vec<(String, u64)>,
    /// cgroup v2 files and values, written as they are (cgroup v2 hosts
    /// only).
    #[serde(default)]
    pub unified: BTreeMap<String, String>,
}

/// Which security profile (seccomp or AppArmor) a container runs under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityProfile {
    /// None: the process is not confined (what an absent profile means,
    /// as with containerd).
    #[default]
    Unconfined,
    /// The runtime's default profile.
    RuntimeDefault,
    /// A profile on the node: a file path for seccomp, a loaded profile
    /// name for AppArmor.
    Localhost(String),
}

/// How the container's supplementary groups are made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupplementalGroupsPolicy {
    /// The groups the image's /etc/group gives the user, plus the
    /// configured ones.
    #[default]
    Merge,
    /// Only the configured groups.
    Strict,
}

/// Identity and privileges of a container's process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecurityContext {
    /// UID to run as; overrides the image's user.
    pub run_as_user: Option<i64>,
    /// GID to run as.
    pub run_as_group: Option<i64>,
    /// User name to run as (looked up in the image's /etc/passwd).
    pub run_as_username: String,
    /// Extra groups.
    pub supplemental_groups: Vec<i64>,
    /// Root filesystem read-only.
    pub readonly_rootfs: bool,
    /// Set no_new_privs.
    pub no_new_privs: bool,
    /// Capabilities to add ("NET_ADMIN" or "CAP_NET_ADMIN"; "ALL").
    pub add_capabilities: Vec<String>,
    /// Capabilities to drop.
    pub drop_capabilities: Vec<String>,
    /// Privileged: every capability, the host's devices, no masked or
    /// read-only paths, no seccomp or AppArmor confinement, writable
    /// sysfs and cgroupfs.
    #[serde(default)]
    pub privileged: bool,
    /// Paths to mask; empty means the runtime's defaults.
    #[serde(default)]
    pub masked_paths: Vec<String>,
    /// Paths to make read-only; empty means the runtime's defaults.
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    /// The seccomp profile.
    #[serde(default)]
    pub seccomp: SecurityProfile,
    /// The AppArmor profile (ignored where the kernel has no AppArmor).
    #[serde(default)]
    pub apparmor: SecurityProfile,
    /// How supplementary groups are made.
    #[serde(default)]
    pub supplemental_groups_policy: SupplementalGroupsPolicy,
}

/// Lifecycle state of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Its process runs.
    Running,
    /// Its process has exited.
    Exited,
    /// Lost track of it.
    Unknown,
}

/// A container as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// 64-hex id.
    pub id: String,
    /// Its pod.
    pub sandbox_id: String,
    /// What it was created from.
    pub config: ContainerConfig,
    /// The image's id ("sha256:…").
    pub image_id: String,
    /// The image reference it resolved to (a repo digest when known).
    pub image_ref: String,
    /// Chain ids of the image layers its rootfs stacks, base first: kept
    /// by image garbage collection while the container exists.
    #[serde(default)]
    pub image_layers: Vec<String>,
    /// State.
    pub state: ContainerState,
    /// Times, Unix nanoseconds; 0 means not yet.
    pub created_at: i64,
    /// When it started.
    pub started_at: i64,
    /// When it exited.
    pub finished_at: i64,
    /// Exit code (128 + signal when killed).
    pub exit_code: i32,
    /// Brief CamelCase reason for the state ("Completed", "Error").
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// PID of the container's init (host PID namespace).
    pub pid: i32,
    /// PID of its monitor.
    pub monitor_pid: i32,
    /// Absolute log file path, if any.
    pub log_path: Option<PathBuf>,
    /// The OCI runtime handler running it.
    pub runtime_handler: String,
    /// The signal that asks it to stop (the image's StopSignal, else
    /// SIGTERM).
    pub stop_signal: StopSignal,
    /// The user its process runs as, resolved at creation.
    #[serde(default)]
    pub user: Option<Identity>,
    /// Whether the kernel OOM-killed a process of it.
    #[serde(default)]
    pub oom_killed: bool,
    /// Set when RemoveContainer has taken it away, so that a late exit
    /// notice does not bring its record back.
    #[serde(skip)]
    pub removed: bool,
}

/// The resolved identity of a container process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
}

/// Which containers ListContainers returns; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    /// Id or unique id prefix.
    pub id: Option<String>,
    /// Only containers in this state.
    pub state: Option<ContainerState>,
    /// Only containers of this pod (id or prefix).
    pub sandbox_id: Option<String>,
    /// Only containers carrying all of these labels.
    pub labels: BTreeMap<String, String>,
}

impl ContainerFilter {
    pub(crate) fn matches(&self, c: &Container) -> bool {
        self.id
            .as_ref()
            .is_none_or(|id| c.id.starts_with(id.as_str()))
            && self.state.is_none_or(|s| s == c.state)
            && self
                .sandbox_id
                .as_ref()
                .is_none_or(|p| c.sandbox_id.starts_with(p.as_str()))
            && self
                .labels
                .iter()
                .all(|(k, v)| c.config.labels.get(k) == Some(v))
    }
}

/// Whether a container is over: exited, or lost track of.
pub(crate) fn is_done(c: &Container) -> bool {
    matches!(c.state, ContainerState::Exited | ContainerState::Unknown)
}
