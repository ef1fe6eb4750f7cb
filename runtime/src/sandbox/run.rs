//! RunPodSandbox: the pod's namespaces, network, cgroup and files, made
//! in named steps (plan → prepare → record), each undone in one place
//! ([`Pods::release_sandbox`]) when a later one fails.

use std::path::{Path, PathBuf};

use super::sysctl::{self, Kind, Sysctl};
use super::{
    CGROUP_RECORD_FILE, NamespaceMode, PodConfig, Pods, Sandbox, SandboxState, files, infra,
    namespaces, network, pod_network, shm,
};
use crate::cgroups::CgroupDriver;
use crate::crash;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::layout::{self, Access};
use crate::oci::Handlers;
use crate::records::pod::NamespaceKind;
use crate::state::{new_id, now_nanos};

/// What starting the infra process made, for the record (and undoing).
#[derive(Debug, Default)]
struct InfraParts {
    pid: Option<i32>,
    pin: Option<std::path::PathBuf>,
}

/// What RunPodSandbox found valid in the request before making anything.
struct Plan {
    sysctls: Vec<Sysctl>,
    shm_bytes: u64,
}

impl Pods {
    /// Checks the parts of a pod request that can be wrong, so that a bad
    /// request fails before anything is made.
    fn plan(&self, config: &PodConfig) -> Result<Plan> {
        crate::validate::pod(config)?;
        let modes = &config.namespaces;
        if modes.pid == NamespaceMode::Target {
            return Err(Error::InvalidArgument(
                "pod sandbox PID namespace mode TARGET is for containers only".into(),
            ));
        }
        for (kind, mode) in [("network", modes.network), ("IPC", modes.ipc)] {
            if matches!(mode, NamespaceMode::Container | NamespaceMode::Target) {
                return Err(Error::InvalidArgument(format!(
                    "pod sandbox {kind} namespace mode {mode:?} is not supported (POD or NODE)"
                )));
            }
        }
        let own = |k: Kind| match k {
            Kind::Net | Kind::Uts => modes.network != NamespaceMode::Node,
            Kind::Ipc => modes.ipc != NamespaceMode::Node,
        };
        if let Some(userns) = &config.user_namespace {
            userns.check(&config.name)?;
            for (kind, mode) in [
                ("network", modes.network),
                ("IPC", modes.ipc),
                ("PID", modes.pid),
            ] {
                if mode == NamespaceMode::Node {
                    return Err(Error::InvalidArgument(format!(
                        "pod {:?}: a pod in a user namespace cannot use the node's {kind} namespace",
                        config.name
                    )));
                }
            }
            if !namespaces::user_namespaces_supported() {
                return Err(Error::InvalidArgument(format!(
                    "pod {:?} asks for a user namespace, but this node's kernel cannot give one \
                     (user namespaces disabled, or kernel older than 5.19)",
                    config.name
                )));
            }
        }
        let sysctls = sysctl::parse_all(&config.sysctls, own)?;
        check_cgroup_parent(self.cgroups.as_ref(), &config.cgroup_parent)?;
        network::bandwidth(config)?;
        network::ips(config)?;
        Ok(Plan {
            sysctls,
            shm_bytes: shm::shm_size(config, &self.settings.shm_size)?,
        })
    }

    /// Creates a pod sandbox: its namespaces, network, cgroup and files.
    /// Returns its id. On failure nothing of it is left.
    /// `handlers` resolve its RuntimeClass handler (the default when it
    /// names none).
    pub(crate) async fn run(&self, config: PodConfig, handlers: &Handlers) -> Result<String> {
        let began = std::time::Instant::now();
        let plan = self.plan(&config)?;
        let handler = handlers.get(&config.runtime_handler)?.name().to_string();
        let id = new_id()?;
        let name = config.unique_name();
        self.objects.reserve_name(&name, &id)?;
        tracing::debug!(pod = %id, name = %name, "creating pod sandbox");
        let parent = [&config.cgroup_parent, &self.settings.default_cgroup_parent]
            .into_iter()
            .find(|p| !p.is_empty())
            .cloned()
            .unwrap_or_else(|| self.cgroups.default_parent().to_string());
        let pod_cgroup = self.cgroups.pod_cgroup(&parent, &id);
        let mut sb = Sandbox {
            id: id.clone(),
            state: SandboxState::NotReady,
            created_at: now_nanos(),
            files_dir: self.dirs.pod_root(&id),
            cgroup_parent: pod_cgroup.clone(),
            pod_cgroup: Some(pod_cgroup),
            config,
            runtime_handler: handler,
            ..Default::default()
        };
        // Step: prepare. Everything of the pod is made; a failure undoes
        // what was (release_sandbox).
        match self.set_up_sandbox(&mut sb, &plan).await {
            // Hook point: NRI's RunPodSandbox will be called here, the pod
            // made but neither recorded, listed nor ready; a failing hook
            // will undo it like a failed step. Then: commit the record.
            Ok(()) => {
                sb.state = SandboxState::Ready;
                crash::point(crash::RUNP_BEFORE_RECORD);
                if let Err(e) = self.table.put(&id, &sb) {
                    self.release_sandbox(&sb).await;
                    self.objects.release_name(&name, &id);
                    return Err(e);
                }
                tracing::info!(pod = %id, name = %name, ips = ?sb.ips, "pod sandbox ready");
                self.metrics
                    .created
                    .with_label_values(&["pod_sandbox"])
                    .inc();
                self.metrics.phase("pod_sandbox", began);
                self.objects.insert(crate::state::Entry::new(&id, sb));
                Ok(id)
            }
            Err(e) => {
                self.release_sandbox(&sb).await;
                self.objects.release_name(&name, &id);
                Err(e)
            }
        }
    }

