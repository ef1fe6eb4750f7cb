//! Start-up recovery for pods: what a crash (or a daemon killed in the
//! middle of RunPodSandbox or RemovePodSandbox) left behind.
//!
//! - Pods recorded as ready whose state directory is gone (the node
//!   restarted: the state directory is a tmpfs, and the namespaces, infra
//!   process and shm went with it) are recorded as not ready; stopping
//!   them releases their IP from the CNI cache as usual.
//! - CNI GC: every cached attachment that belongs to no pod with a network
//!   is deleted (DEL with the cached config), which frees its IP and its
//!   host-side interface; a CNI 1.1 network's plugins are told which
//!   attachments are valid.
//! - Pod directories without a record (the record is saved only once
//!   RunPodSandbox has finished, and a record that cannot be trusted is
//!   quarantined): their infra processes (found by their command line)
//!   are killed, their namespace pins, shm mount and cgroup are removed,
//!   then the directories. Only what the pod's id proves is its own is
//!   touched: a directory named like a crius id, a cgroup whose last
//!   component is that id; a network namespace stays while a CNI DEL is
//!   still owed for it.

use std::collections::BTreeSet;

use super::{CGROUP_RECORD_FILE, Pods, Sandbox, SandboxState, infra, namespaces};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::records::pod::NamespaceKind;
use crate::state::is_id;

