//! The node: [`Runtime`], the facade the CRI layer calls, over the parts
//! that own the node's state — the image store, the pod part
//! ([`crate::sandbox`]) and the container part ([`crate::container`]).
//! What spans more than one part lives here and only here: a pod's stop
//! and removal stop and remove its containers first, a container is made
//! in a pod this layer found ready, image garbage collection keeps what
//! containers use, stats read pods with their containers. The parts meet
//! through ids and their own small APIs, never each other's tables.

mod containers;
mod images;
mod pods;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crius_cni::{Cni, CniOptions};

use crate::cgroups;
use crate::config::Config;
use crate::container::{Containers, ContainersParts, PodLookup};
use crate::error::{Error, Result};
use crate::image::ImageStore;
use crate::metrics::{self, StateSource};
use crate::oci::Handlers;
use crate::records::container::ContainerState;
use crate::records::pod::{Sandbox, SandboxState};
use crate::sandbox::network::{CniBackend, NetworkStatus};
use crate::sandbox::{self, Pods, PodsParts};
use crate::stats::StatsState;
use crate::{crash, fsutil, layout, monitor};

/// The name crius reports in Version.
pub const RUNTIME_NAME: &str = "crius";
/// crius's version.
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Readiness of the runtime and of pod networking, as Status reports it.
#[derive(Debug, Clone)]
pub struct RuntimeStatus {
    /// The runtime can run containers.
    pub runtime_ready: bool,
    /// Pod networking is configured.
    pub network: NetworkStatus,
    /// The OCI runtime handlers available, default first.
    pub handlers: Vec<String>,
    /// The node's AppArmor.
    pub apparmor: crate::container::AppArmorStatus,
}

/// What the node's image and container filesystems hold, for kubelet's
/// image garbage collection and eviction (ImageFsInfo).
#[derive(Debug, Clone)]
pub struct FilesystemUsage {
    /// A directory on the filesystem that holds them (crius's root).
    pub mountpoint: PathBuf,
    /// Image blobs and unpacked layers.
    pub images: fsutil::DiskUsage,
    /// Containers' writable layers.
    pub containers: fsutil::DiskUsage,
}

/// The runtime: images, pod sandboxes and containers of this node.
pub struct Runtime {
    config: Config,
    images: ImageStore,
    /// The OCI runtimes (RuntimeClass handlers).
    handlers: Arc<Handlers>,
    /// The pod part.
    pods: Arc<Pods>,
    /// The container part.
    containers: Arc<Containers>,
    /// cgroup readers and previous CPU samples, for stats.
    stats: StatsState,
    /// The cgroup driver's name (`cgroupfs`, `systemd`).
    cgroup_driver: &'static str,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("root", &self.config.root)
            .field("state", &self.config.state)
            .finish_non_exhaustive()
    }
}

/// The pod part's records as the container part reads them.
struct PodRecords(Arc<Pods>);

impl PodLookup for PodRecords {
    fn pod(&self, id: &str) -> Option<Sandbox> {
        self.0.get(id).ok()
    }
}

impl Runtime {
    /// Opens the runtime over its root and state directories, loading what
    /// an earlier run left. Its metrics go into `registry`.
    pub async fn open(config: Config, registry: &prometheus::Registry) -> Result<Arc<Runtime>> {
        crash::arm();
        let metrics = metrics::RuntimeMetrics::register(registry)
            .map_err(|e| Error::Internal(format!("register runtime metrics: {e}")))?;
        sandbox::check_settings(&config.runtime)?;
        layout::prepare(&config.root, &config.state)?;
        let images =
            ImageStore::open(&config.root, config.registry.clone(), metrics.pulls.clone())?;
        let cni = Cni::new(CniOptions {
            conf_dir: config.cni.conf_dir.clone(),
            bin_dirs: config.cni.bin_dirs.clone(),
            cache_dir: config.root.join("cni").join("cache"),
            plugin_timeout: Duration::from_secs(config.cni.plugin_timeout_secs),
            loopback_plugin: config.cni.loopback_plugin,
        })
        .with_observer(cni_observer(metrics.cni_observer()));
        let cgroups = cgroups::driver(config.runtime.cgroup_driver)?;
        cgroups
            .check_parent(&config.runtime.default_cgroup_parent)
            .map_err(|why| {
                Error::InvalidArgument(format!(
                    "[runtime] default_cgroup_parent {:?}: {why} ({} cgroup driver)",
                    config.runtime.default_cgroup_parent,
                    cgroups.name()
                ))
            })?;
        tracing::info!(driver = cgroups.name(), "cgroup driver");
        let handlers = Arc::new(Handlers::open(
            &config.runtime,
            &config.state,
            cgroups.systemd(),
        )?);
        let monitor_bin = monitor::find_monitor_bin(&config.runtime.monitor_path)?;
        let meta = config.root.join("meta");
        let dirs = layout::Dirs {
            root: config.root.clone(),
            state: config.state.clone(),
        };
        let pods = Arc::new(Pods::open(PodsParts {
            table_dir: meta.join("pods"),
            dirs: dirs.clone(),
            settings: config.runtime.clone(),
            network: Arc::new(CniBackend::new(cni)),
            cgroups: cgroups.clone(),
            monitor_bin: monitor_bin.clone(),
            metrics: metrics.clone(),
        })?);
        let containers = Containers::open(ContainersParts {
            table_dir: meta.join("containers"),
            dirs: dirs.clone(),
            settings: config.runtime.clone(),
            handlers: handlers.clone(),
            images: images.clone(),
            cgroups: cgroups.clone(),
            monitor_bin,
            min_oom_score_adj: own_oom_score_adj(),
            metrics,
            pods: Arc::new(PodRecords(pods.clone())),
        })?;
        let rt = Arc::new(Runtime {
            images,
            handlers,
            pods,
            containers,
            cgroup_driver: cgroups.name(),
            stats: StatsState::new(cgroups, dirs),
            config,
        });
        let source: std::sync::Weak<dyn StateSource> = Arc::downgrade(&rt) as _;
        metrics::StateCollector::register(registry, source)
            .map_err(|e| Error::Internal(format!("register state metrics: {e}")))?;
        rt.pods.recover().await;
        rt.containers.recover().await;
        // Layers and blobs of pulls a crash interrupted before they were
        // recorded.
        rt.collect_image_garbage_or_warn().await;
        retry_teardowns(Arc::downgrade(&rt));
        Ok(rt)
    }

