//! Running the `crius` daemon for one test and talking CRI to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::VersionRequest;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{Context, NodeDir, Result, err, free_port, log_tail, wait_bounded};

/// How long the daemon may take to answer a CRI Version call.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a SIGTERMed daemon may take to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Where CNI plugins are looked up, in order (those that exist are passed).
const CNI_BIN_DIRS: &[&str] = &["/opt/cni/bin", "/usr/lib/cni"];

/// How to start a daemon.
#[derive(Debug, Clone)]
pub struct CriusOptions {
    /// Write a CNI network config (bridge + portmap). Without one the
    /// daemon must report NetworkReady=false.
    pub cni: bool,
    /// Serve metrics on a free loopback port (else `--metrics-listen none`).
    pub metrics: bool,
    /// `--log-level`.
    pub log_level: String,
    /// Contents of a crius.toml to pass with `--config`.
    pub config: Option<String>,
    /// The daemon binary; `None` means [`crius_binary`].
    pub binary: Option<PathBuf>,
    /// Extra environment variables for the daemon (such as
    /// `CRIUS_CRASH_AT`); change them between restarts with
    /// [`Crius::options_mut`].
    pub env: Vec<(String, String)>,
    /// Root and state go under this relative path in the test's dir (see
    /// [`NodeDir::create_nested`]); empty: right in it.
    pub nest: String,
    /// `--cgroup-driver`: `cgroupfs` by default, whatever the node (the
    /// tests' cgroup parents and the paths they read are cgroupfs ones);
    /// `systemd` or `auto` for the tests of those.
    pub cgroup_driver: &'static str,
}

impl Default for CriusOptions {
    fn default() -> Self {
        CriusOptions {
            cni: true,
            metrics: true,
            // crius at debug; the HTTP/2 stack below it at info.
            log_level: "debug,h2=info,hyper=info,tower=info,rustls=info".into(),
            config: None,
            binary: None,
            env: Vec::new(),
            nest: String::new(),
            cgroup_driver: "cgroupfs",
        }
    }
}

impl CriusOptions {
    /// The defaults, without a CNI network config.
    pub fn without_cni() -> Self {
        CriusOptions {
            cni: false,
            ..Default::default()
        }
    }
}

/// The installed CNI plugin `name` (in the first of the dirs the daemon
/// is given that holds it): for a test's wrapper in front of it.
pub fn installed_cni_plugin(name: &str) -> Result<PathBuf> {
    CNI_BIN_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| err(format!("no {name} CNI plugin in {CNI_BIN_DIRS:?}")))
}

/// The `crius` binary the tests run: `$CRIUS_BIN`, else `crius` in the cargo
/// target dir the test binary was built in (`target/<profile>/deps/<test>`
/// or `target/<profile>/<tool>` → `target/<profile>/crius`), checked to
/// exist with `crius-monitor`.
pub fn crius_binary() -> Result<PathBuf> {
    const HINT: &str = "run `cargo build --workspace --bins` first, or set CRIUS_BIN";
    if let Some(bin) = std::env::var_os("CRIUS_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(err(format!("CRIUS_BIN={} is not a file", bin.display())))
        };
    }
    let exe = std::env::current_exe().context(|| "locate the test binary")?;
    // Tests run from target/<profile>/deps/, tools (crius-bench) from
    // target/<profile>/.
    let dir = exe.parent();
    let in_deps = dir.is_some_and(|d| d.file_name().is_some_and(|n| n == "deps"));
    let profile_dir = if in_deps {
        dir.and_then(Path::parent)
    } else {
        dir
    };
    let Some(profile_dir) = profile_dir else {
        return Err(err(format!(
            "no target dir above {}; {HINT}",
            exe.display()
        )));
    };
    for name in ["crius", "crius-monitor"] {
        let bin = profile_dir.join(name);
        if !bin.is_file() {
            return Err(err(format!("{} not found: {HINT}", bin.display())));
        }
    }
    Ok(profile_dir.join("crius"))
}

