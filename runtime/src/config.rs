//! Settings of the runtime, as read from the `[runtime]`, `[cni]` and
//! `[registry]` tables of crius.toml. Every field has a built-in default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the runtime needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Persistent root: images, layers, writable layers, metadata.
    pub root: PathBuf,
    /// Volatile state: pinned namespaces, bundles, monitor files.
    pub state: PathBuf,
    /// OCI runtimes and containers.
    pub runtime: RuntimeSettings,
    /// Pod networking.
    pub cni: CniSettings,
    /// Registries.
    pub registry: RegistrySettings,
}

/// The `[runtime]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// The handler used when a pod names none.
    pub default_runtime: String,
    /// OCI runtimes by RuntimeClass handler name.
    pub handlers: BTreeMap<String, RuntimeHandler>,
    /// The monitor binary; empty means `crius-monitor` beside `crius`,
    /// then on `$PATH`.
    pub monitor_path: PathBuf,
    /// Who makes the cgroup tree: crius itself (`cgroupfs`) or systemd
    /// (`systemd`); `auto` means systemd where it is PID 1, as kubeadm
    /// and containerd expect.
    pub cgroup_driver: CgroupDriverChoice,
    /// The cgroup parent of pods that name none: a cgroupfs path, or a
    /// slice with the systemd driver; empty means the driver's own
    /// (`/crius`, `crius.slice`).
    pub default_cgroup_parent: String,
    /// Timeout of a single OCI runtime call, seconds.
    pub oci_timeout_secs: u64,
    /// Size of a pod's /dev/shm (a quantity such as `64Mi`); a pod may ask
    /// for another with the `crius.io/shm-size` annotation.
    pub shm_size: String,
    /// Resource limits of every container's process, `name=soft:hard`
    /// (`nofile=1024:4096`); empty keeps what the monitor inherits.
    pub default_ulimits: Vec<String>,
    /// The most processes each container may have; 0 means no limit.
    pub pids_limit: i64,
}

/// The `[runtime] cgroup_driver` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriverChoice {
    /// systemd where it is PID 1, else cgroupfs.
    #[default]
    Auto,
    /// crius writes the cgroup tree itself.
    Cgroupfs,
    /// systemd makes the cgroup tree, over D-Bus.
    Systemd,
}

/// One OCI runtime (a RuntimeClass handler).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandler {
    /// The runtime binary: a path, or a name looked up on `$PATH`.
    pub path: PathBuf,
    /// Its `--root` state directory; empty means `<state>/runtime/<name>`.
    #[serde(default)]
    pub root: PathBuf,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        let handler = |p: &str| RuntimeHandler {
            path: PathBuf::from(p),
            root: PathBuf::new(),
        };
        RuntimeSettings {
            default_runtime: "runc".into(),
            handlers: BTreeMap::from([
                ("runc".to_string(), handler("runc")),
                ("crun".to_string(), handler("crun")),
            ]),
            monitor_path: PathBuf::new(),
            cgroup_driver: CgroupDriverChoice::Auto,
            default_cgroup_parent: String::new(),
            oci_timeout_secs: 60,
            shm_size: "64Mi".into(),
            default_ulimits: Vec::new(),
            pids_limit: 0,
        }
    }
}

/// The `[cni]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CniSettings {
    /// Where network configs (`.conflist`, `.conf`, `.json`) are read.
    pub conf_dir: PathBuf,
    /// Where plugin binaries are looked up, in order.
    pub bin_dirs: Vec<PathBuf>,
    /// Timeout of a single plugin call, seconds.
    pub plugin_timeout_secs: u64,
    /// Run the `loopback` plugin for each pod's `lo` (as containerd does);
    /// when false, crius brings `lo` up itself as it creates the pod's
    /// network namespace, one plugin call less per pod.
    pub loopback_plugin: bool,
    /// How often a failed pod network teardown is retried, seconds.
    pub teardown_retry_secs: u64,
}

impl Default for CniSettings {
    fn default() -> Self {
        CniSettings {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            plugin_timeout_secs: 60,
            loopback_plugin: false,
            teardown_retry_secs: 30,
        }
    }
}

/// The `[registry]` table and its sub-tables.
///
/// Registry hosts are named as in image references: `host` or
/// `host:port` (`docker.io`, `registry.k8s.io`, `reg.lan:5000`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    /// Registries (`host` or `host:port`) reached over plain HTTP. Loopback
    /// registries (localhost, 127.0.0.0/8, ::1) always are, as with Docker.
    pub insecure: Vec<String>,
    /// Registries reached over TLS without verifying their certificate.
    pub skip_verify: Vec<String>,
    /// A Docker `config.json` whose `auths` give credentials for pulls
    /// that carry none (and for mirrors); empty means none.
    pub auth_file: PathBuf,
    /// A layer download that receives no byte for this long is cancelled,
    /// seconds.
    pub stall_timeout_secs: u64,
    /// A layer download averaging fewer bytes a second than this over
    /// `stall_timeout_secs` is cancelled as stalled too (a registry
    /// trickling bytes); 0 turns the check off.
    pub stall_min_bytes_per_sec: u64,
    /// A registry exchange read whole (the `/v2/` ping, a token, a
    /// manifest or index, an image config) must be over within this, and a
    /// layer download must have its answer's headers within it, seconds.
    pub request_timeout_secs: u64,
    /// The most one layer may unpack to (its uncompressed tar, or the
    /// files it writes if more), MiB; 0 means no limit.
    pub max_layer_unpacked_mib: u64,
    /// The most the layers of one image may unpack to together, MiB; 0
    /// means no limit.
    pub max_image_unpacked_mib: u64,
    /// How often a pull under way logs its progress, seconds.
    pub progress_interval_secs: u64,
    /// Layers of one image downloaded (and unpacked) at the same time.
    pub concurrent_layers: usize,
    /// Mirrors per registry host, tried in order before the registry
    /// itself: `"http://host:port"` (plain HTTP), `"https://host"`, or
    /// `"host[:port]"` (HTTPS unless listed in `insecure` or loopback).
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// PEM files of CA certificates trusted (besides the system's) for a
    /// registry host.
    pub ca_files: BTreeMap<String, PathBuf>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            insecure: Vec::new(),
            skip_verify: Vec::new(),
            auth_file: PathBuf::new(),
            stall_timeout_secs: 60,
            stall_min_bytes_per_sec: 1024,
            request_timeout_secs: 60,
            // Generous: the largest public images (CUDA and ML stacks) have
            // single layers of 5–15 GiB and unpack to 20–50 GiB; a layer
            // over 64 GiB or an image over 128 GiB is far more likely a
            // decompression bomb than an image.
            max_layer_unpacked_mib: 64 << 10,
            max_image_unpacked_mib: 128 << 10,
            progress_interval_secs: 10,
            concurrent_layers: 3,
            mirrors: BTreeMap::new(),
            ca_files: BTreeMap::new(),
        }
    }
}
