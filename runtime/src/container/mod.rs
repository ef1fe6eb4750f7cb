//! The container part: the container table and each container's
//! lifecycle, one verb a file (`create`, `start`, `stop`, `remove`,
//! `update`, `reopen_log`, `exec`, `attach`, the exit watcher in `watch`):
//! the OCI spec built from the CRI config and the image, the rootfs on
//! overlayfs, the monitor and the OCI runtime.

mod apparmor;
mod attach;
mod create;
mod devices;
pub mod events;
mod exec;
mod exec_session;
mod recover;
mod remove;
mod reopen_log;
mod rootfs;
pub mod seccomp;
pub mod spec;
mod staged;
mod start;
mod status;
mod stop;
mod termination;
mod update;
mod user;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cgroups::CgroupDriver;
use crate::config::RuntimeSettings;
use crate::error::Result;
use crate::image::ImageStore;
use crate::layout::Dirs;
use crate::metrics::RuntimeMetrics;
use crate::oci::Handlers;
use crate::records::pod::Sandbox;
use crate::state::{Entry, Objects, is_id};
use crate::store::{Loaded, Table};
use events::Events;

pub(crate) use crate::records::container::is_done;
pub use crate::records::container::{
    Container, ContainerConfig, ContainerFilter, ContainerState, Device, Identity, Mount,
    Propagation, Resources, SecurityContext, SecurityProfile, SentPodConfig, StopSignal,
    SupplementalGroupsPolicy, TERMINATION_MESSAGE_PATH_ANNOTATION,
};
pub use apparmor::{AppArmorStatus, status as apparmor_status};
pub use attach::AttachSession;
pub use exec::ExecOutput;
pub use exec_session::{ExecExit, ExecRead, ExecSession, ExecStdio, ExecWrite, Terminal};
pub use status::ContainerDetail;

/// The reason of a container whose start failed (as Docker names it).
const CANNOT_RUN: &str = "ContainerCannotRun";
/// The exit code reported for a container that never ran (containerd's).
const CANNOT_RUN_EXIT_CODE: i32 = 128;

/// What the container part reads of the pods its containers run in. The
/// node hands it the pod part's records through this, so that neither
/// part reads the other's table.
pub(crate) trait PodLookup: Send + Sync {
    /// The record of pod `id`, if it exists.
    fn pod(&self, id: &str) -> Option<Sandbox>;
}

/// The container part: the table of containers and their lifecycle
/// through the monitor and the OCI runtime. A container names its pod by
/// id; what it needs of the pod it is given ([`Containers::create`]) or
/// asks through [`PodLookup`].
pub(crate) struct Containers {
    objects: Objects<Container>,
    table: Table<Container>,
    dirs: Dirs,
    settings: RuntimeSettings,
    handlers: Arc<Handlers>,
    images: ImageStore,
    cgroups: Arc<dyn CgroupDriver>,
    /// The `crius-monitor` binary.
    monitor_bin: PathBuf,
    /// The daemon's own oom_score_adj; containers cannot go below it.
    min_oom_score_adj: i32,
    metrics: RuntimeMetrics,
    /// Container lifecycle events, for GetContainerEvents subscribers.
    events: Events,
    pods: Arc<dyn PodLookup>,
}

/// What [`Containers::open`] is given.
pub(crate) struct ContainersParts {
    /// The table's directory (`<root>/meta/containers`).
    pub table_dir: PathBuf,
    /// crius's root and state.
    pub dirs: Dirs,
    /// The `[runtime]` settings.
    pub settings: RuntimeSettings,
    /// The OCI runtimes.
    pub handlers: Arc<Handlers>,
    /// The image store, for images and their layers.
    pub images: ImageStore,
    /// The cgroup driver.
    pub cgroups: Arc<dyn CgroupDriver>,
    /// The monitor binary.
    pub monitor_bin: PathBuf,
    /// The daemon's own oom_score_adj.
    pub min_oom_score_adj: i32,
    /// The runtime's metrics.
    pub metrics: RuntimeMetrics,
    /// The pods' records, as the node gives them.
    pub pods: Arc<dyn PodLookup>,
}