    /// The steps of RunPodSandbox; each records what it made in `sb` so
    /// that [`Pods::release_sandbox`] can undo exactly that.
    async fn set_up_sandbox(&self, sb: &mut Sandbox, plan: &Plan) -> Result<()> {
        let pod_dir = self.dirs.pod_state(&sb.id);
        let ns_dir = pod_dir.join("ns");
        // Root's only; in a user namespace the pod's root may pass too
        // (the runtime, inside it, reaches the pins and files).
        let access = Access::object(sb.config.user_namespace.as_ref().map(|u| u.host_root().1));
        for dir in [&pod_dir, &ns_dir, &sb.files_dir] {
            layout::create_dir(dir, access)?;
        }
        let modes = sb.config.namespaces.clone();
        let own_net = modes.network != NamespaceMode::Node;
        let own_ipc = modes.ipc != NamespaceMode::Node;
        // A pod on the node's network has the node's name, as does one
        // that asks for none.
        sb.hostname = if own_net && !sb.config.hostname.is_empty() {
            sb.config.hostname.clone()
        } else {
            node_hostname()?
        };

        self.make_namespaces(sb, &ns_dir, own_net, own_ipc).await?;
        // /dev/shm shared by the pod's containers.
        if own_ipc {
            let shm = pod_dir.join("shm");
            shm::mount_shm(&shm, plan.shm_bytes)?;
            sb.shm = Some(shm);
        }
        crash::point(crash::RUNP_AFTER_NAMESPACES);

        // The network (CNI attaches the pod's namespace) and, for a shared
        // PID namespace, the infra process: independent, so the infra
        // process starts while the plugins run.
        let network = async {
            match sb.namespace(NamespaceKind::Net) {
                Some(netns) => {
                    let began = std::time::Instant::now();
                    let attached = self.network.attach(pod_network(sb, netns)).await;
                    if attached.is_ok() {
                        self.metrics.phase("network_setup", began);
                    }
                    attached.map(Some)
                }
                None => Ok(None),
            }
        };
        let infra = async {
            let mut made = InfraParts::default();
            let started = match modes.pid == NamespaceMode::Pod {
                true => {
                    let userns = sb.namespace(NamespaceKind::User).map(PathBuf::as_path);
                    self.start_infra(
                        &mut made,
                        &sb.id,
                        sb.pod_cgroup.as_deref(),
                        &pod_dir,
                        &ns_dir,
                        userns,
                    )
                    .await
                }
                false => Ok(()),
            };
            (made, started)
        };
        let (network, (made, started)) = tokio::join!(network, infra);
        sb.infra_pid = made.pid;
        if let Some(pin) = made.pin {
            sb.namespaces.insert(NamespaceKind::Pid, pin);
        }
        match network {
            Ok(Some(attached)) => {
                sb.ips = attached.ips;
                sb.network_result = Some(attached.result);
            }
            Ok(None) => {}
            // A failed ADD has been undone already: nothing to detach.
            Err(e) => {
                sb.network_released = true;
                return Err(e);
            }
        }
        started?;
        crash::point(crash::RUNP_AFTER_NETWORK);

        apply_sysctls(sb, plan).await?;
        files::write(
            &sb.files_dir,
            &files::PodFiles {
                hostname: &sb.hostname,
                ips: &sb.ips,
                dns: sb.config.dns.as_ref(),
                host_network: !own_net,
            },
        )
    }

