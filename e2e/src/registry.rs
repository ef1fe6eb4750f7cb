//! A throwaway image registry: Debian's CNCF distribution (`docker-registry`)
//! serving plain HTTP on a free loopback port, storing into a temp dir;
//! optionally requiring basic authentication (htpasswd), as private
//! registries do. Any number can run at once (a second one serves as a
//! mirror of the first).

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::token::TokenServer;
pub use crate::token::{REGISTRY_PASSWORD, REGISTRY_USER};
use crate::{Context, Result, err, free_port, log_tail, terminate};

/// `REGISTRY_USER:bcrypt(REGISTRY_PASSWORD)`.
const HTPASSWD: &str = "crius-e2e:$2b$04$h3uYeUW5H2LymsfTjiNvHeHxc1WDCWYe9JA3XSf2IEzI6QuCf5W7G";

/// How clients authenticate to a registry.
enum Auth<'a> {
    None,
    Htpasswd,
    /// Token authentication for these repositories.
    Token(&'a [&'a str]),
}

/// How long the registry may take to answer `/v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running registry; stopped (SIGTERM, then SIGKILL) and its storage
/// removed when dropped.
pub struct Registry {
    child: Child,
    addr: String,
    log: PathBuf,
    token: Option<TokenServer>,
    // Dropped after the child is stopped (fields drop after `Drop::drop`).
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on a free 127.0.0.1 port and waits until
    /// `GET /v2/` answers 200. Retries on another port if the chosen one was
    /// taken meanwhile.
    pub fn start() -> Result<Registry> {
        Self::start_inner(Auth::None)
    }

    /// Like [`Registry::start`], but every request needs basic
    /// authentication as [`REGISTRY_USER`] / [`REGISTRY_PASSWORD`].
    pub fn start_with_auth() -> Result<Registry> {
        Self::start_inner(Auth::Htpasswd)
    }

    /// Like [`Registry::start`], but with token authentication (as Docker
    /// Hub, GHCR, Quay, Harbor): requests need a bearer token from a token
    /// service started alongside (see [`crate::token`]), which grants pull
    /// and push on `repositories` to [`REGISTRY_USER`] /
    /// [`REGISTRY_PASSWORD`] and to the identity token
    /// [`crate::token::IDENTITY_TOKEN`].
    pub fn start_with_token_auth(repositories: &[&str]) -> Result<Registry> {
        Self::start_inner(Auth::Token(repositories))
    }

    fn start_inner(auth: Auth<'_>) -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("crius-e2e-registry-")
            .tempdir_in("/tmp")
            .context(|| "create the registry's temp dir")?;
        let token = match auth {
            Auth::Token(repositories) => Some(TokenServer::start(dir.path(), repositories)?),
            _ => None,
        };
        let mut last_error = err("registry never started");
        for _ in 0..3 {
            let port = free_port()?;
            match Self::start_on(&dir, port, &auth, token.as_ref()) {
                Ok((child, log)) => {
                    return Ok(Registry {
                        child,
                        addr: format!("127.0.0.1:{port}"),
                        log,
                        token,
                        dir,
                    });
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn start_on(
        dir: &tempfile::TempDir,
        port: u16,
        auth: &Auth<'_>,
        token: Option<&TokenServer>,
    ) -> Result<(Child, PathBuf)> {
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        let mut yml = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some(token) = token {
            yml += &format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    \
                 rootcertbundle: {}\n",
                token.realm(),
                crate::token::SERVICE,
                crate::token::ISSUER,
                token.cert().display()
            );
        }
        if matches!(auth, Auth::Htpasswd) {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{HTPASSWD}\n"))
                .context(|| format!("write {}", htpasswd.display()))?;
            yml += &format!(
                "auth:\n  htpasswd:\n    realm: crius-e2e\n    path: {}\n",
                htpasswd.display()
            );
        }
        std::fs::write(&config, yml).context(|| format!("write {}", config.display()))?;
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
            // 401 when it wants credentials: it serves either way.
            if matches!(v2_status(port), Some(200 | 401)) {
                return Ok((child, log));
            }
            if Instant::now() > deadline {
                terminate(&mut child, Duration::from_secs(2));
                return Err(err(format!(
                    "docker-registry on port {port} did not answer GET /v2/ within {READY_TIMEOUT:?}\n{}",
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

    /// A valid bearer token (for `AuthConfig.registry_token`), if the
    /// registry uses token authentication.
    pub fn token(&self) -> Option<&str> {
        self.token.as_ref().map(TokenServer::token)
    }

    /// Where the registry keeps the blob `digest` (`sha256:<hex>`), so a
    /// test can corrupt it.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(hex.get(..2).unwrap_or(""))
            .join(hex)
            .join("data")
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

/// A TCP proxy in front of a registry that passes each connection's first
/// `limit` response bytes, then stops sending (keeping the connection
/// open): a registry that stalls mid-blob. Stopped, and its connections
/// closed, when dropped.
pub struct StallingProxy {
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl StallingProxy {
    /// Starts a proxy to `upstream` (`host:port`) on a free loopback port.
    pub fn start(upstream: &str, limit: usize) -> Result<StallingProxy> {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context(|| "bind a proxy")?;
        let addr = listener
            .local_addr()
            .context(|| "the proxy's address")?
            .to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop2, conns2, upstream) = (stop.clone(), conns.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let clones = (client.try_clone(), server.try_clone());
                let (Ok(mut client_r), Ok(mut server_w)) = clones else {
                    continue;
                };
                if let Ok(mut list) = conns2.lock() {
                    list.extend(client.try_clone().ok());
                    list.extend(server.try_clone().ok());
                }
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_r, &mut server_w);
                });
                let (mut server_r, mut client_w) = (server, client);
                std::thread::spawn(move || {
                    let mut sent = 0;
                    let mut buf = vec![0u8; 16 * 1024];
                    while sent < limit {
                        let n = match server_r.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n.min(limit - sent),
                        };
                        if client_w.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        sent += n;
                    }
                    // Stalled: drop what the registry sends, keep the
                    // client waiting, until either end closes.
                    while matches!(server_r.read(&mut buf), Ok(n) if n > 0) {}
                    drop(client_w);
                });
            }
        });
        Ok(StallingProxy { addr, stop, conns })
    }

    /// `127.0.0.1:PORT`, to use in image references.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Unblock the accept loop, then every connection's threads.
        let _ = TcpStream::connect(&self.addr);
        if let Ok(list) = self.conns.lock() {
            for c in list.iter() {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}
