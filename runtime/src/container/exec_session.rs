//! Exec: a command started in a running container with its stdio streamed
//! to a client (the streaming server's exec sessions).
//!
//! The command is the container's own process spec with new arguments
//! (as ExecSync's), run by the OCI runtime detached under a short-lived
//! `crius-monitor exec` helper that waits for it and exits with its code
//! (see [`crate::monitor::EXEC_ARG`]). Without a terminal the command's
//! stdin, stdout and stderr are pipes to the daemon; with one, the runtime
//! sends the terminal's master over a console socket and the daemon reads,
//! writes and resizes it. A terminal session whose [`ExecSession::exit`]
//! future is dropped before the command ended (the client went) kills the
//! command.

use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, kill};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::Containers;
use super::exec::ExecTarget;
use crate::error::{Error, IoContext, Result};
use crate::monitor::EXEC_ARG;
use crate::monitor::console::{ConsoleSocket, receive_fd, set_window_size};
use crate::oci::{logged_errors, read_pid, runtime_message};

/// How long the runtime may take to send the terminal.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a terminal that an exited exec may have sent is looked for.
const EXITED_CONSOLE_GRACE: Duration = Duration::from_secs(2);

/// Which streams an exec gets, and whether a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecStdio {
    /// A stdin the caller writes.
    pub stdin: bool,
    /// A stdout the caller reads (with a terminal: the terminal's output).
    pub stdout: bool,
    /// A stderr the caller reads (never with a terminal).
    pub stderr: bool,
    /// Run with a terminal.
    pub tty: bool,
}

/// A stream the caller reads.
pub type ExecRead = Box<dyn AsyncRead + Send + Unpin>;
/// A stream the caller writes.
pub type ExecWrite = Box<dyn AsyncWrite + Send + Unpin>;
/// Resolves to the command's exit code.
pub type ExecExit = Pin<Box<dyn Future<Output = Result<i32>> + Send>>;

/// A command running in a container.
pub struct ExecSession {
    /// Its stdin (with a terminal: the terminal's input).
    pub stdin: Option<ExecWrite>,
    /// Its stdout (with a terminal: the terminal's output).
    pub stdout: Option<ExecRead>,
    /// Its stderr.
    pub stderr: Option<ExecRead>,
    /// Its terminal, for resizing.
    pub terminal: Option<Terminal>,
    /// Resolves to its exit code (128 + signal when a signal ended it).
    /// Dropped before that with a terminal: the command is killed.
    pub exit: ExecExit,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("terminal", &self.terminal.is_some())
            .finish_non_exhaustive()
    }
}

/// The terminal of an exec session.
#[derive(Debug, Clone)]
pub struct Terminal {
    master: Arc<OwnedFd>,
}

impl Terminal {
    /// Sets the terminal's size.
    pub fn resize(&self, width: u16, height: u16) -> Result<()> {
        set_window_size(self.master.as_fd(), width, height)
    }
}

