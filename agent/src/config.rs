//! crius.toml and the command line. Every option has a built-in default,
//! so crius runs with no file at all; flags override the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use crius_runtime::config::{CniSettings, RegistrySettings, RuntimeSettings};
use serde::{Deserialize, Serialize};

/// Where crius looks for its config when `--config` is not given; a
/// missing file there is not an error.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/crius/crius.toml";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole configuration (crius.toml).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Persistent root directory.
    pub root: PathBuf,
    /// Volatile state directory.
    pub state: PathBuf,
    /// The CRI socket; empty means `<state>/crius.sock`.
    pub listen: PathBuf,
    /// `host:port` of the Prometheus endpoint, or "none".
    pub metrics_listen: String,
    /// Log level or tracing filter ("info", "crius=debug,info" …).
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// OCI runtimes and containers.
    pub runtime: RuntimeSettings,
    /// Pod networking.
    pub cni: CniSettings,
    /// Registries.
    pub registry: RegistrySettings,
    /// The streaming server (Exec, Attach, PortForward).
    pub streaming: StreamingSettings,
    /// Limits of the CRI socket.
    pub grpc: GrpcSettings,
}

/// The `[grpc]` table: what clients of the CRI socket may make crius hold.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcSettings {
    /// Connections at once; past it, one idle at least
    /// `yield_after_idle_secs` gives way to a new one, or the new one is
    /// closed as it comes.
    pub max_connections: usize,
    /// Seconds a connection must have had no call under way to give its
    /// place to a new one at the cap; 0: any idle one.
    pub yield_after_idle_secs: u64,
    /// Calls one connection may have under way at once.
    pub max_concurrent_streams: u32,
    /// The largest request message, bytes.
    pub max_request_bytes: usize,
    /// The largest response message, bytes.
    pub max_response_bytes: usize,
    /// Seconds without traffic after which a connection is pinged.
    pub keepalive_interval_secs: u64,
    /// Seconds a ping may go unanswered before the connection is closed.
    pub keepalive_timeout_secs: u64,
    /// Seconds a new connection has to begin HTTP/2.
    pub handshake_timeout_secs: u64,
}

impl Default for GrpcSettings {
    fn default() -> Self {
        let messages = crius_cri::MessageLimits::default();
        GrpcSettings {
            max_connections: 128,
            yield_after_idle_secs: 5,
            max_concurrent_streams: 256,
            max_request_bytes: messages.max_request,
            max_response_bytes: messages.max_response,
            keepalive_interval_secs: 60,
            keepalive_timeout_secs: 20,
            handshake_timeout_secs: 10,
        }
    }
}

/// The `[streaming]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingSettings {
    /// `host:port` to listen on; port 0 picks a free one.
    pub address: String,
    /// TLS certificate chain (PEM); empty for plain HTTP.
    pub tls_cert: PathBuf,
    /// TLS private key (PEM); empty for plain HTTP.
    pub tls_key: PathBuf,
    /// Seconds without traffic after which a session is closed.
    pub idle_timeout_secs: u64,
    /// Seconds a client has to open a session's streams.
    pub stream_creation_timeout_secs: u64,
    /// Seconds a new connection has for its TLS handshake and request
    /// header.
    pub header_timeout_secs: u64,
    /// Connections not yet streaming at once; more are closed as they come.
    pub max_connections: usize,
}