impl Containers {
    /// Opens the container table and loads the stored containers (a record
    /// that cannot be trusted is quarantined), and resumes watching those
    /// that were alive.
    pub(crate) fn open(parts: ContainersParts) -> Result<Arc<Containers>> {
        let containers = Arc::new(Containers {
            objects: Objects::new("container"),
            table: Table::open(parts.table_dir)?,
            dirs: parts.dirs,
            settings: parts.settings,
            handlers: parts.handlers,
            images: parts.images,
            cgroups: parts.cgroups,
            monitor_bin: parts.monitor_bin,
            min_oom_score_adj: parts.min_oom_score_adj,
            metrics: parts.metrics,
            events: Events::new(),
            pods: parts.pods,
        });
        let Loaded {
            records,
            unreadable,
        } = containers.table.load_all()?;
        for e in unreadable {
            tracing::error!(error = %e, "skipping unreadable container record");
        }
        for (id, mut c) in records {
            let checked = check_record(&id, &c).and_then(|()| {
                containers
                    .objects
                    .reserve_name(&name_key(&c.sandbox_id, &c.config), &c.id)
                    .map_err(|e| e.to_string())
            });
            if let Err(why) = checked {
                containers.table.quarantine_logged("container", &id, &why);
                continue;
            }
            containers.lost_at_reboot(&mut c);
            let entry = Entry::new(&id, c);
            containers.objects.insert(entry.clone());
            containers.watch_exit(entry);
        }
        Ok(containers)
    }

    /// Container lifecycle events.
    pub(crate) fn events(&self) -> &Events {
        &self.events
    }

    /// The chain ids of the layers containers use, for image garbage
    /// collection. A container recorded before containers kept their
    /// layers uses its image's, if the image is still there (it cannot
    /// have been removed before RemoveImage existed).
    pub(crate) fn layers_in_use(&self) -> std::collections::HashSet<String> {
        let mut in_use = std::collections::HashSet::new();
        for entry in self.objects.all() {
            let c = entry.get();
            if c.image_layers.is_empty() {
                if let Ok(Some(image)) = self.images.get(&c.image_id) {
                    in_use.extend(image.layers);
                }
            } else {
                in_use.extend(c.image_layers);
            }
        }
        in_use
    }

    /// Saves a container's record unless it has been removed. Called with
    /// the record locked, so a late update cannot bring back a removed
    /// container's file.
    pub(super) fn save_container(&self, c: &Container) -> Result<()> {
        if c.removed {
            return Ok(());
        }
        self.table.put(&c.id, c)
    }

    /// [`save_container`](Self::save_container) for a state change that a
    /// machine crash makes moot (started, exited: after a reboot the
    /// container runs no more whatever the record says), without waiting
    /// for the disk. Saves StartContainer two fsyncs.
    pub(super) fn save_container_state(&self, c: &Container) -> Result<()> {
        if c.removed {
            return Ok(());
        }
        self.table.put_unsynced(&c.id, c)
    }
}

/// The key under which a container's name is reserved: unique per pod.
fn name_key(sandbox_id: &str, config: &ContainerConfig) -> String {
    format!("{sandbox_id}/{}", config.unique_name())
}

/// Whether a stored container record can be trusted: its id is the one
/// it is stored under (every path of a container is derived from it) and
/// the ids and PIDs it names have the form crius gives them.
fn check_record(key: &str, c: &Container) -> std::result::Result<(), String> {
    if c.id != key || !is_id(&c.id) {
        return Err(format!("its id {:?} is not that of its file {key:?}", c.id));
    }
    if !is_id(&c.sandbox_id) {
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

/// The file a container's monitor writes its exit status to.
fn exit_file(bundle: &Path) -> PathBuf {
    bundle.join("exit")
}
