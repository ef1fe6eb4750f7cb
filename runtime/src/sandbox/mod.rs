//! Pod sandboxes: the namespaces, network, cgroup and files that a pod's
//! containers share. There is no pause container: the network, IPC and UTS
//! namespaces are created in-process and pinned by bind mounts for the
//! pod's life. Only a pod that shares one PID namespace among its
//! containers gets a process of its own, the infra process (a mode of
//! `crius-monitor`, see [`infra`]), to be that namespace's init.

mod files;
mod infra;
mod namespaces;
pub(crate) mod network;
mod port_forward;
mod quantity;
mod recover;
mod remove;
mod run;
mod shm;
mod status;
mod stop;
mod sysctl;
mod teardown;

/// The file in the pod's state directory naming the pod's cgroup, once
/// crius has made it itself.
pub(crate) const CGROUP_RECORD_FILE: &str = "cgroup";

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cgroups::CgroupDriver;
use crate::config::RuntimeSettings;
use crate::error::Result;
use crate::layout::Dirs;
use crate::metrics::RuntimeMetrics;
use crate::state::{Entry, Objects};
use crate::store::{Loaded, Table};
use network::NetworkBackend;

pub use crate::records::pod::{
    DnsConfig, IdMapping, NamespaceKind, NamespaceMode, NamespaceModes, PodConfig, PortMapping,
    Sandbox, SandboxFilter, SandboxState, UserNamespace,
};
pub use namespaces::user_namespaces_supported;
pub use shm::SHM_SIZE_ANNOTATION;

/// Checks the sandbox-related settings, so that a bad config stops the
/// daemon at start rather than failing every pod.
pub(crate) fn check_settings(s: &RuntimeSettings) -> Result<()> {
    shm::shm_size(&PodConfig::default(), &s.shm_size).map(drop)
}

/// The pod part: the table of pod sandboxes and their lifecycle. It knows
/// nothing of containers; the node stops and removes a pod's containers
/// before it asks this part to stop or remove the pod.
pub(crate) struct Pods {
    objects: Objects<Sandbox>,
    table: Table<Sandbox>,
    dirs: Dirs,
    settings: RuntimeSettings,
    /// How pods are attached to the node's network.
    network: Arc<dyn NetworkBackend>,
    /// How pods are placed in cgroups.
    cgroups: Arc<dyn CgroupDriver>,
    /// The `crius-monitor` binary, whose infra mode holds a shared PID
    /// namespace.
    monitor_bin: PathBuf,
    metrics: RuntimeMetrics,
    /// Pods whose RunPodSandbox failed and whose network teardown failed
    /// too, by id: retried until their network teardown succeeds.
    teardowns: std::sync::Mutex<BTreeMap<String, Sandbox>>,
}

/// What [`Pods::open`] is given.
pub(crate) struct PodsParts {
    /// The table's directory (`<root>/meta/pods`).
    pub table_dir: PathBuf,
    /// crius's root and state.
    pub dirs: Dirs,
    /// The `[runtime]` settings.
    pub settings: RuntimeSettings,
    /// The network backend.
    pub network: Arc<dyn NetworkBackend>,
    /// The cgroup driver.
    pub cgroups: Arc<dyn CgroupDriver>,
    /// The monitor binary.
    pub monitor_bin: PathBuf,
    /// The runtime's metrics.
    pub metrics: RuntimeMetrics,
}

impl Pods {
    /// Opens the pod table and loads the stored pods; a record that
    /// cannot be trusted is quarantined.
    pub(crate) fn open(parts: PodsParts) -> Result<Pods> {
        let pods = Pods {
            objects: Objects::new("pod sandbox"),
            table: Table::open(parts.table_dir)?,
            dirs: parts.dirs,
            settings: parts.settings,
            network: parts.network,
            cgroups: parts.cgroups,
            monitor_bin: parts.monitor_bin,
            metrics: parts.metrics,
            teardowns: std::sync::Mutex::new(BTreeMap::new()),
        };
        let Loaded {
            records,
            unreadable,
        } = pods.table.load_all()?;
        for e in unreadable {
            tracing::error!(error = %e, "skipping unreadable pod sandbox record");
        }
        for (id, sb) in records {
            let checked = pods.check_sandbox_record(&id, &sb).and_then(|()| {
                pods.objects
                    .reserve_name(&sb.config.unique_name(), &sb.id)
                    .map_err(|e| e.to_string())
            });
            if let Err(why) = checked {
                pods.table.quarantine_logged("pod sandbox", &id, &why);
                continue;
            }
            pods.objects.insert(Entry::new(&id, sb));
        }
        Ok(pods)
    }

    /// Readiness of pod networking (for a CNI 1.1 network, its plugins
    /// are asked too).
    pub(crate) async fn network_status(&self) -> network::NetworkStatus {
        self.network.status().await
    }
}

/// What the network backend is told of pod `sb`, whose network namespace
/// is pinned at `netns`.
pub(crate) fn pod_network<'a>(sb: &'a Sandbox, netns: &'a Path) -> network::PodNetwork<'a> {
    network::PodNetwork {
        id: &sb.id,
        config: &sb.config,
        netns,
    }
}