/// Removes an exec's scratch files, and kills the command if it is still
/// running when armed.
struct Cleanup {
    pid_file: PathBuf,
    files: Vec<PathBuf>,
    kill: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.kill
            && let Some(pid) = read_pid(&self.pid_file)
        {
            let _ = kill(pid, Signal::SIGKILL);
        }
        for f in self.files.iter().chain([&self.pid_file]) {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Containers {
    /// Starts `cmd` in running container `id` with the streams in `stdio`.
    pub(crate) async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        stdio: ExecStdio,
    ) -> Result<ExecSession> {
        let ExecTarget {
            c,
            oci,
            dir,
            name,
            pid_file,
            process_file,
        } = self.exec_target(id, cmd, stdio.tty)?;
        let socket_name = format!("exec-{name}.sock");
        let log_file = dir.join(format!("exec-{name}.log"));
        let mut cleanup = Cleanup {
            pid_file: pid_file.clone(),
            files: vec![process_file.clone(), log_file.clone()],
            kill: false,
        };
        // Relative to the container's directory (the helper's working
        // directory): the absolute path may be too long for a socket.
        let console = match stdio.tty {
            true => Some(ConsoleSocket::bind(&dir.join(&socket_name))?),
            false => None,
        };
        let argv = oci.exec_detached_command(
            &c.id,
            &process_file,
            &pid_file,
            console.as_ref().map(|_| Path::new(&socket_name)),
            &log_file,
        )?;
        let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        let mut command = tokio::process::Command::new(&self.monitor_bin);
        command
            .arg(EXEC_ARG)
            .arg(&pid_file)
            .args(&argv)
            .current_dir(&dir);
        if stdio.tty {
            // The command's stdio is the terminal; stderr carries the
            // runtime's own messages.
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
        } else {
            command
                .stdin(piped(stdio.stdin))
                .stdout(piped(stdio.stdout))
                .stderr(piped(stdio.stderr));
        }
        let what = format!("exec in container {}", c.id);
        let mut child = command
            .spawn()
            .context(|| format!("run {} {EXEC_ARG}", self.monitor_bin.display()))?;
        let messages = match stdio.tty {
            true => child.stderr.take().map(|mut e| {
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    let _ = (&mut e).take(64 * 1024).read_to_end(&mut out).await;
                    out
                })
            }),
            false => None,
        };
        let mut session = ExecSession {
            stdin: child.stdin.take().map(|s| Box::new(s) as ExecWrite),
            stdout: child.stdout.take().map(|s| Box::new(s) as ExecRead),
            stderr: child.stderr.take().map(|s| Box::new(s) as ExecRead),
            terminal: None,
            exit: Box::pin(async { Ok(0) }),
        };
        if let Some(console) = &console {
            let receive = receive_terminal(console);
            tokio::pin!(receive);
            let master = tokio::select! {
                biased;
                m = &mut receive => m,
                status = child.wait() => {
                    // The runtime sends the terminal before it runs the
                    // command, so a quick command may be over, its output
                    // waiting in the terminal, before the terminal is taken
                    // here: it is in the console socket then, or never.
                    match tokio::time::timeout(EXITED_CONSOLE_GRACE, &mut receive).await {
                        Ok(m) => m,
                        Err(_) => {
                            let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
                            let said = match messages {
                                Some(t) => t.await.unwrap_or_default(),
                                None => Vec::new(),
                            };
                            return Err(Error::External {
                                what,
                                message: runtime_said(&log_file, &said).unwrap_or_else(|| {
                                    format!("exited with code {code} before it ran the command")
                                }),
                            });
                        }
                    }
                }
                () = tokio::time::sleep(CONSOLE_TIMEOUT) => Err(Error::Timeout(format!(
                    "{what}: the runtime sent no terminal within {}s",
                    CONSOLE_TIMEOUT.as_secs()
                ))),
            }?;
            cleanup.kill = true;
            let master = Arc::new(master);
            let reader = tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(
                master.try_clone().context(|| "duplicate the terminal")?,
            )
            .context(|| "register the terminal")?;
            if stdio.stdin {
                let writer = tokio::net::unix::pipe::Sender::from_owned_fd_unchecked(
                    master.try_clone().context(|| "duplicate the terminal")?,
                )
                .context(|| "register the terminal")?;
                session.stdin = Some(Box::new(writer));
            }
            session.stdout = Some(Box::new(reader));
            session.terminal = Some(Terminal { master });
        }
        drop(console);
        let id = c.id.clone();
        session.exit = Box::pin(async move {
            let mut cleanup = cleanup;
            let status = child.wait().await.context(|| format!("wait for {what}"))?;
            let started = read_pid(&cleanup.pid_file).is_some();
            cleanup.kill = false;
            let code = status.code().unwrap_or(-1);
            if !started {
                let said = match messages {
                    Some(t) => t.await.unwrap_or_default(),
                    None => Vec::new(),
                };
                return Err(Error::External {
                    what: format!("exec in container {id}"),
                    message: runtime_said(&log_file, &said).unwrap_or_else(|| {
                        format!("the OCI runtime could not run the command (exit code {code})")
                    }),
                });
            }
            Ok(code)
        });
        Ok(session)
    }
}

/// Why the OCI runtime failed: the errors in its log file, else what it
/// printed on `stderr`.
fn runtime_said(log_file: &Path, stderr: &[u8]) -> Option<String> {
    let log = std::fs::read(log_file).unwrap_or_default();
    logged_errors(&log).or_else(|| runtime_message(stderr, b""))
}

/// Accepts the runtime's connection on the console socket and receives the
/// terminal's master, made non-blocking.
async fn receive_terminal(console: &ConsoleSocket) -> Result<OwnedFd> {
    let listener = console
        .listener()
        .try_clone()
        .and_then(tokio::net::UnixListener::from_std)
        .context(|| "listen on the console socket")?;
    let (stream, _) = listener
        .accept()
        .await
        .context(|| "accept the runtime on the console socket")?;
    let stream = stream
        .into_std()
        .context(|| "take the console connection")?;
    stream
        .set_nonblocking(false)
        .context(|| "make the console connection blocking")?;
    let master = tokio::task::spawn_blocking(move || receive_fd(&stream))
        .await
        .map_err(|e| Error::Internal(format!("console task: {e}")))??;
    fcntl(&master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .context(|| "make the terminal non-blocking")?;
    Ok(master)
}
