//! CreateContainer: the rootfs, the OCI bundle and the monitor that runs
//! the OCI runtime's `create`, in named steps (check → record the plan →
//! prepare the rootfs and spec → start the monitor → commit the record),
//! with one undo path ([`Containers::release_container`]) for a step that
//! fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::events::ContainerEventKind;
use super::{
    Container, ContainerConfig, ContainerState, Containers, SecurityProfile, StopSignal, apparmor,
    devices, exit_file, name_key, rootfs, seccomp, spec, staged, user,
};
use crate::crash;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::image::Image;
use crate::layout::{self, Access};
use crate::monitor::attach::ATTACH_SOCKET;
use crate::monitor::control::{self, CONTROL_FIFO};
use crate::monitor::{self, MonitorConfig};
use crate::oci::OciRuntime;
use crate::records::pod::{NamespaceKind, Sandbox};
use crate::state::{Entry, new_id, now_nanos};

/// What [`Containers::prepare_rootfs`] made, for the spec and the monitor.
struct Rootfs {
    /// The bundle (the container's state directory).
    bundle: PathBuf,
    /// The rootfs mount point in it.
    dir: PathBuf,
    /// The config with image volumes' mount points as host paths, when it
    /// has image volumes.
    spec_config: Option<ContainerConfig>,
    /// Staged copies of mounts, by index in the config.
    staged_mounts: BTreeMap<usize, PathBuf>,
}

/// The socket the runtime sends a container's terminal to, in its bundle.
const CONSOLE_SOCKET: &str = "console.sock";

impl Containers {
    /// The first step of CreateContainer: what can be wrong in the request
    /// itself, before the pod is looked at or anything is made.
    pub(crate) fn check(config: &ContainerConfig) -> Result<()> {
        crate::validate::container(config)
    }

    /// Creates a container in ready pod `sb` (whose `op` lock the caller
    /// holds shared, having checked it ready and `config` valid with
    /// [`Containers::check`]): its rootfs, its OCI bundle and its monitor,
    /// which runs the OCI runtime's `create`. `pid_target` is the PID
    /// namespace of the container it targets (CRI PID mode TARGET), if any.
    /// Returns its id. On failure nothing of it is left.
    pub(crate) async fn create(
        self: &Arc<Self>,
        sb: &Sandbox,
        pid_target: Option<PathBuf>,
        config: ContainerConfig,
    ) -> Result<String> {
        // Step: plan. The images (the container's and those of its image
        // volumes, in the order of their mounts), held from image garbage
        // collection until the container is recorded; the runtime; the id
        // and name; the record.
        let (image, volumes) = self.resolve_images(&config)?;
        let _holds: Vec<_> = std::iter::once(&image)
            .chain(&volumes)
            .map(|i| self.images.hold(i))
            .collect();
        let oci = self.handlers.get(&sb.runtime_handler)?;
        let id = new_id()?;
        let key = name_key(&sb.id, &config);
        self.objects.reserve_name(&key, &id)?;
        let mut c = new_record(&id, sb, &image, &volumes, oci, config);
        // Steps: prepare (rootfs, spec, monitor), then commit the record;
        // a failure of either undoes all of it.
        let began = std::time::Instant::now();
        let made = self
            .set_up_container(sb, &image, &volumes, &mut c, oci, pid_target)
            .await;
        let made = made.and_then(|()| {
            crash::point(crash::CREATE_BEFORE_RECORD);
            self.table.put(&id, &c)
        });
        if let Err(e) = made {
            self.release_container(&c, oci).await;
            self.objects.release_name(&key, &id);
            return Err(e);
        }
        tracing::info!(container = %id, pod = %sb.id, name = %c.config.name, "container created");
        self.metrics.created.with_label_values(&["container"]).inc();
        self.metrics.phase("container_create", began);
        // Hook point: NRI's PostCreateContainer will be told here. Then the
        // container is listed and followed.
        let entry = Entry::new(&id, c);
        self.objects.insert(entry.clone());
        self.events.emit(
            self.pods.as_ref(),
            &self.objects,
            &entry.get(),
            ContainerEventKind::Created,
        );
        self.watch_exit(entry);
        Ok(id)
    }