/// A running daemon in its own [`NodeDir`]. Dropping it SIGKILLs the daemon
/// if still running (printing its log tail if the test is failing), then
/// the `NodeDir` cleans up everything else.
pub struct Crius {
    child: Option<Child>,
    channel: Channel,
    metrics_addr: Option<SocketAddr>,
    bin: PathBuf,
    options: CriusOptions,
    // Last: dropped (cleaned up) after the daemon is dead.
    dir: NodeDir,
}

impl Crius {
    /// Starts `crius` and waits until it answers a CRI Version call on its
    /// socket. Fails with the daemon's log tail if it exits or does not
    /// answer in time.
    pub async fn start(options: CriusOptions) -> Result<Crius> {
        let bin = match &options.binary {
            Some(bin) => bin.clone(),
            None => crius_binary()?,
        };
        let mut dir = NodeDir::create_nested(options.cni, &options.nest)?;
        dir.set_systemd_cgroups(match options.cgroup_driver {
            "systemd" => true,
            "auto" => crate::node_shape::systemd_booted() && crate::node_shape::cgroup_v2(),
            _ => false,
        });
        let metrics_addr = match options.metrics {
            true => Some(SocketAddr::from(([127, 0, 0, 1], free_port()?))),
            false => None,
        };
        if let Some(config) = &options.config {
            let path = dir.path().join("crius.toml");
            std::fs::write(&path, config).context(|| format!("write {}", path.display()))?;
        }
        let mut crius = Crius {
            child: None,
            channel: lazy_channel(dir.socket()),
            metrics_addr,
            bin,
            options,
            dir,
        };
        crius.spawn()?;
        crius.wait_ready().await?;
        Ok(crius)
    }

