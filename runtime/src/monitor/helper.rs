//! Daemon side: starting a helper process and reading its report.
//!
//! Every helper body (the container monitor, the pod-infra process) starts
//! the same way: the daemon runs `crius-monitor`, whose first process forks
//! the detached helper; the helper keeps the first process's stdout and
//! stderr until it has reported on stdout, so the daemon reads both to
//! their ends and waits for the first process. The report itself is each
//! helper's own.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, IoContext, Result};

/// What the first process of a helper printed, and how it ended.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Its stdout: the report.
    pub(crate) stdout: Vec<u8>,
    /// Its stderr: what it said when it could not report.
    pub(crate) stderr: Vec<u8>,
    /// How it ended.
    pub(crate) status: std::process::ExitStatus,
}

impl Finished {
    /// Why there is no report, for a helper `program` that ended without
    /// one: how it ended and what it said on stderr.
    pub(crate) fn unreported(&self, program: &Path) -> String {
        let said = String::from_utf8_lossy(&self.stderr);
        let said = said.trim();
        format!(
            "{} {} without reporting{}{said}",
            program.display(),
            self.status,
            if said.is_empty() { "" } else { ": " },
        )
    }
}

/// Runs `command` (a `crius-monitor` mode, its arguments set) with stdin
/// on /dev/null, reads its stdout and stderr to their ends and waits for
/// it. `what` is the errors' context; with `limit`, a helper that takes
/// longer is an error (and dropped: killed if `command` kills on drop).
pub(crate) async fn run(
    mut command: tokio::process::Command,
    what: &str,
    limit: Option<Duration>,
) -> Result<Finished> {
    let program = Path::new(command.as_std().get_program()).to_path_buf();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(|| format!("{what}: run {}", program.display()))?;
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let talk = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (o, e, status) = tokio::join!(
            read_to_end(stdout.as_mut(), &mut out),
            read_to_end(stderr.as_mut(), &mut err),
            child.wait(),
        );
        o.and(e).and(status).map(|status| Finished {
            stdout: out,
            stderr: err,
            status,
        })
    };
    let finished = match limit {
        None => talk.await,
        Some(limit) => tokio::time::timeout(limit, talk)
            .await
            .map_err(|_| Error::External {
                what: what.to_string(),
                message: format!("no report within {}s", limit.as_secs()),
            })?,
    };
    finished.context(|| format!("{what}: talk to {}", program.display()))
}

async fn read_to_end(
    from: Option<&mut (impl AsyncRead + Unpin)>,
    into: &mut Vec<u8>,
) -> std::io::Result<()> {
    match from {
        Some(from) => from.read_to_end(into).await.map(drop),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("/bin/sh");
        command.arg("-c").arg(script);
        command
    }

    #[tokio::test]
    async fn both_streams_are_read_to_their_ends() {
        let done = run(sh("echo ok 1; echo oops >&2; exit 3"), "test", None)
            .await
            .unwrap();
        assert_eq!(done.stdout, b"ok 1\n");
        assert_eq!(done.stderr, b"oops\n");
        assert_eq!(done.status.code(), Some(3));
        let why = done.unreported(Path::new("/bin/sh"));
        assert!(
            why.starts_with("/bin/sh exit status: 3 without reporting: oops"),
            "{why}"
        );
        let quiet = run(sh("exit 1"), "test", None).await.unwrap();
        assert!(
            quiet
                .unreported(Path::new("/bin/sh"))
                .ends_with("without reporting"),
        );
    }

    #[tokio::test]
    async fn a_helper_that_keeps_its_pipes_past_the_limit_is_an_error() {
        // The shell's child keeps stdout open after the shell exits, as a
        // detached helper that never reports would.
        let mut command = sh("sleep 1 & exit 0");
        command.kill_on_drop(true);
        let err = run(command, "start it", Some(Duration::from_millis(200)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no report within 0s"), "{err}");
        assert!(err.to_string().contains("start it"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let command = tokio::process::Command::new("/nonexistent/helper");
        let err = run(command, "start it", None).await.unwrap_err();
        assert!(err.to_string().contains("/nonexistent/helper"), "{err}");
    }
}
