//! The container RPCs. CreateContainer is where the two parts meet: the
//! pod part's record of a ready pod (held so the pod cannot be stopped or
//! removed meanwhile) and, for PID mode TARGET, the container part's
//! record of the target go into the container part's create.

use std::path::PathBuf;
use std::time::Duration;

use super::Runtime;
use crate::container::events::Subscription;
use crate::container::{AttachSession, Containers, ExecOutput, ExecSession, ExecStdio};
use crate::error::{Error, Result};
use crate::records::container::{
    Container, ContainerConfig, ContainerFilter, ContainerState, Resources, SentPodConfig,
};
use crate::records::pod::{Sandbox, SandboxState};

impl Runtime {
    /// Creates a container in a ready pod: its rootfs, its OCI bundle and
    /// its monitor, which runs the OCI runtime's `create`. Returns its id.
    /// On failure nothing of it is left. `sent` is what the request's copy
    /// of the pod config says of the pod.
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sent: &SentPodConfig,
    ) -> Result<String> {
        // Containers follow the pod's user namespace as RunPodSandbox
        // made it; a config asking for one the pod does not have must not
        // get containers running as the node's root.
        if sent.user_namespace {
            let pod = self.pods.get(sandbox_id)?;
            if pod.config.user_namespace.is_none() {
                return Err(Error::InvalidArgument(format!(
                    "the pod config sent asks for a user namespace (hostUsers: false), \
                     but pod sandbox {} was created without one",
                    pod.id
                )));
            }
        }
        Containers::check(&config)?;
        let pod = self.pods.find(sandbox_id)?;
        // Holding the pod's lock (shared: containers of one pod are made
        // side by side) keeps it from being stopped or removed while one
        // of its containers is being made.
        let _pod_op = pod.op_shared().await;
        let sb = pod.get();
        if sb.state != SandboxState::Ready || self.pods.find(&sb.id).is_err() {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sb.id
            )));
        }
        let pid_target = self.pid_target_namespace(&sb, &config)?;
        self.containers.create(&sb, pid_target, config).await
    }

    /// The PID namespace a new container of pod `sb` joins when it names a
    /// target container (CRI PID mode TARGET): that container's, which
    /// must be in the same pod and running.
    fn pid_target_namespace(
        &self,
        sb: &Sandbox,
        config: &ContainerConfig,
    ) -> Result<Option<PathBuf>> {
        let target_id = &config.pid_target_id;
        if target_id.is_empty() {
            return Ok(None);
        }
        let target = self.containers.get(target_id)?;
        if target.sandbox_id != sb.id {
            return Err(Error::InvalidArgument(format!(
                "container {:?}: PID namespace target {} is in another pod",
                config.name, target.id
            )));
        }
        let path = PathBuf::from(format!("/proc/{}/ns/pid", target.pid));
        if target.state != ContainerState::Running || target.pid <= 0 || !path.exists() {
            return Err(Error::FailedPrecondition(format!(
                "container {:?}: PID namespace target {} is not running",
                config.name, target.id
            )));
        }
        Ok(Some(path))
    }

    /// The full id of container `id` (or unique prefix), which must be
    /// running for what `verb` says is to be done ("exec in").
    pub fn running_container(&self, id: &str, verb: &str) -> Result<String> {
        let c = self.containers.get(id)?;
        if c.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running ({:?}); cannot {verb} it",
                c.id, c.state
            )));
        }
        Ok(c.id)
    }

    /// Starts a created container.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        self.containers.start(id).await
    }

    /// Stops a container: its stop signal, then SIGKILL once `timeout` has
    /// passed. Stopping a stopped container, or one that is gone, is fine.
    pub async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        self.containers.stop(id, timeout).await
    }

    /// Removes a container, killing it first if it still runs, then the
    /// image layers nothing uses any more. Removing a container that is
    /// gone is fine.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        if self.containers.remove(id).await? {
            self.collect_image_garbage_or_warn().await;
        }
        Ok(())
    }

    /// A container by id or unique id prefix.
    pub fn container(&self, id: &str) -> Result<Container> {
        self.containers.get(id)
    }

    /// What ContainerStatus's verbose info tells of container `c` beyond
    /// its record.
    pub fn container_detail(&self, c: &Container) -> crate::container::ContainerDetail {
        self.containers.detail(c)
    }

    /// The containers matching `filter`, oldest first.
    pub fn list_containers(&self, filter: &ContainerFilter) -> Vec<Container> {
        self.containers.list(filter)
    }

    /// Runs `cmd` in a running container and returns its output and exit
    /// code; with a `timeout` the command is killed when it expires and the
    /// error is [`Error::Timeout`].
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput> {
        self.containers.exec_sync(id, cmd, timeout).await
    }

    /// Starts `cmd` in a running container with its stdio streamed.
    pub async fn exec(&self, id: &str, cmd: &[String], stdio: ExecStdio) -> Result<ExecSession> {
        self.containers.exec(id, cmd, stdio).await
    }

    /// Attaches to a container's stdio through its monitor.
    pub async fn attach(&self, id: &str, stdio: ExecStdio) -> Result<AttachSession> {
        self.containers.attach(id, stdio).await
    }

    /// Resizes the terminal of a container started with one.
    pub fn resize_container_terminal(&self, id: &str, width: u16, height: u16) -> Result<()> {
        self.containers.resize_terminal(id, width, height)
    }

    /// Applies new resources to a created or running container and keeps
    /// them in its record (ContainerStatus reports them).
    pub async fn update_container_resources(&self, id: &str, resources: Resources) -> Result<()> {
        self.containers.update_resources(id, resources).await
    }

    /// Has the container's monitor reopen its log file (after rotation).
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        self.containers.reopen_log(id).await
    }

    /// Subscribes to container lifecycle events from now on.
    pub fn subscribe_events(&self) -> Subscription {
        self.containers.events().subscribe()
    }

    /// Ends every event subscription (the daemon is stopping).
    pub fn close_events(&self) {
        self.containers.events().close()
    }
}
