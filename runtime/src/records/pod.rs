//! What a pod is asked to be and what crius records of it: the plain data
//! that the pod part owns and the container part, the stats readers and
//! the CRI layer read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A kind of namespace a pod may have of its own, named as in
/// `/proc/<pid>/ns/` (and in pod records).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceKind {
    /// Network.
    Net,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Hostname.
    Uts,
    /// Process ids.
    Pid,
    /// User and group ids.
    User,
}

impl NamespaceKind {
    /// Its name in `/proc/<pid>/ns/`.
    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceKind::Net => "net",
            NamespaceKind::Ipc => "ipc",
            NamespaceKind::Uts => "uts",
            NamespaceKind::Pid => "pid",
            NamespaceKind::User => "user",
        }
    }
}

impl std::fmt::Display for NamespaceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which pods ListPodSandbox returns; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct SandboxFilter {
    /// Id or unique id prefix.
    pub id: Option<String>,
    /// Only pods in this state.
    pub state: Option<SandboxState>,
    /// Only pods carrying all of these labels.
    pub labels: BTreeMap<String, String>,
}

impl SandboxFilter {
    pub(crate) fn matches(&self, sb: &Sandbox) -> bool {
        self.id
            .as_ref()
            .is_none_or(|id| sb.id.starts_with(id.as_str()))
            && self.state.is_none_or(|s| s == sb.state)
            && self
                .labels
                .iter()
                .all(|(k, v)| sb.config.labels.get(k) == Some(v))
    }
}
/// What RunPodSandbox asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodConfig {
    /// Pod name.
    pub name: String,
    /// Pod UID.
    pub uid: String,
    /// Pod namespace.
    pub namespace: String,
    /// Attempt number (kubelet bumps it when it recreates the sandbox).
    pub attempt: u32,
    /// Hostname of the pod (its UTS namespace); empty means the pod name.
    pub hostname: String,
    /// Directory of container log files; container log paths are relative
    /// to it.
    pub log_directory: PathBuf,
    /// DNS settings for resolv.conf; `None` copies the node's.
    pub dns: Option<DnsConfig>,
    /// Host ports to forward into the pod.
    pub port_mappings: Vec<PortMapping>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Parent cgroup of the pod's containers (cgroupfs path); empty means
    /// the configured default.
    pub cgroup_parent: String,
    /// Which namespaces the pod gets of its own.
    pub namespaces: NamespaceModes,
    /// RuntimeClass handler; empty means the default.
    pub runtime_handler: String,
    /// Namespaced sysctls to set in the pod's namespaces, by name
    /// (`net.ipv4.ip_unprivileged_port_start` or `net/ipv4/…`).
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// The pod's own user namespace (CRI mode POD); `None` runs it in the
    /// node's.
    #[serde(default)]
    pub user_namespace: Option<UserNamespace>,
}

/// One range of an ID mapping: `length` IDs from `container_id` inside
/// are `host_id`… on the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    /// First ID inside the namespace.
    pub container_id: u32,
    /// First ID on the host.
    pub host_id: u32,
    /// How many.
    pub length: u32,
}

/// A pod's user namespace: its UID and GID mappings (one range each, as
/// kubelet sends them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespace {
    /// UID mappings.
    pub uids: Vec<IdMapping>,
    /// GID mappings.
    pub gids: Vec<IdMapping>,
}

impl UserNamespace {
    /// Checks the mappings as kubelet and containerd expect them: exactly
    /// one range each, mapping container ID 0, of non-zero length, not
    /// wrapping around. `pod` names the pod in the error.
    pub fn check(&self, pod: &str) -> crate::error::Result<()> {
        for (what, maps) in [("uid", &self.uids), ("gid", &self.gids)] {
            let bad = |why: String| {
                crate::error::Error::InvalidArgument(format!(
                    "pod {pod:?}: user namespace {what} mappings: {why}"
                ))
            };
            let [m] = maps.as_slice() else {
                return Err(bad(format!(
                    "exactly one mapping is supported, got {}",
                    maps.len()
                )));
            };
            if m.container_id != 0 {
                return Err(bad(format!(
                    "container ID 0 must be mapped (the mapping starts at {})",
                    m.container_id
                )));
            }
            if m.length == 0 {
                return Err(bad("the mapping's length is 0".into()));
            }
            if m.host_id.checked_add(m.length - 1).is_none() {
                return Err(bad(format!(
                    "host IDs {}+{} run past the largest ID",
                    m.host_id, m.length
                )));
            }
        }
        Ok(())
    }

    /// The host UID and GID that are root inside.
    pub fn host_root(&self) -> (u32, u32) {
        let first = |m: &[IdMapping]| m.first().map_or(0, |m| m.host_id);
        (first(&self.uids), first(&self.gids))
    }

