//! `<runtime> exec` with captured output, for ExecSync: the command runs
//! in the container with the container's process settings (user,
//! capabilities, environment, seccomp), its output is kept up to a cap,
//! and it is killed when its time runs out.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{OciRuntime, check_id};
use crate::error::{Error, IoContext, Result};

/// How long the output pipes are read after the command ended, in case a
/// process it left behind holds them open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);
/// How long the runtime's exec may take to end once the command is
/// killed.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// What a command run in a container produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its standard output, at most the cap.
    pub stdout: Vec<u8>,
    /// Its standard error, at most the cap.
    pub stderr: Vec<u8>,
    /// Its exit code (128 + signal when a signal ended it).
    pub exit_code: i32,
}

/// Reads `r` to its end, keeping at most `cap` bytes and discarding the
/// rest (so the writer never blocks on a full pipe).
async fn read_capped(mut r: impl AsyncRead + Unpin, cap: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

impl OciRuntime {
    /// Runs the process described by `process_file` (an OCI `process`
    /// object: args, user, env, cwd, capabilities …) in container `id` and
    /// waits for it, at most `timeout`
    /// (`None`: no limit); each output stream is kept up to `max_output`
    /// bytes. On timeout the command is killed and the error is
    /// [`Error::Timeout`]. `pid_file` is a scratch file (removed after).
    pub async fn exec(
        &self,
        id: &str,
        process_file: &Path,
        timeout: Option<Duration>,
        max_output: usize,
        pid_file: &Path,
    ) -> Result<ExecOutput> {
        check_id(id)?;
        let what = format!("{} exec {id}", self.name);
        let _ = std::fs::remove_file(pid_file);
        let mut child = tokio::process::Command::new(&self.path)
            .args(self.global_args())
            .arg("exec")
            .arg("--process")
            .arg(process_file)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context(|| format!("run {what} ({})", self.path.display()))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let out_task = tokio::spawn(async move {
            match stdout {
                Some(s) => read_capped(s, max_output).await,
                None => Vec::new(),
            }
        });
        let err_task = tokio::spawn(async move {
            match stderr {
                Some(s) => read_capped(s, max_output).await,
                None => Vec::new(),
            }
        });
        let waited = match timeout {
            Some(t) => tokio::time::timeout(t, child.wait()).await.ok(),
            None => Some(child.wait().await),
        };
        let status = match waited {
            Some(status) => status.context(|| format!("wait for {what}"))?,
            None => {
                // The command itself must die, not only the runtime's
                // exec, which would leave it running in the container.
                // The runtime may not have written its pid yet (a slow
                // node, a timeout shorter than the runtime's start-up).
                if let Some(pid) = pid_once_written(pid_file, &mut child).await {
                    let _ = kill(pid, Signal::SIGKILL);
                }
                if tokio::time::timeout(KILL_GRACE, child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
                out_task.abort();
                err_task.abort();
                let _ = std::fs::remove_file(pid_file);
                return Err(Error::Timeout(format!(
                    "exec in container {id} timed out after {}",
                    humantime::format_duration(timeout.unwrap_or_default())
                )));
            }
        };
        // The runtime writes the pid file once the command's process is
        // running; without it the runtime itself failed (no such
        // container, command not found) and its message is the error.
        let started = read_pid(pid_file).is_some();
        let _ = std::fs::remove_file(pid_file);
        let drain = async {
            let out = out_task.await.unwrap_or_default();
            let err = err_task.await.unwrap_or_default();
            (out, err)
        };
        let (stdout, stderr) = tokio::time::timeout(DRAIN_AFTER_EXIT, drain)
            .await
            .unwrap_or_default();
        use std::os::unix::process::ExitStatusExt;
        let exit_code = match (status.code(), status.signal()) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => -1,
        };
        if !started {
            return Err(Error::External {
                what,
                message: super::runtime_message(&stderr, b"")
                    .unwrap_or_else(|| format!("exited with code {exit_code}")),
            });
        }
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
        })
    }
}

impl OciRuntime {
    /// The argv of `<runtime> exec --detach` for the process described by
    /// `process_file`, writing its pid to `pid_file` and, with a terminal,
    /// sending the terminal's master to `console_socket` — for
    /// the monitor's exec helper to run.
    pub fn exec_detached_command(
        &self,
        id: &str,
        process_file: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        log_file: &Path,
    ) -> Result<Vec<std::ffi::OsString>> {
        check_id(id)?;
        let mut argv: Vec<std::ffi::OsString> = vec![self.path.clone().into()];
        argv.extend(self.global_args());
        argv.extend([
            // Its own errors, in a file: without a terminal its stderr is
            // the command's.
            "--log".into(),
            log_file.into(),
            "--log-format".into(),
            "json".into(),
            "exec".into(),
            "--detach".into(),
            "--process".into(),
            process_file.into(),
            "--pid-file".into(),
            pid_file.into(),
        ]);
        if let Some(socket) = console_socket {
            argv.push("--console-socket".into());
            argv.push(socket.into());
        }
        argv.push(id.into());
        Ok(argv)
    }
}

/// The pid `exec`'s runtime writes to `pid_file`, waited for while that
/// runtime runs, [`KILL_GRACE`] at most: `None` once it has ended
/// without writing one (the command never started) or the wait is over.
async fn pid_once_written(pid_file: &Path, runtime: &mut tokio::process::Child) -> Option<Pid> {
    let deadline = tokio::time::Instant::now() + KILL_GRACE;
    loop {
        if let Some(pid) = read_pid(pid_file) {
            return Some(pid);
        }
        let ended = !matches!(runtime.try_wait(), Ok(None));
        if ended || tokio::time::Instant::now() >= deadline {
            // Written just as the runtime ended, or not at all.
            return read_pid(pid_file);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The pid in a runtime's pid file, if it holds one.
pub(crate) fn read_pid(path: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 0)
        .map(Pid::from_raw)
}
