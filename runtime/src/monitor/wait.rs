//! Daemon side: waiting for a monitor that is not our child.
//!
//! The monitor detached from whichever daemon spawned it, so `waitpid` is no
//! use; its [`Pidfd`] becomes readable when it ends, child or not.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::pidfd::Pidfd;
use super::{ExitStatus, MonitorConfig, read_exit_file};
use crate::error::{Error, Result};

/// Waits until the monitor `monitor_pid` has gone, then reads the exit
/// status it recorded in `exit_file`. If the monitor is already gone (or
/// the pid now belongs to another process) the file is read at once. It is
/// an error if the monitor ended without recording a status (it was
/// killed).
pub async fn wait_exit(monitor_pid: i32, exit_file: &Path) -> Result<ExitStatus> {
    if monitor_pid <= 0 {
        return Err(Error::InvalidArgument(format!(
            "invalid monitor pid {monitor_pid}"
        )));
    }
    if let Some(pidfd) = Pidfd::open(monitor_pid, "monitor")? {
        // Check identity only after the pidfd is held: from then on the pid
        // cannot be reused under us, so a match means the pidfd is ours.
        if is_monitor_of(monitor_pid, exit_file) {
            pidfd.exited().await?;
        }
    }
    read_exit_file(exit_file)?.ok_or_else(|| Error::External {
        what: format!("monitor {monitor_pid}"),
        message: format!(
            "ended without recording the container's exit status in {}",
            exit_file.display()
        ),
    })
}

/// Whether `pid` is a monitor whose configuration names `exit_file`: its
/// argv[1] is its `monitor.json`. A process that is gone or a zombie (empty
/// cmdline) is not.
fn is_monitor_of(pid: i32, exit_file: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let Some(config_path) = cmdline.split(|&b| b == 0).nth(1) else {
        return false;
    };
    let config_path = Path::new(OsStr::from_bytes(config_path));
    std::fs::read(config_path)
        .ok()
        .and_then(|data| serde_json::from_slice::<MonitorConfig>(&data).ok())
        .is_some_and(|config| config.exit_file == exit_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_gone_monitor_yields_its_exit_file_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let exit_file = dir.path().join("exit");
        let status = ExitStatus {
            exit_code: 3,
            signal: None,
            finished_at: 1,
            oom_killed: false,
        };
        super::super::exit_status::write_exit_file(&exit_file, &status).unwrap();
        // A pid that has ended: our own finished child.
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert_eq!(wait_exit(pid, &exit_file).await.unwrap(), status);
        // A live process that is not a monitor (ourselves): not waited for.
        assert_eq!(
            wait_exit(std::process::id() as i32, &exit_file)
                .await
                .unwrap(),
            status
        );
    }

    #[tokio::test]
    async fn a_monitor_gone_without_an_exit_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = wait_exit(std::process::id() as i32, &dir.path().join("exit"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("without recording"), "{err}");
        assert!(wait_exit(0, &dir.path().join("exit")).await.is_err());
    }
}