    /// `/proc/PID/uid_map` text for `maps`.
    pub fn map_text(maps: &[IdMapping]) -> String {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.length))
            .collect()
    }
}

impl PodConfig {
    /// The name kubelet gives the sandbox; unique per pod and attempt.
    pub fn unique_name(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.name, self.namespace, self.uid, self.attempt
        )
    }
}

/// DNS settings of a pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// Name servers.
    pub servers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// resolv.conf options.
    pub options: Vec<String>,
}

/// A host port forwarded into the pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortMapping {
    /// "tcp", "udp" or "sctp".
    pub protocol: String,
    /// Port in the pod.
    pub container_port: i32,
    /// Port on the host.
    pub host_port: i32,
    /// Host address to bind; empty means all.
    pub host_ip: String,
}

/// How a namespace is provided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceMode {
    /// One namespace for the pod, shared by its containers.
    #[default]
    Pod,
    /// One namespace per container.
    Container,
    /// The node's own namespace.
    Node,
    /// Another container's namespace.
    Target,
}

/// Namespace modes of a pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamespaceModes {
    /// Network namespace.
    pub network: NamespaceMode,
    /// PID namespace.
    pub pid: NamespaceMode,
    /// IPC namespace.
    pub ipc: NamespaceMode,
}

/// Whether a sandbox can host containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    /// Namespaces and network are set up.
    Ready,
    /// Stopped: network torn down; only removal is left.
    #[default]
    NotReady,
}

/// A pod sandbox as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sandbox {
    /// 64-hex id.
    pub id: String,
    /// What it was created from.
    pub config: PodConfig,
    /// Ready or not.
    pub state: SandboxState,
    /// Creation time, Unix nanoseconds.
    pub created_at: i64,
    /// Pod IPs (the first is the primary).
    pub ips: Vec<String>,
    /// The RuntimeClass handler in use (resolved default included).
    pub runtime_handler: String,
    /// Pinned namespaces, by kind; absent when the node's is used (or,
    /// for PID, one per container).
    pub namespaces: BTreeMap<NamespaceKind, PathBuf>,
    /// The pod's /dev/shm (a tmpfs), when it has its own IPC namespace.
    pub shm: Option<PathBuf>,
    /// The pod's hostname, hosts and resolv.conf files.
    pub files_dir: PathBuf,
    /// The cgroup parent its containers go under: the pod's own cgroup.
    pub cgroup_parent: String,
    /// The hostname its UTS namespace carries (the node's when the pod
    /// asked for none).
    pub hostname: String,
    /// The pod's cgroup, made by crius below the requested cgroup parent
    /// and removed with the pod (`None` in records of older versions,
    /// whose containers went straight under the parent).
    #[serde(default)]
    pub pod_cgroup: Option<String>,
    /// PID (host namespace) of the infra process holding the pod's PID
    /// namespace, for pods whose containers share one.
    #[serde(default)]
    pub infra_pid: Option<i32>,
    /// Set once the pod has been detached from its network (CNI DEL
    /// succeeded), so that stopping again or removing does not repeat it.
    #[serde(default)]
    pub network_released: bool,
    /// What the network gave the pod when it was attached (the CNI
    /// chain's result), kept for `crictl inspectp` after its teardown too;
    /// `None` on the node's network and in records of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_result: Option<serde_json::Value>,
}

impl Sandbox {
    /// The pinned namespace of `kind`, if the pod has its own.
    pub fn namespace(&self, kind: NamespaceKind) -> Option<&PathBuf> {
        self.namespaces.get(&kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_namespace_mappings_are_checked_by_pod() {
        let one = |container_id, host_id, length| IdMapping {
            container_id,
            host_id,
            length,
        };
        let ns = |uids: Vec<IdMapping>| UserNamespace {
            gids: uids.clone(),
            uids,
        };
        ns(vec![one(0, 100000, 65536)]).check("p").unwrap();
        assert_eq!(
            ns(vec![one(0, 100000, 65536)]).host_root(),
            (100000, 100000)
        );
        for (bad, why) in [
            (ns(vec![]), "exactly one"),
            (ns(vec![one(0, 1000, 10), one(0, 2000, 10)]), "exactly one"),
            (ns(vec![one(1, 1000, 10)]), "container ID 0"),
            (ns(vec![one(0, 1000, 0)]), "length"),
            (ns(vec![one(0, u32::MAX, 2)]), "past"),
        ] {
            let e = bad.check("my-pod").unwrap_err().to_string();
            assert!(e.contains("my-pod") && e.contains(why), "{e}");
        }
        assert_eq!(
            UserNamespace::map_text(&[one(0, 100000, 65536)]),
            "0 100000 65536\n"
        );
    }
}
