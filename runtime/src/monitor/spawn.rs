//! Daemon side: starting a monitor, and finding its binary.

use std::path::{Path, PathBuf};

use super::sync::Report;
use super::{CONFIG_FILE, MonitorConfig, PID_FILE, helper};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::oci::find_executable;

/// The name of the monitor binary.
const MONITOR_BIN: &str = "crius-monitor";

/// A created container and the monitor watching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spawned {
    /// The container's init (created, not yet started).
    pub container_pid: i32,
    /// The detached monitor; pass it to [`wait_exit`](super::wait_exit).
    pub monitor_pid: i32,
}

/// Starts a monitor for `config` and waits until it has run the runtime's
/// create: on success the container is created (not started) and the
/// monitor runs detached, so it survives the daemon.
///
/// `dir` is the container's directory in the state dir; `monitor.json` and
/// `monitor.pid` are written there (and the monitor's own diagnostics go to
/// `monitor.log`). A stale exit file is removed first.
///
/// The daemon must not be a child subreaper itself, or the detached monitor
/// would be re-parented to it and never reaped.
///
/// On failure the error carries what the runtime said and no monitor is
/// left; the runtime may still hold state for the id (a create killed at
/// its timeout), so callers should `delete --force` it.
pub async fn spawn(monitor_bin: &Path, config: &MonitorConfig, dir: &Path) -> Result<Spawned> {
    let id = &config.container_id;
    let what = format!("create container {id}");
    if config.create_command.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{what}: empty create command"
        )));
    }
    fsutil::create_dir_all(dir)?;
    let config_path = dir.join(CONFIG_FILE);
    let json = serde_json::to_vec_pretty(config)
        .map_err(|e| Error::Internal(format!("encode monitor config of container {id}: {e}")))?;
    fsutil::replace_file(&config_path, &json)?;
    fsutil::remove_file(&config.exit_file)?;
    fsutil::remove_file(&dir.join(PID_FILE))?;

    // The first monitor process forks the real one and exits at once; the
    // real one keeps our stdout pipe until it reports.
    let mut command = tokio::process::Command::new(monitor_bin);
    command.arg(&config_path);
    let done = helper::run(command, &what, None).await?;
    match Report::decode(&done.stdout) {
        Some(Report::Ok {
            container_pid,
            monitor_pid,
        }) => {
            fsutil::replace_file(&dir.join(PID_FILE), format!("{monitor_pid}\n").as_bytes())?;
            Ok(Spawned {
                container_pid,
                monitor_pid,
            })
        }
        Some(Report::Error(message)) => Err(Error::External { what, message }),
        None => Err(Error::External {
            what,
            message: format!("monitor {}", done.unreported(monitor_bin)),
        }),
    }
}

/// The monitor binary: `configured` when set (a path, or a name looked up
/// on `$PATH`); else `crius-monitor` beside the running executable; else
/// `crius-monitor` on `$PATH`.
pub fn find_monitor_bin(configured: &Path) -> Result<PathBuf> {
    if !configured.as_os_str().is_empty() {
        return find_executable(configured).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "monitor binary {} (runtime.monitor_path) not found or not executable",
                configured.display()
            ))
        });
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(MONITOR_BIN)));
    if let Some(path) = beside.as_deref().and_then(find_executable) {
        return Ok(path);
    }
    find_executable(Path::new(MONITOR_BIN)).ok_or_else(|| {
        Error::FailedPrecondition(format!(
            "monitor binary {MONITOR_BIN} not found beside {} nor on $PATH; \
             install it or set runtime.monitor_path",
            beside
                .as_deref()
                .and_then(Path::parent)
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "the crius executable".into())
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_monitor_must_exist() {
        assert_eq!(
            find_monitor_bin(Path::new("/bin/sh")).unwrap(),
            PathBuf::from("/bin/sh")
        );
        let err = find_monitor_bin(Path::new("/nonexistent/crius-monitor")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/crius-monitor"),
            "{err}"
        );
    }

    #[test]
    fn an_unconfigured_monitor_is_searched_and_a_miss_says_where() {
        // The unit-test executable has no crius-monitor beside it (it lives
        // in target/debug/deps) and the test environment has none on $PATH,
        // unless someone installed one: then it must be found.
        match find_monitor_bin(Path::new("")) {
            Ok(path) => assert!(path.ends_with(MONITOR_BIN)),
            Err(e) => assert!(e.to_string().contains("crius-monitor"), "{e}"),
        }
    }

    #[tokio::test]
    async fn a_monitor_that_dies_without_reporting_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = MonitorConfig::for_test(dir.path());
        let err = spawn(Path::new("/bin/false"), &config, dir.path())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("create container c1") && msg.contains("without reporting"),
            "{msg}"
        );
        assert!(dir.path().join(CONFIG_FILE).is_file());
    }
}
