//! RunPodSandbox, StopPodSandbox, RemovePodSandbox and the queries over
//! pods.

use std::collections::BTreeMap;
use std::path::Path;

use nix::mount::{MsFlags, mount};

use super::{NamespaceMode, PodConfig, Sandbox, SandboxState, files, namespaces, network};
use crate::Runtime;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::state::{new_id, now_nanos};

/// Size of a pod's /dev/shm (Docker's and containerd's default).
const SHM_SIZE: &str = "size=65536k";

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
    fn matches(&self, sb: &Sandbox) -> bool {
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

impl Runtime {
    /// Creates a pod sandbox: its namespaces, network and files. Returns
    /// its id. On failure nothing of it is left.
    pub async fn run_pod_sandbox(&self, config: PodConfig) -> Result<String> {
        for (field, value) in [
            ("name", &config.name),
            ("uid", &config.uid),
            ("namespace", &config.namespace),
        ] {
            if value.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "pod sandbox metadata.{field} is empty"
                )));
            }
        }
        let handler = self
            .oci_runtime(&config.runtime_handler)?
            .name()
            .to_string();
        let id = new_id()?;
        let name = config.unique_name();
        self.sandboxes.reserve_name(&name, &id)?;
        let mut sb = Sandbox {
            id: id.clone(),
            state: SandboxState::NotReady,
            created_at: now_nanos(),
            ips: Vec::new(),
            runtime_handler: handler,
            namespaces: BTreeMap::new(),
            shm: None,
            files_dir: self.pod_root_dir(&id),
            cgroup_parent: if config.cgroup_parent.is_empty() {
                self.config.runtime.default_cgroup_parent.clone()
            } else {
                config.cgroup_parent.clone()
            },
            hostname: String::new(),
            config,
        };
        match self.set_up_sandbox(&mut sb).await {
            Ok(()) => {
                sb.state = SandboxState::Ready;
                if let Err(e) = self.sandbox_table.put(&id, &sb) {
                    self.release_sandbox(&sb).await;
                    self.sandboxes.release_name(&name, &id);
                    return Err(e);
                }
                tracing::info!(pod = %id, name = %name, ips = ?sb.ips, "pod sandbox ready");
                self.metrics
                    .created
                    .with_label_values(&["pod_sandbox"])
                    .inc();
                self.sandboxes.insert(crate::state::Entry::new(&id, sb));
                Ok(id)
            }
            Err(e) => {
                self.release_sandbox(&sb).await;
                self.sandboxes.release_name(&name, &id);
                Err(e)
            }
        }
    }

    /// The steps of RunPodSandbox; each records what it made in `sb` so
    /// that [`Runtime::release_sandbox`] can undo exactly that.
    async fn set_up_sandbox(&self, sb: &mut Sandbox) -> Result<()> {
        let ns_dir = self.pod_state_dir(&sb.id).join("ns");
        fsutil::create_dir_all(&ns_dir)?;
        fsutil::create_dir_all(&sb.files_dir)?;
        let modes = sb.config.namespaces.clone();
        if modes.pid == NamespaceMode::Target {
            return Err(Error::InvalidArgument(
                "pod sandbox PID namespace mode TARGET is for containers only".into(),
            ));
        }
        let own_net = modes.network != NamespaceMode::Node;
        let own_ipc = modes.ipc != NamespaceMode::Node;
        // A pod on the node's network has the node's name, as does one
        // that asks for none.
        sb.hostname = if own_net && !sb.config.hostname.is_empty() {
            sb.config.hostname.clone()
        } else {
            node_hostname()?
        };

        // IPC and UTS: fresh namespaces pinned for the pod's life.
        let ipc = own_ipc.then(|| ns_dir.join("ipc"));
        let uts = own_net.then(|| ns_dir.join("uts"));
        if ipc.is_some() || uts.is_some() {
            let (i, u, h) = (ipc.clone(), uts.clone(), sb.hostname.clone());
            tokio::task::spawn_blocking(move || {
                namespaces::create_pinned(i.as_deref(), u.as_deref(), &h)
            })
            .await
            .map_err(|e| Error::Internal(format!("namespace task: {e}")))??;
            if let Some(p) = ipc {
                sb.namespaces.insert("ipc".into(), p);
            }
            if let Some(p) = uts {
                sb.namespaces.insert("uts".into(), p);
            }
        }

        // /dev/shm shared by the pod's containers.
        if own_ipc {
            let shm = self.pod_state_dir(&sb.id).join("shm");
            mount_shm(&shm)?;
            sb.shm = Some(shm);
        }

        // Network: a pinned namespace attached through CNI.
        if own_net {
            let netns = ns_dir.join("net");
            sb.ips = network::setup(&self.cni, &sb.id, &sb.config, &netns).await?;
            sb.namespaces.insert("net".into(), netns);
        }

        files::write(&sb.files_dir, &sb.hostname, &sb.ips, sb.config.dns.as_ref())
    }

    /// Detaches the pod from its network and removes its network
    /// namespace; idempotent.
    async fn release_sandbox_network(&self, sb: &Sandbox) -> Result<()> {
        if let Some(netns) = sb.namespace("net") {
            network::teardown(&self.cni, &sb.id, &sb.config, netns).await?;
        }
        Ok(())
    }

    /// Undoes everything [`Runtime::set_up_sandbox`] made, logging what
    /// fails; used when RunPodSandbox fails half-way and by removal.
    async fn release_sandbox(&self, sb: &Sandbox) {
        if let Err(e) = self.release_sandbox_network(sb).await {
            tracing::warn!(pod = %sb.id, error = %e, "releasing pod network");
        }
        if let Err(e) = self.release_sandbox_files(sb) {
            tracing::warn!(pod = %sb.id, error = %e, "releasing pod files");
        }
    }

    /// Removes the IPC/UTS pins, the shm mount and the pod's directories.
    fn release_sandbox_files(&self, sb: &Sandbox) -> Result<()> {
        for kind in ["ipc", "uts"] {
            if let Some(pin) = sb.namespace(kind) {
                namespaces::unpin(pin)?;
            }
        }
        if let Some(shm) = &sb.shm {
            unmount_shm(shm)?;
        }
        fsutil::remove_dir_all(&self.pod_state_dir(&sb.id))?;
        fsutil::remove_dir_all(&sb.files_dir)
    }

    /// Stops a pod: stops its containers and tears its network down.
    /// Stopping a stopped pod, or one that is gone, is fine (the CRI makes
    /// Stop idempotent; kubelet calls it again after RemovePodSandbox).
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let entry = match self.sandboxes.find(id) {
            Err(Error::NotFound { .. }) => return Ok(()),
            r => r?,
        };
        let _op = entry.op().await;
        let id = entry.id().to_string();
        for c in self.pod_containers(&id) {
            self.stop_container(c.id(), std::time::Duration::ZERO)
                .await?;
        }
        let sb = entry.get();
        self.release_sandbox_network(&sb).await?;
        if let Some(shm) = &sb.shm {
            unmount_shm(shm)?;
        }
        if sb.state != SandboxState::NotReady {
            let updated = entry.update(|s| {
                s.state = SandboxState::NotReady;
                s.clone()
            });
            self.sandbox_table.put(&id, &updated)?;
            tracing::info!(pod = %id, "pod sandbox stopped");
        }
        Ok(())
    }

    /// Removes a pod and its containers (stopping what still runs).
    /// Removing a pod that is gone is fine.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let entry = match self.sandboxes.find(id) {
            Err(Error::NotFound { .. }) => return Ok(()),
            r => r?,
        };
        let _op = entry.op().await;
        let id = entry.id().to_string();
        if self.sandboxes.find(&id).is_err() {
            return Ok(()); // removed while we waited
        }
        for c in self.pod_containers(&id) {
            self.remove_container(c.id()).await?;
        }
        let sb = entry.get();
        self.release_sandbox_network(&sb).await?;
        self.release_sandbox_files(&sb)?;
        self.sandbox_table.delete(&id)?;
        self.sandboxes.remove(&id);
        self.sandboxes.release_name(&sb.config.unique_name(), &id);
        tracing::info!(pod = %id, "pod sandbox removed");
        Ok(())
    }

    /// A pod by id or unique id prefix.
    pub fn pod_sandbox(&self, id: &str) -> Result<Sandbox> {
        Ok(self.sandboxes.find(id)?.get())
    }

    /// The pods matching `filter`, oldest first.
    pub fn list_pod_sandboxes(&self, filter: &SandboxFilter) -> Vec<Sandbox> {
        let mut out: Vec<Sandbox> = self
            .sandboxes
            .all()
            .iter()
            .map(|e| e.get())
            .filter(|sb| filter.matches(sb))
            .collect();
        out.sort_by_key(|sb| sb.created_at);
        out
    }
}

fn node_hostname() -> Result<String> {
    Ok(nix::unistd::gethostname()
        .context(|| "read the node's hostname")?
        .to_string_lossy()
        .into_owned())
}

fn mount_shm(path: &Path) -> Result<()> {
    fsutil::create_dir_all(path)?;
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,{SHM_SIZE}").as_str()),
    )
    .context(|| format!("mount pod shm at {}", path.display()))
}

fn unmount_shm(path: &Path) -> Result<()> {
    fsutil::unmount(path, "pod shm")
}
