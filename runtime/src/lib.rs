//! The node's state machine and everything that touches the kernel: the
//! image store, pod sandboxes, containers, the OCI runtime and the
//! per-container monitor. Knows nothing of protobuf or gRPC.
//!
//! [`Runtime`] is the facade the CRI layer calls; its methods live beside
//! the code they drive (`sandbox/lifecycle.rs`, `container/lifecycle.rs`).

pub mod cgroups;
pub mod config;
pub mod container;
pub mod crash;
pub mod error;
pub mod events;
pub mod fsutil;
pub mod image;
mod image_gc;
pub mod layout;
pub mod metrics;
pub mod monitor;
mod mount_tree;
pub mod oci;
pub mod sandbox;
mod state;
pub mod stats;
pub mod store;
pub mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crius_cni::{Cni, CniOptions};

pub use sandbox::network::NetworkStatus;
use sandbox::network::{CniBackend, NetworkBackend};

pub use config::Config;
pub use error::{Error, Result};

use container::Container;
use image::ImageStore;
use oci::OciRuntime;
use sandbox::Sandbox;
use state::Objects;
use store::Table;

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
    /// How pods are attached to the node's network.
    network: Arc<dyn NetworkBackend>,
    oci: BTreeMap<String, OciRuntime>,
    monitor_bin: PathBuf,
    sandboxes: Objects<Sandbox>,
    containers: Objects<Container>,
    sandbox_table: Table<Sandbox>,
    container_table: Table<Container>,
    /// The daemon's own oom_score_adj; containers cannot go below it.
    min_oom_score_adj: i32,
    /// How pods and containers are placed in cgroups and read back.
    cgroups: Arc<dyn cgroups::CgroupDriver>,
    metrics: metrics::RuntimeMetrics,
    /// cgroup hierarchies and previous CPU samples, for stats.
    stats: stats::StatsState,
    /// Container lifecycle events, for GetContainerEvents subscribers.
    events: events::Events,
    /// Pods whose RunPodSandbox failed and whose network teardown failed
    /// too, by id: retried until their CNI DEL succeeds.
    teardowns: std::sync::Mutex<BTreeMap<String, Sandbox>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("root", &self.config.root)
            .field("state", &self.config.state)
            .finish_non_exhaustive()
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
        let timeout = Duration::from_secs(config.runtime.oci_timeout_secs);
        let mut oci = BTreeMap::new();
        for (name, handler) in &config.runtime.handlers {
            let root = if handler.root.as_os_str().is_empty() {
                config.state.join("runtime").join(name)
            } else {
                handler.root.clone()
            };
            match OciRuntime::new(name, &handler.path, &root, timeout) {
                Ok(r) => {
                    oci.insert(name.clone(), r);
                }
                Err(e) if *name != config.runtime.default_runtime => {
                    tracing::warn!(handler = %name, error = %e, "runtime handler unavailable");
                }
                Err(e) => return Err(e),
            }
        }
        if !oci.contains_key(&config.runtime.default_runtime) {
            return Err(Error::InvalidArgument(format!(
                "default runtime {:?} is not among the configured handlers",
                config.runtime.default_runtime
            )));
        }
        let monitor_bin = monitor::find_monitor_bin(&config.runtime.monitor_path)?;
        let meta = config.root.join("meta");
        let cgroups: Arc<dyn cgroups::CgroupDriver> = Arc::new(cgroups::Cgroupfs::detect());
        let rt = Arc::new(Runtime {
            images,
            network: Arc::new(CniBackend::new(cni)),
            oci,
            monitor_bin,
            sandboxes: Objects::new("pod sandbox"),
            containers: Objects::new("container"),
            sandbox_table: Table::open(meta.join("pods"))?,
            container_table: Table::open(meta.join("containers"))?,
            min_oom_score_adj: own_oom_score_adj(),
            stats: stats::StatsState::new(cgroups.clone()),
            cgroups,
            metrics,
            events: events::Events::new(),
            teardowns: std::sync::Mutex::new(BTreeMap::new()),
            config,
        });
        metrics::StateCollector::register(registry, Arc::downgrade(&rt))
            .map_err(|e| Error::Internal(format!("register state metrics: {e}")))?;
        rt.load()?;
        rt.recover_sandboxes().await;
        rt.recover_containers().await;
        // Layers and blobs of pulls a crash interrupted before they were
        // recorded.
        rt.collect_image_garbage_or_warn().await;
        retry_teardowns(Arc::downgrade(&rt));
        Ok(rt)
    }

    /// Loads the stored pods and containers, and resumes watching the
    /// containers that were alive.
    fn load(self: &Arc<Self>) -> Result<()> {
        let store::Loaded {
            records: pods,
            unreadable: bad,
        } = self.sandbox_table.load_all()?;
        for e in bad {
            tracing::error!(error = %e, "skipping unreadable pod sandbox record");
        }
        for (id, sb) in pods {
            let checked = self.check_sandbox_record(&id, &sb).and_then(|()| {
                self.sandboxes
                    .reserve_name(&sb.config.unique_name(), &sb.id)
                    .map_err(|e| e.to_string())
            });
            if let Err(why) = checked {
                self.quarantine(&self.sandbox_table, "pod sandbox", &id, &why);
                continue;
            }
            self.sandboxes.insert(state::Entry::new(&id, sb));
        }
        let store::Loaded {
            records: containers,
            unreadable: bad,
        } = self.container_table.load_all()?;
        for e in bad {
            tracing::error!(error = %e, "skipping unreadable container record");
        }
        for (id, mut c) in containers {
            let checked = check_container_record(&id, &c).and_then(|()| {
                self.containers
                    .reserve_name(&container_name_key(&c.sandbox_id, &c.config), &c.id)
                    .map_err(|e| e.to_string())
            });
            if let Err(why) = checked {
                self.quarantine(&self.container_table, "container", &id, &why);
                continue;
            }
            self.lost_at_reboot(&mut c);
            let entry = state::Entry::new(&id, c);
            self.containers.insert(entry.clone());
            self.watch_exit(entry);
        }
        Ok(())
    }

    /// Moves a record that cannot be trusted out of its table, saying why.
    /// Its object's directories are then left to start-up recovery, which
    /// removes only what the id proves is the object's.
    fn quarantine<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        table: &Table<T>,
        kind: &str,
        id: &str,
        why: &str,
    ) {
        match table.quarantine(id) {
            Ok(to) => tracing::error!(
                id, kind, why, quarantined = %to.display(),
                "a stored record cannot be trusted; moved it to quarantine"
            ),
            Err(e) => tracing::error!(
                id, kind, why, error = %e,
                "a stored record cannot be trusted, and could not be moved to quarantine; ignoring it"
            ),
        }
    }

    /// Version of the runtime: (name, version).
    pub fn version(&self) -> (&'static str, &'static str) {
        (RUNTIME_NAME, RUNTIME_VERSION)
    }

    /// Readiness of the runtime and the network (for a CNI 1.1 network,
    /// its plugins are asked too).
    pub async fn status(&self) -> RuntimeStatus {
        let default = &self.config.runtime.default_runtime;
        let mut handlers = vec![default.clone()];
        handlers.extend(self.oci.keys().filter(|k| *k != default).cloned());
        RuntimeStatus {
            runtime_ready: true,
            network: self.network.status().await,
            handlers,
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

    /// The OCI runtime for a handler name ("" means the default).
    fn oci_runtime(&self, handler: &str) -> Result<&OciRuntime> {
        let name = if handler.is_empty() {
            &self.config.runtime.default_runtime
        } else {
            handler
        };
        self.oci.get(name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "runtime handler {name:?} is not configured (have: {})",
                self.oci.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    fn pod_state_dir(&self, id: &str) -> PathBuf {
        self.config.state.join("pods").join(id)
    }

    fn pod_root_dir(&self, id: &str) -> PathBuf {
        self.config.root.join("pods").join(id)
    }

    fn container_state_dir(&self, id: &str) -> PathBuf {
        self.config.state.join("containers").join(id)
    }

    fn container_root_dir(&self, id: &str) -> PathBuf {
        self.config.root.join("containers").join(id)
    }
}

/// The key under which a container's name is reserved: unique per pod.
fn container_name_key(sandbox_id: &str, config: &container::ContainerConfig) -> String {
    format!("{sandbox_id}/{}", config.unique_name())
}

/// Whether a stored container record can be trusted: its id is the one
/// it is stored under (every path of a container is derived from it) and
/// the ids and PIDs it names have the form crius gives them.
fn check_container_record(key: &str, c: &Container) -> std::result::Result<(), String> {
    if c.id != key || !state::is_id(&c.id) {
        return Err(format!("its id {:?} is not that of its file {key:?}", c.id));
    }
    if !state::is_id(&c.sandbox_id) {
        return Err(format!(
            "its pod id {:?} is not one crius makes",
            c.sandbox_id
        ));
    }
    if c.pid < 0 || c.monitor_pid < 0 {
        return Err(format!(
            "pid {} / monitor pid {} cannot be its processes",
            c.pid, c.monitor_pid
        ));
    }
    Ok(())
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
            rt.retry_failed_teardowns().await;
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