    /// Step: the pod's own network, IPC and UTS namespaces (in its user
    /// namespace, if it has one), pinned under `ns_dir` for the pod's
    /// life and recorded in `sb`.
    async fn make_namespaces(
        &self,
        sb: &mut Sandbox,
        ns_dir: &Path,
        own_net: bool,
        own_ipc: bool,
    ) -> Result<()> {
        let pins = namespaces::Pins {
            net: own_net.then(|| ns_dir.join("net")),
            ipc: own_ipc.then(|| ns_dir.join("ipc")),
            uts: own_net.then(|| ns_dir.join("uts")),
        };
        let (p, h) = (pins.clone(), sb.hostname.clone());
        let made = match sb.config.user_namespace.clone() {
            Some(userns) => {
                let user_pin = ns_dir.join("user");
                let u = user_pin.clone();
                tokio::task::spawn_blocking(move || {
                    namespaces::create_pinned_in_userns(&userns, &u, &p, &h)
                })
                .await
                .map_err(|e| Error::Internal(format!("namespace task: {e}")))??;
                sb.namespaces.insert(NamespaceKind::User, user_pin);
                "pod namespaces created in its user namespace"
            }
            None if pins.net.is_some() || pins.ipc.is_some() => {
                tokio::task::spawn_blocking(move || namespaces::create_pinned(p, &h))
                    .await
                    .map_err(|e| Error::Internal(format!("namespace task: {e}")))??;
                "pod namespaces created"
            }
            None => return Ok(()),
        };
        for (kind, pin) in [
            (NamespaceKind::Net, pins.net),
            (NamespaceKind::Ipc, pins.ipc),
            (NamespaceKind::Uts, pins.uts),
        ] {
            if let Some(pin) = pin {
                sb.namespaces.insert(kind, pin);
            }
        }
        tracing::debug!(pod = %sb.id, "{made}");
        Ok(())
    }

    /// Starts the pod's infra process, pins its PID namespace and puts it
    /// in the pod's cgroup, recording in `made` what it made.
    async fn start_infra(
        &self,
        made: &mut InfraParts,
        pod_id: &str,
        pod_cgroup: Option<&str>,
        pod_dir: &Path,
        ns_dir: &Path,
        userns: Option<&Path>,
    ) -> Result<()> {
        let pid = infra::start(&self.monitor_bin, pod_dir, userns).await?;
        made.pid = Some(pid);
        let pin = ns_dir.join("pid");
        namespaces::pin_process_namespace(pid, NamespaceKind::Pid, &pin)?;
        made.pin = Some(pin);
        if let Some(pod_cgroup) = pod_cgroup {
            // Named in the pod directory too, for recovery after a crash
            // that lost the record.
            fsutil::replace_file(&pod_dir.join(CGROUP_RECORD_FILE), pod_cgroup.as_bytes())?;
            let (pod_cgroup, cgroups) = (pod_cgroup.to_string(), self.cgroups.clone());
            let pod_id = pod_id.to_string();
            tokio::task::spawn_blocking(move || cgroups.place_infra(&pod_cgroup, &pod_id, pid))
                .await
                .map_err(|e| Error::Internal(format!("cgroup task: {e}")))??;
        }
        tracing::debug!(pid, "infra process started");
        Ok(())
    }
}

/// Step: the pod's sysctls, in the namespaces they belong to, now that the
/// interfaces exist (per-interface ones).
async fn apply_sysctls(sb: &Sandbox, plan: &Plan) -> Result<()> {
    for kind in [Kind::Net, Kind::Ipc, Kind::Uts] {
        let of_kind: Vec<Sysctl> = plan
            .sysctls
            .iter()
            .filter(|s| s.kind == kind)
            .cloned()
            .collect();
        if of_kind.is_empty() {
            continue;
        }
        let pin = sb.namespace(kind.pin()).cloned().ok_or_else(|| {
            Error::Internal(format!("pod {} has no {} namespace", sb.id, kind.pin()))
        })?;
        tokio::task::spawn_blocking(move || sysctl::apply(kind, &pin, &of_kind))
            .await
            .map_err(|e| Error::Internal(format!("sysctl task: {e}")))?
            .map_err(|e| pod_error(&sb.id, e))?;
    }
    Ok(())
}

/// A cgroup parent must be one the cgroup driver can make the pod's
/// cgroup below.
fn check_cgroup_parent(cgroups: &dyn CgroupDriver, parent: &str) -> Result<()> {
    cgroups.check_parent(parent).map_err(|why| {
        Error::InvalidArgument(format!("pod sandbox linux.cgroup_parent {parent:?}: {why}"))
    })
}

/// Wraps an error of a pod's set-up with the pod it concerns.
fn pod_error(id: &str, e: Error) -> Error {
    match e {
        Error::Io { context, source } => Error::Io {
            context: format!("pod sandbox {id}: {context}"),
            source,
        },
        other => other,
    }
}

fn node_hostname() -> Result<String> {
    Ok(nix::unistd::gethostname()
        .context(|| "read the node's hostname")?
        .to_string_lossy()
        .into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_parents_must_stay_inside_the_hierarchies() {
        let cgroups = crate::cgroups::Cgroupfs::detect();
        for ok in ["", "/", "/kubepods/burstable/pod1", "/crius-e2e-1/"] {
            check_cgroup_parent(&cgroups, ok).unwrap();
        }
        for bad in ["kubepods.slice", "/kubepods/../../x", "/a/./b"] {
            let e = check_cgroup_parent(&cgroups, bad).unwrap_err();
            assert!(e.to_string().contains("cgroup_parent"), "{bad}: {e}");
        }
    }
}