    /// The cgroup driver, as kubelet's `cgroupDriver` names it: kubelet
    /// must use the same (RuntimeConfig tells it).
    pub fn cgroup_driver(&self) -> &'static str {
        self.cgroup_driver
    }

    /// The binary of OCI runtime handler `name` and what its `--version`
    /// says, if there is such a handler.
    pub async fn handler_binary(&self, name: &str) -> Option<(PathBuf, String)> {
        let h = self.handlers.get(name).ok()?;
        Some((h.path().to_path_buf(), h.version().await))
    }

    /// Version of the runtime: (name, version).
    pub fn version(&self) -> (&'static str, &'static str) {
        (RUNTIME_NAME, RUNTIME_VERSION)
    }

    /// Readiness of the runtime and the network (for a CNI 1.1 network,
    /// its plugins are asked too).
    pub async fn status(&self) -> RuntimeStatus {
        RuntimeStatus {
            runtime_ready: true,
            network: self.pods.network_status().await,
            handlers: self.handlers.names(),
            apparmor: crate::container::apparmor_status(),
        }
    }

    /// Space and inodes taken by images and by containers' writable
    /// layers. Walks the trees (as CRI-O does), off the async threads.
    pub async fn filesystem_usage(&self) -> Result<FilesystemUsage> {
        let root = self.config.root.clone();
        let images = self.images.clone();
        tokio::task::spawn_blocking(move || {
            let images = images.disk_usage()?;
            let containers = fsutil::disk_usage(&root.join("containers"))?;
            Ok(FilesystemUsage {
                mountpoint: root,
                images,
                containers,
            })
        })
        .await
        .map_err(|e| Error::Internal(format!("filesystem usage task: {e}")))?
    }

    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }
}

impl StateSource for Runtime {
    fn pod_states(&self) -> Vec<SandboxState> {
        self.pods
            .list(&Default::default())
            .into_iter()
            .map(|sb| sb.state)
            .collect()
    }

    fn container_states(&self) -> Vec<(ContainerState, i32)> {
        self.containers
            .list(&Default::default())
            .into_iter()
            .map(|c| (c.state, c.monitor_pid))
            .collect()
    }
}

/// The daemon's own oom_score_adj (0 if unreadable).
fn own_oom_score_adj() -> i32 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Retries, every `cni.teardown_retry_secs`, the network teardowns of
/// failed pod starts that failed themselves, for as long as the runtime
/// lives.
fn retry_teardowns(rt: std::sync::Weak<Runtime>) {
    let Some(every) = rt
        .upgrade()
        .map(|r| r.config.cni.teardown_retry_secs.max(1))
    else {
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(every)).await;
            let Some(rt) = rt.upgrade() else {
                return;
            };
            rt.pods.retry_failed_teardowns().await;
        }
    });
}

/// What the daemon does on each finished CNI plugin call: the metrics, and
/// the crash point inside a pod's network set-up.
fn cni_observer(metrics: crius_cni::CallObserver) -> crius_cni::CallObserver {
    crius_cni::CallObserver(Arc::new(move |call: &crius_cni::PluginCall<'_>| {
        (metrics.0)(call);
        if call.command == "ADD" && call.plugin != "loopback" {
            crash::point(crash::RUNP_DURING_NETWORK);
        }
    }))
}