impl Default for StreamingSettings {
    fn default() -> Self {
        let d = crius_cri::streaming::StreamingConfig::default();
        StreamingSettings {
            address: "127.0.0.1:0".into(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            idle_timeout_secs: 4 * 3600,
            stream_creation_timeout_secs: 30,
            header_timeout_secs: d.header_timeout.as_secs(),
            max_connections: d.max_connections,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: "/var/lib/crius".into(),
            state: "/run/crius".into(),
            listen: PathBuf::new(),
            metrics_listen: "127.0.0.1:9191".into(),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            runtime: RuntimeSettings::default(),
            cni: CniSettings::default(),
            registry: RegistrySettings::default(),
            streaming: StreamingSettings::default(),
            grpc: GrpcSettings::default(),
        }
    }
}

/// crius: a Kubernetes Container Runtime Interface (CRI v1) daemon.
#[derive(Debug, Parser)]
#[command(version = crate::metrics::LONG_VERSION, about)]
pub struct Cli {
    /// Config file (TOML). Default: /etc/crius/crius.toml if it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Persistent root directory [default: /var/lib/crius].
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Volatile state directory [default: /run/crius].
    #[arg(long, global = true, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// CRI socket path [default: <state>/crius.sock].
    #[arg(long, global = true, value_name = "SOCKET")]
    pub listen: Option<PathBuf>,
    /// Prometheus endpoint host:port, or "none" [default: 127.0.0.1:9191].
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// CNI network config directory [default: /etc/cni/net.d].
    #[arg(long, global = true, value_name = "DIR")]
    pub cni_conf_dir: Option<PathBuf>,
    /// CNI plugin directory; repeat for several, searched in order
    /// [default: /opt/cni/bin, /usr/lib/cni].
    #[arg(long, global = true, value_name = "DIR")]
    pub cni_bin_dir: Vec<PathBuf>,
    /// Log level or filter [default: info].
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format [default: text].
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Who makes the cgroup tree: systemd, cgroupfs, or auto (systemd
    /// where it is PID 1) [default: auto].
    #[arg(long, global = true, value_name = "DRIVER", value_parser = ["auto", "cgroupfs", "systemd"])]
    pub cgroup_driver: Option<String>,
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `crius <command>`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Prints the configuration in effect (the file, the flags over it, the
    /// defaults for the rest), every option with its value and where the
    /// value came from, as TOML; exits 2 if it is not usable.
    Config {
        /// Only checks FILE (as `--config FILE` would load it): prints
        /// "ok" and exits 0, or the reason and exits 2.
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
    },
}

impl Cli {
    /// The options the flags set, by their config key.
    fn flagged(&self) -> Vec<&'static str> {
        let set = [
            ("root", self.root.is_some()),
            ("state", self.state.is_some()),
            ("listen", self.listen.is_some()),
            ("metrics_listen", self.metrics_listen.is_some()),
            ("cni.conf_dir", self.cni_conf_dir.is_some()),
            ("cni.bin_dirs", !self.cni_bin_dir.is_empty()),
            ("log_level", self.log_level.is_some()),
            ("log_format", self.log_format.is_some()),
            ("runtime.cgroup_driver", self.cgroup_driver.is_some()),
        ];
        set.into_iter()
            .filter(|(_, s)| *s)
            .map(|(k, _)| k)
            .collect()
    }
}

/// Whether the dotted `key` (`cni.conf_dir`) is set in `table`.
fn lookup(table: &toml::Table, key: &str) -> bool {
    let mut t = table;
    let mut parts = key.split('.').peekable();
    while let Some(p) = parts.next() {
        match (t.get(p), parts.peek()) {
            (Some(_), None) => return true,
            (Some(toml::Value::Table(inner)), Some(_)) => t = inner,
            _ => return false,
        }
    }
    false
}

/// A config that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid crius TOML.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its place.
        message: String,
    },
    /// A value is not usable.
    #[error("config: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses crius.toml text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The config a command line asks for: the file (named, or the default
    /// one if present, or none), then the flags over it.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        Ok(Self::load_explained(cli)?.0)
    }

    /// [`Config::load`], with the file read (its path and text, if any).
    fn load_explained(cli: &Cli) -> Result<(Config, Option<(PathBuf, String)>), ConfigError> {
        let (path, required) = match &cli.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let (mut config, file) = match std::fs::read_to_string(&path) {
            Ok(text) => (Config::parse(&text, &path)?, Some((path, text))),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                (Config::default(), None)
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        config.apply(cli);
        config.validate()?;
        Ok((config, file))
    }

    /// What `crius config` prints: every option of the configuration in
    /// effect as `key = value`, each table under its header, each line
    /// saying where its value came from (`flag`, the file, `default`).
    pub fn explain(cli: &Cli) -> Result<String, ConfigError> {
        let (config, file) = Self::load_explained(cli)?;
        let effective = toml::Value::try_from(&config)
            .map_err(|e| ConfigError::Invalid(format!("print the configuration: {e}")))?;
        let in_file: Option<toml::Table> = file.as_ref().and_then(|(_, t)| t.parse().ok());
        let flagged = cli.flagged();
        let mut out = match &file {
            Some((path, _)) => format!(
                "# crius configuration in effect: {}, then flags\n",
                path.display()
            ),
            None => {
                "# crius configuration in effect: no file, built-in defaults, then flags\n".into()
            }
        };
        let source = |key: &str| {
            if flagged.contains(&key) {
                "flag".to_string()
            } else if in_file.as_ref().is_some_and(|t| lookup(t, key)) {
                "file".to_string()
            } else {
                "default".to_string()
            }
        };
        let toml::Value::Table(top) = effective else {
            return Ok(out);
        };
        // Plain options first, then each table, as TOML wants them.
        for (k, v) in top.iter().filter(|(_, v)| !v.is_table()) {
            out.push_str(&format!("{k} = {v}  # {}\n", source(k)));
        }
        for (table, v) in top.iter().filter(|(_, v)| v.is_table()) {
            out.push_str(&format!("\n[{table}]\n"));
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    let key = format!("{table}.{k}");
                    out.push_str(&format!("{k} = {v}  # {}\n", source(&key)));
                }
            }
        }
        Ok(out)
    }

    fn apply(&mut self, cli: &Cli) {
        if let Some(v) = &cli.root {
            self.root = v.clone();
        }
        if let Some(v) = &cli.state {
            self.state = v.clone();
        }
        if let Some(v) = &cli.listen {
            self.listen = v.clone();
        }
        if let Some(v) = &cli.metrics_listen {
            self.metrics_listen = v.clone();
        }
        if let Some(v) = &cli.cni_conf_dir {
            self.cni.conf_dir = v.clone();
        }
        if !cli.cni_bin_dir.is_empty() {
            self.cni.bin_dirs = cli.cni_bin_dir.clone();
        }
        if let Some(v) = &cli.log_level {
            self.log_level = v.clone();
        }
        if let Some(v) = cli.log_format {
            self.log_format = v;
        }
        if let Some(v) = &cli.cgroup_driver {
            use crius_runtime::config::CgroupDriverChoice;
            self.runtime.cgroup_driver = match v.as_str() {
                "systemd" => CgroupDriverChoice::Systemd,
                "cgroupfs" => CgroupDriverChoice::Cgroupfs,
                _ => CgroupDriverChoice::Auto,
            };
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (name, p) in [("root", &self.root), ("state", &self.state)] {
            if !p.is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "{name} {} must be an absolute path",
                    p.display()
                )));
            }
        }
        self.metrics_addr()?;
        self.streaming_config()?;
        self.grpc_limits()?;
        Ok(())
    }

    /// The CRI socket's limits.
    pub fn grpc_limits(&self) -> Result<crate::server::GrpcLimits, ConfigError> {
        let g = &self.grpc;
        for (name, value) in [
            ("max_connections", g.max_connections as u64),
            (
                "max_concurrent_streams",
                u64::from(g.max_concurrent_streams),
            ),
            ("max_request_bytes", g.max_request_bytes as u64),
            ("max_response_bytes", g.max_response_bytes as u64),
            ("keepalive_interval_secs", g.keepalive_interval_secs),
            ("keepalive_timeout_secs", g.keepalive_timeout_secs),
            ("handshake_timeout_secs", g.handshake_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("grpc.{name} must be > 0")));
            }
        }
        // tokio's semaphore holds at most usize::MAX >> 3 permits.
        if g.max_connections > 1 << 20 {
            return Err(ConfigError::Invalid(format!(
                "grpc.max_connections {} is over 1048576",
                g.max_connections
            )));
        }
        Ok(crate::server::GrpcLimits {
            max_connections: g.max_connections,
            yield_after_idle: std::time::Duration::from_secs(g.yield_after_idle_secs),
            max_concurrent_streams: g.max_concurrent_streams,
            messages: crius_cri::MessageLimits {
                max_request: g.max_request_bytes,
                max_response: g.max_response_bytes,
            },
            keepalive_interval: std::time::Duration::from_secs(g.keepalive_interval_secs),
            keepalive_timeout: std::time::Duration::from_secs(g.keepalive_timeout_secs),
            handshake_timeout: std::time::Duration::from_secs(g.handshake_timeout_secs),
        })
    }

    /// The streaming server's settings.
    pub fn streaming_config(&self) -> Result<crius_cri::streaming::StreamingConfig, ConfigError> {
        let s = &self.streaming;
        let addr: SocketAddr = s.address.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "streaming.address {:?} is not host:port",
                s.address
            ))
        })?;
        let tls = match (
            s.tls_cert.as_os_str().is_empty(),
            s.tls_key.as_os_str().is_empty(),
        ) {
            (true, true) => None,
            (false, false) => Some(crius_cri::streaming::TlsFiles {
                cert: s.tls_cert.clone(),
                key: s.tls_key.clone(),
            }),
            _ => {
                return Err(ConfigError::Invalid(
                    "streaming.tls_cert and streaming.tls_key go together".into(),
                ));
            }
        };
        for (name, secs) in [
            ("idle_timeout_secs", s.idle_timeout_secs),
            (
                "stream_creation_timeout_secs",
                s.stream_creation_timeout_secs,
            ),
            ("header_timeout_secs", s.header_timeout_secs),
            ("max_connections", s.max_connections as u64),
        ] {
            if secs == 0 {
                return Err(ConfigError::Invalid(format!(
                    "streaming.{name} must be > 0"
                )));
            }
        }
        Ok(crius_cri::streaming::StreamingConfig {
            addr,
            tls,
            idle_timeout: std::time::Duration::from_secs(s.idle_timeout_secs),
            stream_creation_timeout: std::time::Duration::from_secs(s.stream_creation_timeout_secs),
            header_timeout: std::time::Duration::from_secs(s.header_timeout_secs),
            max_connections: s.max_connections,
            ..Default::default()
        })
    }

    /// The CRI socket path.
    pub fn socket(&self) -> PathBuf {
        if self.listen.as_os_str().is_empty() {
            self.state.join("crius.sock")
        } else {
            self.listen.clone()
        }
    }

    /// The metrics address; `None` when disabled.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        match self.metrics_listen.as_str() {
            "" | "none" => Ok(None),
            s => s.parse().map(Some).map_err(|_| {
                ConfigError::Invalid(format!("metrics_listen {s:?} is not host:port or \"none\""))
            }),
        }
    }

    /// The runtime's part.
    pub fn runtime_config(&self) -> crius_runtime::Config {
        crius_runtime::Config {
            root: self.root.clone(),
            state: self.state.clone(),
            runtime: self.runtime.clone(),
            cni: self.cni.clone(),
            registry: self.registry.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("crius").chain(args.iter().copied()))
    }

    #[test]
    fn config_says_every_option_with_its_source_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("crius.toml");
        std::fs::write(
            &file,
            "log_level = \"debug\"\n[grpc]\nmax_connections = 7\n[runtime]\nshm_size = \"32m\"\n",
        )
        .unwrap();
        let c = cli(&[
            "--config",
            file.to_str().unwrap(),
            "--root",
            "/srv/crius",
            "config",
        ]);
        assert!(matches!(c.command, Some(Command::Config { check: None })));
        let text = Config::explain(&c).unwrap();
        for line in [
            "root = \"/srv/crius\"  # flag",
            "log_level = \"debug\"  # file",
            "state = \"/run/crius\"  # default",
            "max_connections = 7  # file",
            "shm_size = \"32m\"  # file",
            "[grpc]",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
        // What it prints is crius.toml: read back, the same configuration.
        let back = Config::parse(&text, Path::new("printed")).unwrap();
        let loaded = Config::load(&c).unwrap();
        assert_eq!(
            toml::Value::try_from(&back).unwrap(),
            toml::Value::try_from(&loaded).unwrap()
        );
    }

    #[test]
    fn defaults_without_any_file() {
        let c = Config::load(&cli(&[])).unwrap();
        assert_eq!(c.socket(), Path::new("/run/crius/crius.sock"));
        assert_eq!(c.root, Path::new("/var/lib/crius"));
        assert_eq!(
            c.metrics_addr().unwrap(),
            Some("127.0.0.1:9191".parse().unwrap())
        );
        assert_eq!(c.runtime.default_runtime, "runc");
        assert_eq!(c.cni.conf_dir, Path::new("/etc/cni/net.d"));
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("crius.toml");
        std::fs::write(
            &file,
            "root = \"/srv/crius\"\nlog_level = \"debug\"\n[cni]\nbin_dirs = [\"/a\"]\n[registry]\ninsecure = [\"reg:5000\"]\n",
        )
        .unwrap();
        let c = Config::load(&cli(&[
            "--config",
            file.to_str().unwrap(),
            "--state",
            "/tmp/st",
            "--cni-bin-dir",
            "/b",
            "--cni-bin-dir",
            "/c",
            "--metrics-listen",
            "none",
            "--log-format",
            "json",
        ]))
        .unwrap();
        assert_eq!(c.root, Path::new("/srv/crius"));
        assert_eq!(c.socket(), Path::new("/tmp/st/crius.sock"));
        assert_eq!(c.cni.bin_dirs, [PathBuf::from("/b"), PathBuf::from("/c")]);
        assert_eq!(c.metrics_addr().unwrap(), None);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.registry.insecure, ["reg:5000"]);
    }

    #[test]
    fn bad_files_are_reported_with_their_place() {
        let p = Path::new("/etc/crius/crius.toml");
        let e = Config::parse("roots = \"/x\"\n", p).unwrap_err();
        assert!(e.to_string().contains("roots"), "{e}");
        assert!(e.to_string().contains("/etc/crius/crius.toml"), "{e}");
        let e = Config::parse("[runtime]\ndefault_runtime = 3\n", p).unwrap_err();
        assert!(e.to_string().contains("default_runtime"), "{e}");
        let e = Config::load(&cli(&["--config", "/nonexistent/crius.toml"])).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        let e = Config::load(&cli(&["--metrics-listen", "localhost"])).unwrap_err();
        assert!(e.to_string().contains("metrics_listen"), "{e}");
        let e = Config::load(&cli(&["--root", "relative"])).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
    }

    #[test]
    fn the_shipped_config_file_is_the_default() {
        let text = include_str!("../../deploy/crius.toml");
        let c = Config::parse(text, Path::new("deploy/crius.toml")).unwrap();
        let d = Config::default();
        assert_eq!(c.root, d.root);
        assert_eq!(c.state, d.state);
        assert_eq!(c.socket(), d.socket());
        assert_eq!(c.metrics_listen, d.metrics_listen);
        assert_eq!(c.log_level, d.log_level);
        assert_eq!(c.runtime.default_runtime, d.runtime.default_runtime);
        assert_eq!(
            c.runtime.handlers.keys().collect::<Vec<_>>(),
            d.runtime.handlers.keys().collect::<Vec<_>>()
        );
        assert_eq!(
            c.runtime.default_cgroup_parent,
            d.runtime.default_cgroup_parent
        );
        assert_eq!(c.runtime.cgroup_driver, d.runtime.cgroup_driver);
        assert_eq!(c.runtime.oci_timeout_secs, d.runtime.oci_timeout_secs);
        assert_eq!(c.runtime.shm_size, d.runtime.shm_size);
        assert_eq!(c.runtime.default_ulimits, d.runtime.default_ulimits);
        assert_eq!(c.runtime.pids_limit, d.runtime.pids_limit);
        assert_eq!(c.cni.conf_dir, d.cni.conf_dir);
        assert_eq!(c.cni.bin_dirs, d.cni.bin_dirs);
        assert_eq!(c.cni.plugin_timeout_secs, d.cni.plugin_timeout_secs);
        assert_eq!(c.cni.loopback_plugin, d.cni.loopback_plugin);
        assert_eq!(c.cni.teardown_retry_secs, d.cni.teardown_retry_secs);
        assert_eq!(c.registry, d.registry);
        assert_eq!(c.streaming, d.streaming);
        assert_eq!(c.grpc, d.grpc);
    }

    #[test]
    fn the_shipped_registry_examples_parse() {
        // The commented examples in the [registry] tables, uncommented.
        let text: String = include_str!("../../deploy/crius.toml")
            .lines()
            .map(|l| {
                l.strip_prefix("#   \"")
                    .map_or(l.to_string(), |rest| format!("\"{rest}"))
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::parse(&text, Path::new("deploy/crius.toml")).unwrap();
        assert_eq!(
            c.registry.mirrors["registry.k8s.io"],
            ["http://127.0.0.1:5000"]
        );
        assert_eq!(c.registry.mirrors["docker.io"], ["https://mirror.gcr.io"]);
        assert_eq!(
            c.registry.ca_files["reg.lan:5000"],
            Path::new("/etc/crius/certs/reg.lan.pem")
        );
    }

    #[test]
    fn grpc_settings_are_checked() {
        let p = Path::new("crius.toml");
        let l = Config::default().grpc_limits().unwrap();
        assert_eq!(l.max_connections, 128);
        assert_eq!(l.yield_after_idle, std::time::Duration::from_secs(5));
        assert_eq!(l.messages.max_response, 16 << 20);
        let c = Config::parse(
            "[grpc]\nmax_connections = 4\nhandshake_timeout_secs = 1\nyield_after_idle_secs = 0\n",
            p,
        )
        .unwrap();
        let l = c.grpc_limits().unwrap();
        assert_eq!(l.max_connections, 4);
        assert_eq!(l.yield_after_idle, std::time::Duration::ZERO);
        assert_eq!(l.handshake_timeout, std::time::Duration::from_secs(1));
        for bad in [
            "[grpc]\nmax_connections = 0\n",
            "[grpc]\nmax_request_bytes = 0\n",
            "[grpc]\nkeepalive_timeout_secs = 0\n",
            "[grpc]\nmax_connections = 99999999\n",
        ] {
            let c = Config::parse(bad, p).unwrap();
            let e = c.validate().unwrap_err();
            assert!(e.to_string().contains("grpc."), "{e}");
        }
        assert!(Config::parse("[grpc]\nmax_conections = 1\n", p).is_err());
    }

    #[test]
    fn streaming_settings_are_checked() {
        let p = Path::new("crius.toml");
        let c = Config::default().streaming_config().unwrap();
        assert_eq!(c.addr, "127.0.0.1:0".parse().unwrap());
        assert!(c.tls.is_none());
        let c = Config::parse(
            "[streaming]\naddress = \"[::1]:10010\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n",
            p,
        )
        .unwrap();
        let s = c.streaming_config().unwrap();
        assert_eq!(s.addr.port(), 10010);
        assert_eq!(s.tls.unwrap().cert, Path::new("/c.pem"));
        for bad in [
            "[streaming]\naddress = \"localhost\"\n",
            "[streaming]\ntls_cert = \"/c.pem\"\n",
            "[streaming]\nidle_timeout_secs = 0\n",
            "[streaming]\nheader_timeout_secs = 0\n",
            "[streaming]\nmax_connections = 0\n",
        ] {
            let c = Config::parse(bad, p).unwrap();
            let e = c.validate().unwrap_err();
            assert!(e.to_string().contains("streaming"), "{e}");
        }
    }
}