impl Pods {
    /// Cleans up after pods that a crash left half-made or half-removed.
    /// Failures are logged: the daemon starts anyway.
    pub(crate) async fn recover(&self) {
        for entry in self.objects.all() {
            let sb = entry.get();
            if sb.state != SandboxState::Ready || self.dirs.pod_state(&sb.id).exists() {
                continue;
            }
            let mut lost = sb.clone();
            lost.state = SandboxState::NotReady;
            lost.infra_pid = None;
            match self.table.put(&sb.id, &lost) {
                Ok(()) => {
                    entry.update(|s| *s = lost);
                    tracing::warn!(pod = %sb.id, "pod sandbox lost with a node restart (its state directory is gone); recorded as not ready");
                }
                Err(e) => {
                    tracing::error!(pod = %sb.id, error = %e, "recording a pod lost with a node restart")
                }
            }
        }
        let pods: Vec<_> = self.objects.all().iter().map(|e| e.get()).collect();
        let attached: Vec<String> = pods
            .iter()
            .filter(|sb| sb.namespace(NamespaceKind::Net).is_some() && !sb.network_released)
            .map(|sb| sb.id.clone())
            .collect();
        match self.network.collect(&attached).await {
            Ok(report) => {
                for (container, net, ifname) in &report.detached {
                    tracing::info!(pod = %container, network = %net, ifname = %ifname, "deleted stale CNI attachment");
                }
                for e in &report.errors {
                    tracing::warn!(error = %e, "CNI garbage collection");
                }
            }
            Err(e) => tracing::warn!(error = %e, "CNI garbage collection"),
        }
        let known: BTreeSet<&str> = pods.iter().map(|sb| sb.id.as_str()).collect();
        let mut orphans = BTreeSet::new();
        for base in [self.dirs.state.join("pods"), self.dirs.root.join("pods")] {
            let Ok(entries) = std::fs::read_dir(&base) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if known.contains(name.as_str()) {
                    continue;
                }
                // Only what has the shape of a pod directory crius made is
                // touched: anything else is not provably ours.
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if !is_dir || !is_id(&name) {
                    tracing::warn!(path = %entry.path().display(), "not a pod directory crius makes; left alone");
                    continue;
                }
                orphans.insert(name);
            }
        }
        for id in orphans {
            match self.remove_orphan_pod(&id).await {
                Ok(()) => {
                    tracing::info!(pod = %id, "removed the leftovers of an unfinished pod")
                }
                Err(e) => {
                    tracing::warn!(pod = %id, error = %e, "removing the leftovers of an unfinished pod")
                }
            }
        }
    }

    /// Undoes what a pod without a record left (see the module docs):
    /// only what its id proves is its own.
    async fn remove_orphan_pod(&self, id: &str) -> Result<()> {
        let dir = self.dirs.pod_state(id);
        infra::stop_all(&dir).await?;
        let ns = dir.join("ns");
        for kind in ["ipc", "uts", "pid"] {
            namespaces::unpin(&ns.join(kind))?;
        }
        // A DEL still owed (CNI GC above failed for it) needs the
        // namespace: plugins find what to undo through it. Kept for the
        // next start.
        if self.network.is_attached(id).await? {
            return Err(Error::FailedPrecondition(format!(
                "pod {id}: CNI DEL has not succeeded yet; its network namespace and directory \
                 are kept until it does"
            )));
        }
        namespaces::remove_netns(id, &ns.join("net"))?;
        namespaces::unpin(&ns.join("user"))?;
        fsutil::unmount(&dir.join("shm"), "pod shm")?;
        let recorded = std::fs::read_to_string(dir.join(CGROUP_RECORD_FILE)).ok();
        let paths = match recorded
            .as_deref()
            .map(|p| self.cgroups.owned_pod_cgroup(p.trim(), id))
        {
            Some(Ok(path)) => vec![path],
            found => {
                if let Some(Err(e)) = found {
                    tracing::warn!(pod = %id, error = %e, "ignoring a damaged cgroup record");
                }
                let (id, cgroups) = (id.to_string(), self.cgroups.clone());
                blocking(move || cgroups.find_pod_cgroups(&id)).await?
            }
        };
        for path in paths {
            let (id, cgroups) = (id.to_string(), self.cgroups.clone());
            blocking(move || cgroups.remove_pod_cgroup(&path, &id)).await?;
        }
        fsutil::remove_tree(&dir)?;
        fsutil::remove_tree(&self.dirs.pod_root(id))
    }

    /// Whether a stored pod record can be trusted: its id is the one it
    /// is stored under, and every path and cgroup it names is exactly what
    /// crius makes for that id (all of them are removed with the pod).
    pub(crate) fn check_sandbox_record(&self, key: &str, sb: &Sandbox) -> Result<(), String> {
        if sb.id != key || !is_id(&sb.id) {
            return Err(format!(
                "its id {:?} is not that of its file {key:?}",
                sb.id
            ));
        }
        let state = self.dirs.pod_state(&sb.id);
        if sb.files_dir != self.dirs.pod_root(&sb.id) {
            return Err(format!(
                "files_dir {} is not the pod's",
                sb.files_dir.display()
            ));
        }
        if let Some(shm) = &sb.shm
            && *shm != state.join("shm")
        {
            return Err(format!("shm {} is not the pod's", shm.display()));
        }
        for (kind, pin) in &sb.namespaces {
            if *pin != state.join("ns").join(kind.as_str()) {
                return Err(format!(
                    "namespace {kind} at {} is not the pod's",
                    pin.display()
                ));
            }
        }
        if let Some(pod_cgroup) = &sb.pod_cgroup {
            self.cgroups
                .owned_pod_cgroup(pod_cgroup, &sb.id)
                .map_err(|e| e.to_string())?;
            if sb.cgroup_parent != *pod_cgroup {
                return Err(format!(
                    "cgroup parent {:?} is not its pod cgroup",
                    sb.cgroup_parent
                ));
            }
        }
        // Its containers' cgroups go below its parent: its own cgroup
        // (checked above), or one this driver could make a pod's below.
        let parent = &sb.cgroup_parent;
        if parent.is_empty() {
            return Err("it names no cgroup parent".into());
        }
        if sb.pod_cgroup.is_none()
            && let Err(why) = self.cgroups.check_parent(parent)
        {
            return Err(format!(
                "cgroup parent {parent:?} {why} (a pod made under another cgroup driver?)"
            ));
        }
        if sb.infra_pid.is_some_and(|p| p <= 1) {
            return Err(format!(
                "infra pid {:?} cannot be an infra process",
                sb.infra_pid
            ));
        }
        Ok(())
    }
}

/// Runs blocking (cgroupfs) work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("cgroup task: {e}")))?
}
