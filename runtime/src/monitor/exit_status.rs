//! How a container ended, as the monitor records it in the exit file.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::wait::WaitStatus;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;

/// The end of a container's init.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, or 128 + the signal number when a signal killed it
    /// (as containerd reports it).
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// When the monitor saw it end, in nanoseconds since the Unix epoch.
    pub finished_at: i64,
    /// The kernel's OOM killer killed a process of the container.
    #[serde(default)]
    pub oom_killed: bool,
}

impl ExitStatus {
    /// The status for a `waitpid` result; `None` for results that are not
    /// an end (stopped, continued, still alive).
    pub(crate) fn from_wait(status: WaitStatus, finished_at: i64) -> Option<ExitStatus> {
        match status {
            WaitStatus::Exited(_, code) => Some(ExitStatus {
                exit_code: code,
                signal: None,
                finished_at,
                oom_killed: false,
            }),
            WaitStatus::Signaled(_, signal, _core_dumped) => Some(ExitStatus {
                exit_code: 128 + signal as i32,
                signal: Some(signal as i32),
                finished_at,
                oom_killed: false,
            }),
            _ => None,
        }
    }
}

/// The OOM kills counted in a cgroup file: the `oom_kill` line of
/// `memory.events` (v2) or `memory.oom_control` (v1). 0 when unreadable.
pub(crate) fn oom_kills(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or(0)
}

/// Now, in nanoseconds since the Unix epoch.
pub(crate) fn unix_nanos_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Reads an exit file; `None` while it does not exist (the container has
/// not ended, or its monitor died without recording it).
pub fn read_exit_file(path: &Path) -> Result<Option<ExitStatus>> {
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read exit file {}", path.display()), e)),
    };
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|e| Error::Store {
            path: path.to_path_buf(),
            message: format!("unreadable exit file: {e}"),
        })
}

/// Writes an exit file atomically (creating its directory), so a reader
/// never sees half of it.
pub(crate) fn write_exit_file(path: &Path, status: &ExitStatus) -> Result<()> {
    if let Some(dir) = path.parent() {
        fsutil::create_dir_all(dir)?;
    }
    let data = serde_json::to_vec(status)
        .map_err(|e| Error::Internal(format!("encode exit status: {e}")))?;
    fsutil::atomic_write(path, &data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    #[test]
    fn exit_codes_and_signals_are_encoded_like_containerd() {
        let pid = Pid::from_raw(42);
        assert_eq!(
            ExitStatus::from_wait(WaitStatus::Exited(pid, 3), 7),
            Some(ExitStatus {
                exit_code: 3,
                signal: None,
                finished_at: 7,
                oom_killed: false,
            })
        );
        assert_eq!(
            ExitStatus::from_wait(WaitStatus::Signaled(pid, Signal::SIGTERM, false), 7),
            Some(ExitStatus {
                exit_code: 143,
                signal: Some(15),
                finished_at: 7,
                oom_killed: false,
            })
        );
        assert_eq!(
            ExitStatus::from_wait(WaitStatus::Signaled(pid, Signal::SIGKILL, true), 7)
                .map(|s| s.exit_code),
            Some(137)
        );
        assert_eq!(ExitStatus::from_wait(WaitStatus::StillAlive, 7), None);
        assert_eq!(
            ExitStatus::from_wait(WaitStatus::Stopped(pid, Signal::SIGSTOP), 7),
            None
        );
    }

    #[test]
    fn oom_kills_are_read_from_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills(v1), 2);
        assert_eq!(oom_kills(v2), 1);
        assert_eq!(oom_kills("oom_kill_disable 0\n"), 0);
    }

    #[test]
    fn exit_files_round_trip_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/exit");
        assert_eq!(read_exit_file(&path).unwrap(), None);
        let status = ExitStatus {
            exit_code: 143,
            signal: Some(15),
            finished_at: unix_nanos_now(),
            oom_killed: true,
        };
        write_exit_file(&path, &status).unwrap();
        assert_eq!(read_exit_file(&path).unwrap(), Some(status));
    }

    #[test]
    fn a_corrupt_exit_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit");
        std::fs::write(&path, b"{nope").unwrap();
        let err = read_exit_file(&path).unwrap_err().to_string();
        assert!(err.contains("exit"), "{err}");
    }
}
