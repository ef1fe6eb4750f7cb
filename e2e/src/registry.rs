//! A throwaway image registry: Debian's CNCF distribution (`docker-registry`)
//! serving plain HTTP on a free loopback port, storing into a temp dir.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Context, Result, err, free_port, log_tail, terminate};

/// How long the registry may take to answer `/v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running registry; stopped (SIGTERM, then SIGKILL) and its storage
/// removed when dropped.
pub struct Registry {
    child: Child,
    addr: String,
    log: PathBuf,
    // Dropped after the child is stopped (fields drop after `Drop::drop`).
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on a free 127.0.0.1 port and waits until
    /// `GET /v2/` answers 200. Retries on another port if the chosen one was
    /// taken meanwhile.
    pub fn start() -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("crius-e2e-registry-")
            .tempdir_in("/tmp")
            .context(|| "create the registry's temp dir")?;
        let mut last_error = err("registry never started");
        for _ in 0..3 {
            let port = free_port()?;
            match Self::start_on(&dir, port) {
                Ok((child, log)) => {
                    return Ok(Registry {
                        child,
                        addr: format!("127.0.0.1:{port}"),
                        log,
                        _dir: dir,
                    });
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn start_on(dir: &tempfile::TempDir, port: u16) -> Result<(Child, PathBuf)> {
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .context(|| format!("write {}", config.display()))?;
        let log = dir.path().join(format!("registry-{port}.log"));
        let out = File::create(&log).context(|| format!("create {}", log.display()))?;
        let errs = out.try_clone().context(|| "dup the registry log")?;
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(errs)
            .spawn()
            .context(|| "spawn `docker-registry serve` (is package docker-registry installed?)")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(err(format!(
                    "docker-registry on port {port} exited with {status}\n{}",
                    log_tail(&log, 30)
                )));
            }
            if v2_status(port) == Some(200) {
                return Ok((child, log));
            }
            if Instant::now() > deadline {
                terminate(&mut child, Duration::from_secs(2));
                return Err(err(format!(
                    "docker-registry on port {port} did not answer GET /v2/ with 200 within {READY_TIMEOUT:?}\n{}",
                    log_tail(&log, 30)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The tail of the registry's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 30)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// The HTTP status of `GET /v2/` on the loopback port, if it answers.
fn v2_status(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(format!("GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    // "HTTP/1.x NNN"
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