    /// The image a container is made from and those of its image volumes,
    /// in the order of their mounts.
    fn resolve_images(&self, config: &ContainerConfig) -> Result<(Image, Vec<Image>)> {
        let image = self
            .images
            .get(&config.image)?
            .ok_or_else(|| Error::not_found("image", config.image.clone()))?;
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
        Ok((image, volumes))
    }

    /// The steps of CreateContainer after the plan, each recording in `c`
    /// what it made so that [`Containers::release_container`] can undo it:
    /// the rootfs and mounts, the OCI spec, then the monitor running the
    /// runtime's `create`.
    async fn set_up_container(
        &self,
        sb: &Sandbox,
        image: &Image,
        volumes: &[Image],
        c: &mut Container,
        oci: &OciRuntime,
        pid_target: Option<PathBuf>,
    ) -> Result<()> {
        let began = std::time::Instant::now();
        let security = &c.config.security;
        if matches!(security.apparmor, SecurityProfile::RuntimeDefault)
            && !security.privileged
            && apparmor::enabled()
        {
            apparmor::ensure_default().await?;
        }
        let rootfs = self.prepare_rootfs(sb, image, volumes, c)?;
        let (spec, cgroups_path) = self.build_spec(sb, image, c, &rootfs, pid_target)?;
        // Hook point: this is where NRI's CreateContainer will see the
        // container and adjust `spec` before the runtime sees it.
        let prepared = began.elapsed();
        self.start_monitor(c, oci, &rootfs.bundle, &spec, &cgroups_path)
            .await?;
        tracing::debug!(
            container = %c.id,
            prepare_ms = prepared.as_secs_f64() * 1000.0,
            create_ms = (began.elapsed() - prepared).as_secs_f64() * 1000.0,
            "rootfs and spec made; monitor ran the runtime's create"
        );
        Ok(())
    }

    /// Step: the container's bundle, its rootfs (an overlay of the image's
    /// layers, ID-mapped in a user namespace), its image volumes, the
    /// missing host paths of its mounts, and the staged copies of mounts
    /// that must be recursively read-only or ID-mapped.
    fn prepare_rootfs(
        &self,
        sb: &Sandbox,
        image: &Image,
        volumes: &[Image],
        c: &Container,
    ) -> Result<Rootfs> {
        let bundle = self.dirs.container_state(&c.id);
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
                    &self.dirs.container_root(&c.id),
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
                &self.dirs.container_root(&c.id),
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
        Ok(Rootfs {
            bundle,
            dir: rootfs_dir,
            spec_config,
            staged_mounts,
        })
    }

