//! CreateContainer, StartContainer, StopContainer, RemoveContainer and the
//! queries over containers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{
    Container, ContainerConfig, ContainerState, SecurityProfile, StopSignal, devices, rootfs,
    seccomp, spec, staged, termination, user,
};
use crate::crash;
use crate::error::{Error, Result};
use crate::events::ContainerEventKind;
use crate::fsutil;
use crate::image::Image;
use crate::layout::{self, Access};
use crate::monitor::attach::ATTACH_SOCKET;
use crate::monitor::control::{self, CONTROL_FIFO};
use crate::monitor::{self, MonitorConfig};
use crate::oci::OciRuntime;
use crate::sandbox::NamespaceKind;
use crate::sandbox::{Sandbox, SandboxState};
use crate::state::{Entry, new_id, now_nanos};
use crate::{Runtime, container_name_key};

/// How long a container may take to die after SIGKILL before the stop is
/// reported as failed.
const KILL_GRACE: Duration = Duration::from_secs(30);
/// The socket the runtime sends a container's terminal to, in its bundle.
const CONSOLE_SOCKET: &str = "console.sock";
/// The reason of a container whose start failed (as Docker names it).
const CANNOT_RUN: &str = "ContainerCannotRun";
/// The exit code reported for a container that never ran (containerd's).
const CANNOT_RUN_EXIT_CODE: i32 = 128;

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
    fn matches(&self, c: &Container) -> bool {
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

fn is_done(c: &Container) -> bool {
    matches!(c.state, ContainerState::Exited | ContainerState::Unknown)
}

impl Runtime {
    /// The containers of a pod.
    pub(crate) fn pod_containers(&self, sandbox_id: &str) -> Vec<Arc<Entry<Container>>> {
        self.containers
            .all()
            .into_iter()
            .filter(|e| e.lock().sandbox_id == sandbox_id)
            .collect()
    }

    /// Saves a container's record unless it has been removed. Called with
    /// the record locked, so a late update cannot bring back a removed
    /// container's file.
    pub(super) fn save_container(&self, c: &Container) -> Result<()> {
        if c.removed {
            return Ok(());
        }
        self.container_table.put(&c.id, c)
    }

    /// [`save_container`](Self::save_container) for a state change that a
    /// machine crash makes moot (started, exited: after a reboot the
    /// container runs no more whatever the record says), without waiting
    /// for the disk. Saves StartContainer two fsyncs.
    pub(super) fn save_container_state(&self, c: &Container) -> Result<()> {
        if c.removed {
            return Ok(());
        }
        self.container_table.put_unsynced(&c.id, c)
    }

    /// Creates a container in a ready pod: its rootfs, its OCI bundle and
    /// its monitor, which runs the OCI runtime's `create`. Returns its id.
    /// On failure nothing of it is left.
    pub async fn create_container(
        self: &Arc<Self>,
        sandbox_id: &str,
        config: ContainerConfig,
    ) -> Result<String> {
        if config.name.is_empty() {
            return Err(Error::InvalidArgument(
                "container metadata.name is empty".into(),
            ));
        }
        crate::validate::container(&config)?;
        let pod = self.sandboxes.find(sandbox_id)?;
        // Holding the pod's lock (shared: containers of one pod are made
        // side by side) keeps it from being stopped or removed while one
        // of its containers is being made.
        let _pod_op = pod.op_shared().await;
        let sb = pod.get();
        if sb.state != SandboxState::Ready || self.sandboxes.find(&sb.id).is_err() {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sb.id
            )));
        }
        let image = self
            .images
            .get(&config.image)?
            .ok_or_else(|| Error::not_found("image", config.image.clone()))?;
        // Keeps the layers from image garbage collection until the
        // container is recorded below.
        let _layers_hold = self.images.hold(&image);
        // The images of image volumes, in the order of their mounts; held
        // like the container's own.
        let volumes = config
            .mounts
            .iter()
            .filter(|m| !m.image.is_empty())
            .map(|m| {
                self.images.get(&m.image)?.ok_or_else(|| {
                    Error::not_found(
                        "image",
                        format!("{} (image volume at {})", m.image, m.container_path),
                    )
                })
            })
            .collect::<Result<Vec<Image>>>()?;
        let _volume_holds: Vec<_> = volumes.iter().map(|i| self.images.hold(i)).collect();
        let oci = self.oci_runtime(&sb.runtime_handler)?;
        let id = new_id()?;
        let key = container_name_key(&sb.id, &config);
        self.containers.reserve_name(&key, &id)?;
        let log_path = match (
            sb.config.log_directory.as_os_str().is_empty(),
            config.log_path.is_empty(),
        ) {
            (false, false) => Some(sb.config.log_directory.join(&config.log_path)),
            _ => None,
        };
        let mut c = Container {
            id: id.clone(),
            sandbox_id: sb.id.clone(),
            image_id: image.id.clone(),
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            image_layers: image
                .layers
                .iter()
                .chain(volumes.iter().flat_map(|v| v.layers.iter()))
                .cloned()
                .collect(),
            state: ContainerState::Created,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: 0,
            monitor_pid: 0,
            log_path,
            runtime_handler: oci.name().to_string(),
            stop_signal: StopSignal::of_image(&image.id, &image.config.stop_signal),
            removed: false,
            user: None,
            oom_killed: false,
            config,
        };
        let began = std::time::Instant::now();
        let made = self
            .set_up_container(&sb, &image, &volumes, &mut c, oci)
            .await;
        let made = made.and_then(|()| {
            crash::point(crash::CREATE_BEFORE_RECORD);
            self.container_table.put(&id, &c)
        });
        if let Err(e) = made {
            self.release_container(&c, oci).await;
            self.containers.release_name(&key, &id);
            return Err(e);
        }
        tracing::info!(container = %id, pod = %sb.id, name = %c.config.name, "container created");
        self.metrics.created.with_label_values(&["container"]).inc();
        self.metrics.phase("container_create", began);
        let entry = Entry::new(&id, c);
        self.containers.insert(entry.clone());
        self.emit_container_event(&entry.get(), ContainerEventKind::Created);
        self.watch_exit(entry);
        Ok(id)
    }

    /// The steps of CreateContainer; each records what it made in `c`.
    async fn set_up_container(
        &self,
        sb: &Sandbox,
        image: &Image,
        volumes: &[Image],
        c: &mut Container,
        oci: &OciRuntime,
    ) -> Result<()> {
        let began = std::time::Instant::now();
        let bundle = self.container_state_dir(&c.id);
        let rootfs_dir = bundle.join("rootfs");
        // Root's only (it holds the rootfs); in a user namespace the
        // pod's root may pass too, as the runtime inside it must.
        let access = Access::object(sb.config.user_namespace.as_ref().map(|u| u.host_root().1));
        layout::create_dir(&bundle, access)?;
        let layers = self.images.layer_paths(image)?;
        // In a user namespace, the shared layers are seen through
        // ID-mapped copies (their root-owned files owned by the pod's
        // root), and volumes likewise.
        let userns = match (sb.namespace(NamespaceKind::User), &sb.config.user_namespace) {
            (Some(pin), Some(maps)) => Some((
                std::fs::File::open(pin)
                    .map_err(|e| Error::io(format!("open user namespace {}", pin.display()), e))?,
                maps.host_root(),
            )),
            _ => None,
        };
        match &userns {
            Some((ns, owner)) => {
                let mapped = staged::stage_mapped_layers(&bundle, "l", &layers, ns)?;
                rootfs::mount_rootfs_owned(
                    &c.config.image,
                    &mapped,
                    &self.container_root_dir(&c.id),
                    &rootfs_dir,
                    Some(*owner),
                )?;
                // overlayfs holds private clones of its layers: the staged
                // copies can go (and must: see below).
                staged::release(&bundle)?;
            }
            None => rootfs::mount_rootfs(
                &c.config.image,
                &layers,
                &self.container_root_dir(&c.id),
                &rootfs_dir,
            )?,
        }
        let userns_fd = userns.as_ref().map(|(ns, _)| ns);
        let spec_config = self.mount_image_volumes(&bundle, volumes, &c.config, userns_fd)?;
        crash::point(crash::CREATE_AFTER_ROOTFS);
        // kubelet expects missing host paths of mounts to be made as
        // directories.
        for m in &c.config.mounts {
            if !m.host_path.is_empty() && !Path::new(&m.host_path).exists() {
                fsutil::create_dir_all(Path::new(&m.host_path))?;
            }
        }
        // Recursively read-only mounts: crius makes the read-only copy
        // itself (the runtimes here know no `rro`).
        let mut staged_mounts = BTreeMap::new();
        for (i, m) in c.config.mounts.iter().enumerate() {
            spec::check_recursive_read_only(m)?;
            // Image volumes are read-only overlays made above (ID-mapped
            // there in a user namespace).
            if !m.image.is_empty() {
                continue;
            }
            let change = match (&userns, m.recursive_read_only) {
                (None, false) => continue,
                (None, true) => staged::Change::ReadOnly,
                (Some((ns, _)), false) => staged::Change::MapIds(ns),
                (Some((ns, _)), true) => staged::Change::ReadOnlyMapIds(ns),
            };
            let staged = staged::stage(&bundle, &format!("m{i}"), Path::new(&m.host_path), change)
                .map_err(|e| mount_error(&m.container_path, e))?;
            staged_mounts.insert(i, staged);
        }
        let identity = user::resolve(&rootfs_dir, &image.config.user, &c.config.security)?;
        let security = &c.config.security;
        let mut device_nodes = devices::resolve(&c.config.devices)?;
        if security.privileged {
            device_nodes.extend(devices::host_devices());
        }
        let seccomp_profile = match &security.seccomp {
            SecurityProfile::Localhost(path) if !security.privileged => {
                Some(seccomp::load_profile(Path::new(path))?)
            }
            _ => None,
        };
        let apparmor_profile = spec::apparmor_profile(
            &security.apparmor,
            security.privileged,
            apparmor_enabled(),
            apparmor_loaded,
        )?;
        let rlimits = self
            .config
            .runtime
            .default_ulimits
            .iter()
            .map(|u| {
                spec::parse_ulimit(u)
                    .map_err(|e| Error::FailedPrecondition(format!("runtime.default_ulimits: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let cgroups_path = self.cgroups.container_cgroup(&sb.cgroup_parent, &c.id);
        let spec = spec::build(&spec::SpecInput {
            config: spec_config.as_ref().unwrap_or(&c.config),
            image: &image.config,
            sandbox: sb,
            identity: &identity,
            cgroups_path: cgroups_path.clone(),
            min_oom_score_adj: self.min_oom_score_adj,
            cgroup_namespace: self.cgroups.unified(),
            pid_target: self.pid_target_namespace(sb, &c.config)?,
            devices: &device_nodes,
            seccomp_profile: seccomp_profile.as_ref(),
            apparmor_profile,
            rlimits: &rlimits,
            pids_limit: self.config.runtime.pids_limit,
            available_capabilities: own_capabilities(),
            staged_mounts: &staged_mounts,
        })?;
        c.user = Some(identity);
        let spec_json = serde_json::to_vec(&spec)
            .map_err(|e| Error::Internal(format!("encode OCI spec of container {}: {e}", c.id)))?;
        fsutil::replace_file(&bundle.join("config.json"), &spec_json)?;
        if let Some(dir) = c.log_path.as_ref().and_then(|p| p.parent()) {
            fsutil::create_dir_all(dir)?;
        }
        let prepared = began.elapsed();
        let pid_file = bundle.join("pid");
        let control_fifo = bundle.join(CONTROL_FIFO);
        control::create_fifo(&control_fifo)?;
        let console_socket = c.config.tty.then(|| bundle.join(CONSOLE_SOCKET));
        let create_command = match &console_socket {
            // Relative to the bundle, the runtime's working directory: the
            // absolute path may be too long for a socket address.
            Some(_) => oci.create_command_with_console(
                &c.id,
                &bundle,
                &pid_file,
                Path::new(CONSOLE_SOCKET),
            ),
            None => oci.create_command(&c.id, &bundle, &pid_file),
        };
        let spawned = monitor::spawn(
            &self.monitor_bin,
            &MonitorConfig {
                container_id: c.id.clone(),
                create_command,
                bundle: bundle.clone(),
                pid_file,
                log_path: c.log_path.clone(),
                exit_file: exit_file(&bundle),
                control_fifo: Some(control_fifo),
                oom_file: self.cgroups.oom_file(&cgroups_path),
                console_socket,
                stdin: c.config.stdin,
                stdin_once: c.config.stdin_once,
                attach_socket: Some(bundle.join(ATTACH_SOCKET)),
            },
            &bundle,
        )
        .await?;
        c.pid = spawned.container_pid;
        c.monitor_pid = spawned.monitor_pid;
        // The container's mount namespace has its own copies now. Ours, in
        // the node's mount namespace, would keep the host's directories
        // busy (a mount point in the same namespace cannot be removed).
        if let Err(e) = staged::release(&bundle) {
            tracing::warn!(container = %c.id, error = %e, "releasing staged mounts");
        }
        crash::point(crash::CREATE_AFTER_MONITOR);
        tracing::debug!(
            container = %c.id,
            prepare_ms = prepared.as_secs_f64() * 1000.0,
            create_ms = (began.elapsed() - prepared).as_secs_f64() * 1000.0,
            "rootfs and spec made; monitor ran the runtime's create"
        );
        Ok(())
    }

    /// Mounts the image volumes of `config` (their images are `volumes`,
    /// in order) under the bundle; returns the config with their mount
    /// points as host paths, for the OCI spec (None without any). In a
    /// pod's user namespace (`userns`), the layers are seen through
    /// ID-mapped copies, as the rootfs's are.
    fn mount_image_volumes(
        &self,
        bundle: &Path,
        volumes: &[Image],
        config: &ContainerConfig,
        userns: Option<&std::fs::File>,
    ) -> Result<Option<ContainerConfig>> {
        if volumes.is_empty() {
            return Ok(None);
        }
        let dir = bundle.join(rootfs::IMAGE_VOLUMES);
        let empty = bundle.join("image-volume-base");
        let mut config = config.clone();
        let mut images = volumes.iter();
        for (i, m) in config.mounts.iter_mut().enumerate() {
            if m.image.is_empty() {
                continue;
            }
            let image = images.next().ok_or_else(|| {
                Error::Internal(format!("no image resolved for image volume {}", m.image))
            })?;
            let target = dir.join(i.to_string());
            let layers = self.images.layer_paths(image)?;
            match userns {
                Some(ns) => {
                    let prefix = format!("v{i}-l");
                    let mapped = staged::stage_mapped_layers(bundle, &prefix, &layers, ns)?;
                    rootfs::mount_image_volume(&m.image, &mapped, &empty, &target)?;
                    staged::release(bundle)?;
                }
                None => rootfs::mount_image_volume(&m.image, &layers, &empty, &target)?,
            }
            m.host_path = target.display().to_string();
        }
        Ok(Some(config))
    }

    /// Removes everything a container had on the node, logging failures:
    /// its OCI runtime state, rootfs mount and directories.
    async fn release_container(&self, c: &Container, oci: &OciRuntime) {
        if let Err(e) = oci.delete(&c.id, true).await {
            tracing::warn!(container = %c.id, error = %e, "deleting container from the OCI runtime");
        }
        let bundle = self.container_state_dir(&c.id);
        // A monitor that got as far as reporting (a later step failed)
        // must not stay.
        if let Err(e) = super::recover::kill_monitors(&c.id, &bundle).await {
            tracing::warn!(container = %c.id, error = %e, "killing the monitor of a container whose creation failed");
        }
        // Staged mounts are copies of host trees: the bundle goes only
        // once they are gone.
        let staged = rootfs::unmount_image_volumes(&bundle)
            .and_then(|()| rootfs::unmount_rootfs(&bundle.join("rootfs")))
            .and_then(|()| staged::release(&bundle));
        let removed = match &staged {
            Ok(()) => fsutil::remove_tree(&bundle),
            Err(_) => Ok(()),
        };
        let steps = [
            staged,
            removed,
            fsutil::remove_tree(&self.container_root_dir(&c.id)),
        ];
        for e in steps.into_iter().filter_map(Result::err) {
            tracing::warn!(container = %c.id, error = %e, "releasing container files");
        }
    }

    /// Follows a container until its monitor reports its exit, then
    /// records it.
    pub(crate) fn watch_exit(self: &Arc<Self>, entry: Arc<Entry<Container>>) {
        let c = entry.get();
        if is_done(&c) {
            return;
        }
        let rt = Arc::clone(self);
        tokio::spawn(async move {
            let exit = exit_file(&rt.container_state_dir(&c.id));
            let status = monitor::wait_exit(c.monitor_pid, &exit).await;
            let saved = entry.update(|r| {
                match &status {
                    // A start that failed has said why; the kill that
                    // followed is no news.
                    _ if r.reason == CANNOT_RUN => {}
                    Ok(st) => {
                        r.state = ContainerState::Exited;
                        r.exit_code = st.exit_code;
                        r.finished_at = st.finished_at;
                        r.oom_killed = st.oom_killed;
                        r.reason = if st.oom_killed {
                            "OOMKilled"
                        } else if st.exit_code == 0 {
                            "Completed"
                        } else {
                            "Error"
                        }
                        .into();
                        r.message =
                            termination::message(&r.config, r.log_path.as_deref(), st.exit_code);
                    }
                    Err(e) => {
                        r.state = ContainerState::Unknown;
                        r.finished_at = now_nanos();
                        r.reason = "Unknown".into();
                        r.message = format!("lost track of the container: {e}");
                    }
                }
                rt.save_container_state(r)
            });
            let ended = entry.get();
            if ended.reason != CANNOT_RUN {
                rt.metrics
                    .container_exits
                    .with_label_values(&[ended.reason.as_str()])
                    .inc();
            }
            if ended.oom_killed {
                rt.metrics.oom_kills.inc();
            }
            rt.emit_container_event(&ended, ContainerEventKind::Stopped);
            if status.is_ok()
                && let Ok(oci) = rt.oci_runtime(&ended.runtime_handler)
                && let Err(e) = rt.kill_leftovers(&ended, oci).await
            {
                tracing::warn!(container = %c.id, error = %e, "killing what the container's init left");
            }
            match (status, saved) {
                (Ok(st), Ok(())) => {
                    tracing::info!(container = %c.id, exit_code = st.exit_code, "container exited")
                }
                (Err(e), _) => {
                    tracing::error!(container = %c.id, error = %e, "waiting for container exit")
                }
                (_, Err(e)) => {
                    tracing::error!(container = %c.id, error = %e, "saving container exit")
                }
            }
        });
    }

    /// Starts a created container.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        let entry = self.containers.find(id)?;
        let _op = entry.op().await;
        let c = entry.get();
        match c.state {
            ContainerState::Created => {}
            ContainerState::Running => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is already running",
                    c.id
                )));
            }
            ContainerState::Exited | ContainerState::Unknown => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} has exited and cannot be started again",
                    c.id
                )));
            }
        }
        let oci = self.oci_runtime(&c.runtime_handler)?;
        let started_at = now_nanos();
        crash::point(crash::START_BEFORE_RUNTIME);
        let began = std::time::Instant::now();
        if let Err(e) = oci.start_created(&c.id, c.pid).await {
            self.metrics
                .container_exits
                .with_label_values(&[CANNOT_RUN])
                .inc();
            // It will never run: report it exited, and end what the
            // runtime made so the monitor goes.
            entry.update(|r| {
                r.state = ContainerState::Exited;
                r.exit_code = CANNOT_RUN_EXIT_CODE;
                r.finished_at = now_nanos();
                r.reason = CANNOT_RUN.into();
                r.message = e.to_string();
                let _ = self.save_container(r);
            });
            if let Err(e) = oci.kill(&c.id, Signal::SIGKILL as i32, false).await {
                tracing::debug!(container = %c.id, error = %e, "killing a container that could not start");
            }
            return Err(e);
        }
        crash::point(crash::START_AFTER_RUNTIME);
        entry.update(|r| {
            // The exit watcher may already have seen it finish.
            if r.state == ContainerState::Created {
                r.state = ContainerState::Running;
            }
            r.started_at = started_at;
            self.save_container_state(r)
        })?;
        self.metrics.phase("container_start", began);
        self.metrics.container_starts.inc();
        self.emit_container_event(&entry.get(), ContainerEventKind::Started);
        tracing::info!(container = %c.id, "container started");
        Ok(())
    }

    /// Stops a container: its stop signal, then SIGKILL once `timeout` has
    /// passed. Stopping a stopped container, or one that is gone, is fine.
    pub async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let entry = match self.containers.find(id) {
            Err(Error::NotFound { .. }) => return Ok(()),
            r => r?,
        };
        let _op = entry.op().await;
        self.stop_entry(&entry, timeout).await
    }

    async fn stop_entry(&self, entry: &Entry<Container>, timeout: Duration) -> Result<()> {
        let c = entry.get();
        if !is_done(&c) {
            let oci = self.oci_runtime(&c.runtime_handler)?;
            self.stop_init(entry, oci, timeout).await?;
        }
        // Processes exec'd into a container that shares a PID namespace
        // outlive its init: a stopped container has none.
        match self.oci_runtime(&c.runtime_handler) {
            Ok(oci) => self.kill_leftovers(&c, oci).await,
            Err(_) => Ok(()),
        }
    }

    /// Ends the container's init: its stop signal, SIGKILL after `timeout`.
    async fn stop_init(
        &self,
        entry: &Entry<Container>,
        oci: &OciRuntime,
        timeout: Duration,
    ) -> Result<()> {
        let c = entry.get();
        if !timeout.is_zero() {
            if let Err(e) = oci.kill(&c.id, c.stop_signal.number(), false).await {
                tracing::debug!(container = %c.id, error = %e, "stop signal not delivered");
            }
            crash::point(crash::STOP_AFTER_SIGNAL);
            let _ = tokio::time::timeout(timeout, entry.wait_for(is_done)).await;
        }
        if !is_done(&entry.get()) {
            if let Err(e) = oci.kill(&c.id, Signal::SIGKILL as i32, false).await {
                tracing::debug!(container = %c.id, error = %e, "SIGKILL not delivered");
            }
            crash::point(crash::STOP_AFTER_SIGNAL);
            if tokio::time::timeout(KILL_GRACE, entry.wait_for(is_done))
                .await
                .is_err()
            {
                return Err(Error::Internal(format!(
                    "container {} did not exit within {}s of SIGKILL",
                    c.id,
                    KILL_GRACE.as_secs()
                )));
            }
        }
        tracing::info!(container = %c.id, "container stopped");
        Ok(())
    }

    /// Kills whatever is left in the container's cgroup once its init is
    /// gone (the OCI runtime's `kill --all`, as containerd does for a
    /// container without a PID namespace of its own), and waits until
    /// nothing is.
    pub(crate) async fn kill_leftovers(&self, c: &Container, oci: &OciRuntime) -> Result<()> {
        let Ok(pod) = self.sandboxes.find(&c.sandbox_id) else {
            return Ok(());
        };
        let path = self
            .cgroups
            .container_cgroup(&pod.lock().cgroup_parent, &c.id);
        let left = || {
            let path = path.clone();
            let cgroups = self.cgroups.clone();
            async move {
                tokio::task::spawn_blocking(move || cgroups.has_processes(&path))
                    .await
                    .map_err(|e| Error::Internal(format!("cgroup task: {e}")))?
            }
        };
        if !left().await? {
            return Ok(());
        }
        tracing::info!(container = %c.id, "killing the processes its init left in its cgroup");
        if let Err(e) = oci.kill(&c.id, Signal::SIGKILL as i32, true).await {
            tracing::debug!(container = %c.id, error = %e, "kill --all not delivered");
        }
        let deadline = tokio::time::Instant::now() + KILL_GRACE;
        while left().await? {
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Internal(format!(
                    "processes of container {} are still in its cgroup {path} {}s after SIGKILL",
                    c.id,
                    KILL_GRACE.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Removes a container, killing it first if it still runs. Removing a
    /// container that is gone is fine.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let entry = match self.containers.find(id) {
            Err(Error::NotFound { .. }) => return Ok(()),
            r => r?,
        };
        let _op = entry.op().await;
        if entry.lock().removed {
            return Ok(());
        }
        self.stop_entry(&entry, Duration::ZERO).await?;
        let c = entry.get();
        let oci = self.oci_runtime(&c.runtime_handler)?;
        oci.delete(&c.id, true).await?;
        crash::point(crash::REMOVE_AFTER_RUNTIME_DELETE);
        let bundle = self.container_state_dir(&c.id);
        rootfs::unmount_image_volumes(&bundle)?;
        rootfs::unmount_rootfs(&bundle.join("rootfs"))?;
        staged::release(&bundle)?;
        fsutil::remove_tree(&bundle)?;
        fsutil::remove_tree(&self.container_root_dir(&c.id))?;
        crash::point(crash::REMOVE_AFTER_UNMOUNT);
        entry.update(|r| r.removed = true);
        self.container_table.delete(&c.id)?;
        self.containers.remove(&c.id);
        self.containers
            .release_name(&container_name_key(&c.sandbox_id, &c.config), &c.id);
        self.emit_container_event(&entry.get(), ContainerEventKind::Deleted);
        tracing::info!(container = %c.id, "container removed");
        self.collect_image_garbage_or_warn().await;
        Ok(())
    }

    /// A container by id or unique id prefix.
    pub fn container(&self, id: &str) -> Result<Container> {
        Ok(self.containers.find(id)?.get())
    }

    /// The containers matching `filter`, oldest first.
    pub fn list_containers(&self, filter: &ContainerFilter) -> Vec<Container> {
        let mut out: Vec<Container> = self
            .containers
            .all()
            .iter()
            .map(|e| e.get())
            .filter(|c| filter.matches(c))
            .collect();
        out.sort_by_key(|c| c.created_at);
        out
    }
}

/// An error preparing a mount, naming it.
fn mount_error(container_path: &str, e: Error) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("mount {container_path}: {m}")),
        e => Error::Internal(format!("mount {container_path}: {e}")),
    }
}

fn exit_file(bundle: &Path) -> PathBuf {
    bundle.join("exit")
}

/// The capabilities in crius's own bounding set, read once; `None` if
/// /proc cannot tell (then nothing is left out).
fn own_capabilities() -> Option<&'static oci_spec::runtime::Capabilities> {
    static CAPS: std::sync::OnceLock<Option<oci_spec::runtime::Capabilities>> =
        std::sync::OnceLock::new();
    CAPS.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
        let mask = u64::from_str_radix(hex.trim(), 16).ok()?;
        Some(spec::capabilities_in_mask(mask))
    })
    .as_ref()
}

/// Whether the kernel has AppArmor enabled.
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// Whether an AppArmor profile of that name is loaded.
fn apparmor_loaded(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
        .is_ok_and(|all| all.lines().any(|l| l.split(" (").next() == Some(name)))
}