    /// Starts the daemon again, in the same directories with the same
    /// flags, after [`Crius::stop`] (or after it was killed): what a node
    /// does when it restarts or upgrades its runtime.
    pub async fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Err(err("crius is still running; stop it first"));
        }
        self.spawn()?;
        self.wait_ready().await
    }

    /// Starts the daemon again like [`Crius::restart`], without waiting
    /// for it to answer: for killing it in the middle of its start-up.
    pub fn respawn(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Err(err("crius is still running; stop it first"));
        }
        self.spawn()
    }

    /// Waits until a daemon started by [`Crius::respawn`] answers.
    pub async fn wait_ready_again(&mut self) -> Result<()> {
        self.wait_ready().await
    }

    /// The options the next [`Crius::restart`] uses.
    pub fn options_mut(&mut self) -> &mut CriusOptions {
        &mut self.options
    }

    /// Waits (at most `timeout`) for the daemon to exit by itself, as a
    /// crash-injected one does, and reaps it; its exit status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else {
            return Err(err("crius is not running"));
        };
        let (status, child) = tokio::task::spawn_blocking(move || {
            let status = wait_bounded(&mut child, timeout);
            (status, child)
        })
        .await
        .context(|| "wait for crius to exit")?;
        match status {
            Some(status) => Ok(status),
            None => {
                self.child = Some(child);
                Err(err(format!(
                    "crius did not exit within {timeout:?}\n{}",
                    self.log_tail(40)
                )))
            }
        }
    }

    /// The daemon's exit status if it has exited by itself (it is reaped
    /// then); `None` while it runs or when it was not started.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// SIGKILLs the daemon, as a crash would, and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| err("crius is not running"))?;
        child.kill().context(|| "SIGKILL crius")?;
        child.wait().context(|| "reap crius")?;
        Ok(())
    }

    fn spawn(&mut self) -> Result<()> {
        let dir = &self.dir;
        let mut command = Command::new(&self.bin);
        command
            .arg("--root")
            .arg(dir.root())
            .arg("--state")
            .arg(dir.state())
            .arg("--listen")
            .arg(dir.socket())
            .arg("--metrics-listen")
            .arg(
                self.metrics_addr
                    .map_or("none".to_string(), |a| a.to_string()),
            )
            .arg("--cni-conf-dir")
            .arg(dir.cni_conf_dir())
            .arg("--cni-bin-dir")
            .arg(dir.cni_bin_dir());
        for bin_dir in CNI_BIN_DIRS.iter().filter(|d| Path::new(d).is_dir()) {
            command.arg("--cni-bin-dir").arg(bin_dir);
        }
        command.arg("--log-level").arg(&self.options.log_level);
        command
            .arg("--cgroup-driver")
            .arg(self.options.cgroup_driver);
        if self.options.config.is_some() {
            command.arg("--config").arg(dir.path().join("crius.toml"));
        }
        // Appended to, so that a restart keeps the earlier run's lines.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.daemon_log())
            .context(|| format!("open {}", dir.daemon_log().display()))?;
        let log_err = log.try_clone().context(|| "dup the daemon log")?;
        command.envs(self.options.env.iter().map(|(k, v)| (k, v)));
        let child = command
            .env("PATH", search_path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .context(|| format!("spawn {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_error = String::from("socket not created");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(err(format!(
                    "crius exited during start-up with {status}\n{}",
                    self.log_tail(40)
                )));
            }
            if self.dir.socket().exists() {
                match connect_unix(&self.dir.socket()).await {
                    Ok(channel) => {
                        let version = RuntimeServiceClient::new(channel.clone())
                            .version(VersionRequest::default())
                            .await;
                        match version {
                            Ok(_) => {
                                self.channel = channel;
                                return Ok(());
                            }
                            Err(status) => last_error = format!("Version: {status}"),
                        }
                    }
                    Err(e) => last_error = e.to_string(),
                }
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "crius did not answer CRI Version on {} within {START_TIMEOUT:?} \
                     (last error: {last_error})\n{}",
                    self.dir.socket().display(),
                    self.log_tail(40)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A CRI RuntimeService client over the daemon's socket.
    pub fn runtime_client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// A CRI ImageService client over the daemon's socket.
    pub fn image_client(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
    }

    /// The daemon's directory, names and cleanup.
    pub fn dir(&self) -> &NodeDir {
        &self.dir
    }

    /// Where `/metrics` is served, if metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of the daemon's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.dir.daemon_log(), lines)
    }

    /// Stops the daemon with SIGTERM and checks it exits with status 0.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Err(err("crius is not running"));
        };
        crate::signal(child.id(), nix::sys::signal::Signal::SIGTERM);
        // Waiting blocks; keep the runtime's other tasks going meanwhile.
        let (status, child) = tokio::task::spawn_blocking(move || {
            let status = wait_bounded(&mut child, STOP_TIMEOUT);
            (status, child)
        })
        .await
        .context(|| "wait for crius to exit")?;
        match status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(err(format!(
                "crius exited with {status} after SIGTERM\n{}",
                self.log_tail(40)
            ))),
            None => {
                self.child = Some(child);
                Err(err(format!(
                    "crius did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.log_tail(40)
                )))
            }
        }
    }
}

impl Drop for Crius {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(60));
        }
    }
}

/// `$PATH` plus the system dirs where runc and friends live.
fn search_path() -> String {
    let mut path = std::env::var("PATH").unwrap_or_default();
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !path.split(':').any(|d| d == dir) {
            if !path.is_empty() {
                path.push(':');
            }
            path.push_str(dir);
        }
    }
    path
}

fn endpoint() -> Endpoint {
    // The URI is a placeholder: the connector dials the unix socket.
    Endpoint::from_static("http://[::]")
}

fn connector(
    socket: PathBuf,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<UnixStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TokioIo<UnixStream>>> + Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |_: Uri| {
        let socket = socket.clone();
        async move { Ok(TokioIo::new(UnixStream::connect(socket).await?)) }
    })
}

/// A gRPC channel to the unix socket `socket` (connected now).
pub async fn connect_unix(socket: &Path) -> Result<Channel> {
    endpoint()
        .connect_with_connector(connector(socket.to_path_buf()))
        .await
        .context(|| format!("connect to {}", socket.display()))
}

fn lazy_channel(socket: PathBuf) -> Channel {
    endpoint().connect_with_connector_lazy(connector(socket))
}