    /// Step: the OCI spec, from the CRI config over the image's config:
    /// the user (recorded in `c`), devices, seccomp and AppArmor profiles,
    /// rlimits, the cgroup. Returns it with the container's cgroup path.
    fn build_spec(
        &self,
        sb: &Sandbox,
        image: &Image,
        c: &mut Container,
        rootfs: &Rootfs,
        pid_target: Option<PathBuf>,
    ) -> Result<(oci_spec::runtime::Spec, String)> {
        let identity = user::resolve(&rootfs.dir, &image.config.user, &c.config.security)?;
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
            apparmor::enabled(),
            apparmor::loaded,
        )?;
        let rlimits = self
            .settings
            .default_ulimits
            .iter()
            .map(|u| {
                spec::parse_ulimit(u)
                    .map_err(|e| Error::FailedPrecondition(format!("runtime.default_ulimits: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let cgroups_path = self.cgroups.container_cgroup(&sb.cgroup_parent, &c.id);
        let spec = spec::build(&spec::SpecInput {
            config: rootfs.spec_config.as_ref().unwrap_or(&c.config),
            image: &image.config,
            sandbox: sb,
            identity: &identity,
            cgroups_path: cgroups_path.clone(),
            min_oom_score_adj: self.min_oom_score_adj,
            cgroup_namespace: self.cgroups.unified(),
            pid_target,
            devices: &device_nodes,
            seccomp_profile: seccomp_profile.as_ref(),
            apparmor_profile,
            rlimits: &rlimits,
            pids_limit: self.settings.pids_limit,
            available_capabilities: own_capabilities(),
            staged_mounts: &rootfs.staged_mounts,
        })?;
        c.user = Some(identity);
        Ok((spec, cgroups_path))
    }

    /// Step: writes the spec into the bundle and starts the container's
    /// monitor, which runs the OCI runtime's `create` (recorded in `c`: the
    /// container's and the monitor's PIDs).
    async fn start_monitor(
        &self,
        c: &mut Container,
        oci: &OciRuntime,
        bundle: &Path,
        spec: &oci_spec::runtime::Spec,
        cgroups_path: &str,
    ) -> Result<()> {
        let spec_json = serde_json::to_vec(&spec)
            .map_err(|e| Error::Internal(format!("encode OCI spec of container {}: {e}", c.id)))?;
        fsutil::replace_file(&bundle.join("config.json"), &spec_json)?;
        if let Some(dir) = c.log_path.as_ref().and_then(|p| p.parent()) {
            fsutil::create_dir_all(dir)?;
        }
        let pid_file = bundle.join("pid");
        let control_fifo = bundle.join(CONTROL_FIFO);
        control::create_fifo(&control_fifo)?;
        let console_socket = c.config.tty.then(|| bundle.join(CONSOLE_SOCKET));
        let create_command = match &console_socket {
            // Relative to the bundle, the runtime's working directory: the
            // absolute path may be too long for a socket address.
            Some(_) => {
                oci.create_command_with_console(&c.id, bundle, &pid_file, Path::new(CONSOLE_SOCKET))
            }
            None => oci.create_command(&c.id, bundle, &pid_file),
        };
        let spawned = monitor::spawn(
            &self.monitor_bin,
            &MonitorConfig {
                container_id: c.id.clone(),
                create_command,
                bundle: bundle.to_path_buf(),
                pid_file,
                log_path: c.log_path.clone(),
                exit_file: exit_file(bundle),
                control_fifo: Some(control_fifo),
                oom_file: self.cgroups.oom_file(cgroups_path),
                console_socket,
                stdin: c.config.stdin,
                stdin_once: c.config.stdin_once,
                attach_socket: Some(bundle.join(ATTACH_SOCKET)),
            },
            bundle,
        )
        .await?;
        c.pid = spawned.container_pid;
        c.monitor_pid = spawned.monitor_pid;
        // The container's mount namespace has its own copies now. Ours, in
        // the node's mount namespace, would keep the host's directories
        // busy (a mount point in the same namespace cannot be removed).
        if let Err(e) = staged::release(bundle) {
            tracing::warn!(container = %c.id, error = %e, "releasing staged mounts");
        }
        crash::point(crash::CREATE_AFTER_MONITOR);
        Ok(())
    }

    /// Mounts the image volumes of `config` (their images are `volumes`,
    /// in order) under the bundle; returns the config with their mount
    /// points as host paths, for the OCI spec (None without any). In a
    /// pod's user namespace (`userns`), the layers are seen through
    /// ID-mapped copies, as the rootfs's are.
    pub(super) fn mount_image_volumes(
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
    pub(super) async fn release_container(&self, c: &Container, oci: &OciRuntime) {
        if let Err(e) = oci.delete(&c.id, true).await {
            tracing::warn!(container = %c.id, error = %e, "deleting container from the OCI runtime");
        }
        let bundle = self.dirs.container_state(&c.id);
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
            fsutil::remove_tree(&self.dirs.container_root(&c.id)),
        ];
        for e in steps.into_iter().filter_map(Result::err) {
            tracing::warn!(container = %c.id, error = %e, "releasing container files");
        }
    }
}

/// An error preparing a mount, naming it.
fn mount_error(container_path: &str, e: Error) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("mount {container_path}: {m}")),
        e => Error::Internal(format!("mount {container_path}: {e}")),
    }
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

/// The record of a new container `id` of pod `sb`, before anything of it
/// is made.
fn new_record(
    id: &str,
    sb: &Sandbox,
    image: &Image,
    volumes: &[Image],
    oci: &OciRuntime,
    config: ContainerConfig,
) -> Container {
    let log_path = match (
        sb.config.log_directory.as_os_str().is_empty(),
        config.log_path.is_empty(),
    ) {
        (false, false) => Some(sb.config.log_directory.join(&config.log_path)),
        _ => None,
    };
    Container {
        id: id.to_string(),
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
    }
}
