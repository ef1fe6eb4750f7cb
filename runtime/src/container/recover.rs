//! Start-up recovery for containers: what a crash (a daemon killed in the
//! middle of CreateContainer, StartContainer or RemoveContainer) left.
//!
//! - Container directories without a record (the record is saved only once
//!   CreateContainer has finished): the OCI runtime's state is deleted
//!   (which kills a created container and removes its cgroup), the monitor
//!   killed, the rootfs and image volumes unmounted, and the directories removed.
//! - A container recorded as created that its OCI runtime reports running
//!   (StartContainer started it and the daemon died before recording
//!   that) is recorded as running.
//! - A container recorded as created or running whose state directory is
//!   gone went with a node restart (the state directory is a tmpfs): it
//!   is recorded as exited, code 255, reason `Unknown` (as containerd
//!   reports a container whose task is gone), and can be removed.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::Containers;
use super::{Container, ContainerState, rootfs};
use crate::error::Result;
use crate::fsutil;
use crate::monitor::CONFIG_FILE;
use crate::state::{is_id, now_nanos};

/// How long a killed orphan monitor may take to go.
const MONITOR_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The exit code of a container lost with the node (containerd's).
const LOST_EXIT_CODE: i32 = 255;

impl Containers {
    /// Records `c` as exited if the node restarted under it (see the
    /// module docs); whether it did.
    pub(crate) fn lost_at_reboot(&self, c: &mut Container) -> bool {
        if !matches!(c.state, ContainerState::Created | ContainerState::Running)
            || self.dirs.container_state(&c.id).exists()
        {
            return false;
        }
        c.state = ContainerState::Exited;
        c.exit_code = LOST_EXIT_CODE;
        c.finished_at = now_nanos();
        c.reason = "Unknown".into();
        c.message =
            "the node restarted while the container ran: its state directory is gone".into();
        c.pid = 0;
        match self.save_container(c) {
            Ok(()) => {
                tracing::warn!(container = %c.id, "container lost with a node restart (its state directory is gone); recorded as exited")
            }
            Err(e) => {
                tracing::error!(container = %c.id, error = %e, "recording a container lost with a node restart")
            }
        }
        true
    }

    /// Cleans up after containers a crash left half-made, and records
    /// starts a crash kept from being recorded. Failures are logged: the
    /// daemon starts anyway.
    pub(crate) async fn recover(&self) {
        let entries = self.objects.all();
        for entry in &entries {
            let c = entry.get();
            if c.state != ContainerState::Created {
                continue;
            }
            let Ok(oci) = self.handlers.get(&c.runtime_handler) else {
                continue;
            };
            match oci.state(&c.id).await {
                Ok(Some(st)) if st.status == "running" => {
                    let saved = entry.update(|r| {
                        if r.state != ContainerState::Created {
                            return Ok(());
                        }
                        r.state = ContainerState::Running;
                        r.started_at = now_nanos();
                        self.save_container_state(r)
                    });
                    match saved {
                        Ok(()) => {
                            tracing::info!(container = %c.id, "recorded the start of a container that a crash left unrecorded")
                        }
                        Err(e) => {
                            tracing::warn!(container = %c.id, error = %e, "recording a recovered start")
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(container = %c.id, error = %e, "asking the OCI runtime"),
            }
        }
        let known: BTreeSet<String> = entries.iter().map(|e| e.id().to_string()).collect();
        let mut orphans = BTreeSet::new();
        for base in [
            self.dirs.state.join("containers"),
            self.dirs.root.join("containers"),
        ] {
            let Ok(dirs) = std::fs::read_dir(&base) else {
                continue;
            };
            for dir in dirs.flatten() {
                let name = dir.file_name().to_string_lossy().into_owned();
                if known.contains(&name) {
                    continue;
                }
                // Only what has the shape of a container directory crius
                // made is touched: anything else is not provably ours.
                if !dir.file_type().is_ok_and(|t| t.is_dir()) || !is_id(&name) {
                    tracing::warn!(path = %dir.path().display(), "not a container directory crius makes; left alone");
                    continue;
                }
                orphans.insert(name);
            }
        }
        for id in orphans {
            match self.remove_orphan_container(&id).await {
                Ok(()) => {
                    tracing::info!(container = %id, "removed the leftovers of an unfinished container")
                }
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "removing the leftovers of an unfinished container")
                }
            }
        }
    }

    /// Undoes what an unrecorded container left: OCI runtime state (under
    /// every handler: the record that named one is gone), monitor, rootfs
    /// mount, directories.
    async fn remove_orphan_container(&self, id: &str) -> Result<()> {
        for oci in self.handlers.all() {
            oci.delete(id, true).await?;
        }
        let bundle = self.dirs.container_state(id);
        kill_monitors(id, &bundle).await?;
        rootfs::unmount_image_volumes(&bundle)?;
        rootfs::unmount_rootfs(&bundle.join("rootfs"))?;
        // Staged copies of host trees (rro, ID-mapped) go one by one, never
        // through a recursive removal that could reach host files.
        super::staged::release(&bundle)?;
        fsutil::remove_trees(&[&bundle, &self.dirs.container_root(id)])
    }
}

/// Kills every monitor of container `id` (found by its command line, so
/// without trusting a pid file) and waits until each is gone.
pub(super) async fn kill_monitors(id: &str, bundle: &Path) -> Result<()> {
    for pid in monitors_of(bundle) {
        tracing::info!(container = %id, pid, "killing the monitor of an unfinished container");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let deadline = Instant::now() + MONITOR_EXIT_TIMEOUT;
        while Path::new(&format!("/proc/{pid}")).exists() && is_monitor_of(pid, bundle) {
            if Instant::now() > deadline {
                return Err(crate::error::Error::Internal(format!(
                    "monitor {pid} of unfinished container {id} did not exit within {}s of SIGKILL",
                    MONITOR_EXIT_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// The monitor processes whose configuration lies in `bundle` (found in
/// /proc: the pid file may not have been written yet).
fn monitors_of(bundle: &Path) -> Vec<i32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|&pid| is_monitor_of(pid, bundle))
        .collect()
}

/// Whether process `pid` is a monitor started with `bundle`'s config file.
fn is_monitor_of(pid: i32, bundle: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let config = bundle.join(CONFIG_FILE);
    cmdline
        .split(|&b| b == 0)
        .nth(1)
        .is_some_and(|a| Path::new(OsStr::from_bytes(a)) == config)
}
