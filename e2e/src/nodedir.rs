//! The private corner of the host one test's daemon lives in: a temp dir
//! with root, state, socket, logs and CNI config, a unique bridge name, pod
//! subnet and cgroup parent — and the cleanup that removes all of it.

use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::host::{
    bridge_ports, cgroup_descendants, cgroup_dirs, link_exists, mounts_under, processes_tied_to,
    remove_iptables_rules_of,
};
use crate::{Context, Result, err, random_hex, signal, wait_bounded};

/// The OCI runtimes crius drives; their `--root` is `<state>/runtime/<name>`.
pub(crate) const OCI_RUNTIMES: &[&str] = &["runc", "crun"];

/// A test's directory and names (see the module docs). Dropping it kills
/// every process tied to it, deletes leftover runc/crun containers,
/// unmounts everything under it, deletes its bridge and cgroups and removes
/// the directory.
#[derive(Debug)]
pub struct NodeDir {
    id: String,
    path: PathBuf,
    /// Where root and state are: `path`, or a directory below it.
    base: PathBuf,
    subnet_octet: u8,
    cni: bool,
    /// The daemon runs the systemd cgroup driver: pods' parent is a slice.
    systemd: bool,
}

impl NodeDir {
    /// Creates `/tmp/crius-e2e-<id>` and its layout. With `cni`, writes a
    /// bridge + portmap conflist for a subnet free on this host; without,
    /// leaves the CNI config dir empty.
    pub fn create(cni: bool) -> Result<NodeDir> {
        Self::create_nested(cni, "")
    }

    /// [`Self::create`] with root and state under `nest` (a relative
    /// path, several levels if need be) in the temp dir: long paths, to
    /// try the kernel's fixed-size limits on them.
    pub fn create_nested(cni: bool, nest: &str) -> Result<NodeDir> {
        if Path::new(nest).is_absolute() {
            return Err(err(format!("nest {nest} is not a relative path")));
        }
        let (id, path) = loop {
            let id = random_hex(3);
            let path = PathBuf::from(format!("/tmp/crius-e2e-{id}"));
            // Names derived from the id must be free too (a crashed run may
            // have left a bridge or cgroup behind).
            if link_exists(&format!("crie2e{id}"))
                || !cgroup_dirs(&format!("/crius-e2e-{id}")).is_empty()
            {
                continue;
            }
            // 0711, as /run and /var/lib are: other users may pass, not
            // list (the access tests run as nobody below it).
            match std::fs::DirBuilder::new().mode(0o711).create(&path) {
                Ok(()) => break (id, path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(err(format!("create {}: {e}", path.display()))),
            }
        };
        let mut dir = NodeDir {
            id,
            base: match nest {
                "" => path.clone(),
                nest => path.join(nest),
            },
            path,
            subnet_octet: 0,
            cni,
            systemd: false,
        };
        for sub in [
            dir.root(),
            dir.state(),
            dir.logs(),
            dir.cni_conf_dir(),
            dir.cni_bin_dir(),
        ] {
            std::fs::create_dir_all(&sub).context(|| format!("create {}", sub.display()))?;
        }
        if cni {
            dir.subnet_octet = free_subnet_octet()?;
            dir.write_conflist()?;
        }
        Ok(dir)
    }

    /// The unique id (6 hex digits) in every name below.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The temp dir, `/tmp/crius-e2e-<id>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `--root` of the daemon.
    pub fn root(&self) -> PathBuf {
        self.base.join("root")
    }

    /// `--state` of the daemon.
    pub fn state(&self) -> PathBuf {
        self.base.join("state")
    }

    /// The CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.path.join("crius.sock")
    }

    /// The daemon's own stdout/stderr log.
    pub fn daemon_log(&self) -> PathBuf {
        self.path.join("crius.log")
    }

    /// Parent of the pods' log directories.
    pub fn logs(&self) -> PathBuf {
        self.path.join("logs")
    }

    /// `--cni-conf-dir` of the daemon.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.path.join("cni/net.d")
    }

    /// A CNI plugin directory of the test's own, searched before the
    /// system's (for fake plugins).
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.path.join("cni/bin")
    }

    /// host-local's `dataDir` (IP reservations).
    pub fn ipam_dir(&self) -> PathBuf {
        self.path.join("cni/ipam")
    }

    /// `--root` dirs of the OCI runtimes crius uses.
    pub fn runtime_roots(&self) -> Vec<PathBuf> {
        OCI_RUNTIMES
            .iter()
            .map(|rt| self.state().join("runtime").join(rt))
            .collect()
    }

    /// Whether a CNI network is configured.
    pub fn has_cni(&self) -> bool {
        self.cni
    }

    /// The CNI network name.
    pub fn network_name(&self) -> String {
        format!("crius-e2e-{}", self.id)
    }

    /// The bridge the CNI bridge plugin creates (≤ 15 chars).
    pub fn bridge(&self) -> String {
        format!("crie2e{}", self.id)
    }

    /// The pod subnet, `10.201.<n>.0/24`.
    pub fn subnet(&self) -> String {
        format!("10.201.{}.0/24", self.subnet_octet)
    }

    /// Whether `ip` is an IPv4 address inside [`Self::subnet`].
    pub fn subnet_contains(&self, ip: &str) -> bool {
        ip.parse::<Ipv4Addr>()
            .is_ok_and(|ip| ip.octets()[..3] == [10, 201, self.subnet_octet])
    }

    /// The cgroup parent tests give their pods: `/crius-e2e-<id>`, or with
    /// the systemd driver the slice `crius_e2e_<id>.slice`.
    pub fn cgroup_parent(&self) -> String {
        match self.systemd {
            false => format!("/crius-e2e-{}", self.id),
            true => format!("crius_e2e_{}.slice", self.id),
        }
    }

    /// [`Self::cgroup_parent`] as a cgroupfs path (a top-level slice's
    /// cgroup is `/<name>.slice`): the tree the cleanup and the leak
    /// checker look in.
    pub fn cgroup_tree(&self) -> String {
        match self.systemd {
            false => self.cgroup_parent(),
            true => format!("/{}", self.cgroup_parent()),
        }
    }

    /// Has pods' parent be a slice: the daemon runs the systemd driver.
    pub fn set_systemd_cgroups(&mut self, systemd: bool) {
        self.systemd = systemd;
    }

    /// A pod log directory under [`Self::logs`] (created by
    /// [`cri::run_pod`](crate::cri::run_pod), as kubelet does).
    pub fn pod_log_dir(&self, pod: &str) -> PathBuf {
        self.logs().join(pod)
    }

    /// The test's CNI network config: bridge (its own bridge and subnet,
    /// no masquerade) with host-local, then portmap. Tests may change it
    /// and write it to [`Self::cni_conf_dir`] themselves.
    pub fn conflist(&self) -> serde_json::Value {
        json!({
            "cniVersion": "1.0.0",
            "name": self.network_name(),
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge(),
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.subnet()}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": self.ipam_dir(),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        })
    }

    fn write_conflist(&self) -> Result<()> {
        let conflist = self.conflist();
        let path = self.cni_conf_dir().join("10-crius-e2e.conflist");
        let text = serde_json::to_string_pretty(&conflist).context(|| "serialize the conflist")?;
        std::fs::write(&path, text).context(|| format!("write {}", path.display()))
    }

    /// Removes everything the test may have left (see the type docs).
    /// Idempotent; errors are reported on stderr, not raised, because it
    /// runs from `Drop`.
    pub fn cleanup(&self) {
        self.delete_oci_containers();
        self.kill_tied_processes();
        for mount in mounts_under(&self.path) {
            if let Err(e) = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("crius-e2e cleanup: umount {}: {e}", mount.display());
            }
        }
        // Host ends of veths die with their netns; delete any a leaked
        // netns kept alive, then the bridge.
        for port in bridge_ports(&self.bridge()) {
            run_quiet(Command::new("ip").args(["link", "del", &port]));
        }
        if link_exists(&self.bridge()) {
            run_quiet(Command::new("ip").args(["link", "del", &self.bridge()]));
        }
        if self.cni {
            remove_iptables_rules_of(&self.network_name());
        }
        self.remove_cgroups();
        self.remove_dir();
    }

    /// What a node restart does to a stopped daemon's world: every
    /// process of the test dies, every mount under its state directory
    /// (namespace pins, rootfs, shm) goes, and so do its cgroups and the
    /// state directory itself (a tmpfs). The root directory stays.
    pub fn simulate_reboot(&self) {
        // Killed at once, a pod's processes are reparented to the host's
        // init, which may reap them lazily: wait (bounded) until none is
        // left, as after a real restart.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            self.kill_tied_processes();
            let left = processes_tied_to(&self.path, &self.cgroup_tree());
            if left.is_empty() || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for mount in mounts_under(&self.state()) {
            if let Err(e) = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("crius-e2e reboot: umount {}: {e}", mount.display());
            }
        }
        self.remove_cgroups();
        if let Err(e) = std::fs::remove_dir_all(self.state()) {
            eprintln!("crius-e2e reboot: remove {}: {e}", self.state().display());
        }
    }

    fn delete_oci_containers(&self) {
        for (runtime, root) in OCI_RUNTIMES.iter().zip(self.runtime_roots()) {
            let Ok(entries) = std::fs::read_dir(&root) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    run_quiet(
                        Command::new(runtime)
                            .arg("--root")
                            .arg(&root)
                            .args(["delete", "--force"])
                            .arg(entry.file_name()),
                    );
                }
            }
        }
    }

    fn kill_tied_processes(&self) {
        let parent = self.cgroup_tree();
        // Paused containers cannot die until thawed: by the v1 freezer's
        // freezer.state, or by cgroup v2's cgroup.freeze in every cgroup
        // (each holds its own state; a frozen ancestor freezes all below).
        for dir in cgroup_dirs(&parent) {
            for cgroup in cgroup_descendants(&dir).into_iter().chain([dir.clone()]) {
                if dir.starts_with("/sys/fs/cgroup/freezer") {
                    let _ = std::fs::write(cgroup.join("freezer.state"), "THAWED");
                } else if cgroup.join("cgroup.freeze").is_file() {
                    let _ = std::fs::write(cgroup.join("cgroup.freeze"), "0");
                }
            }
        }
        // Repeat: a dying monitor or runtime may have forked meanwhile.
        for _ in 0..10 {
            let tied = processes_tied_to(&self.path, &parent);
            if tied.is_empty() {
                return;
            }
            for process in tied {
                signal(process.pid as u32, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn remove_cgroups(&self) {
        if self.systemd {
            // systemd's units go through systemd: stopping the slice stops
            // every unit below it, and their cgroups go with them.
            run_quiet(Command::new("systemctl").args(["stop", &self.cgroup_parent()]));
        }
        for dir in cgroup_dirs(&self.cgroup_tree()) {
            for cgroup in cgroup_descendants(&dir).into_iter().chain([dir]) {
                // A killed process leaves its cgroup a moment after it dies.
                let mut result = std::fs::remove_dir(&cgroup);
                for _ in 0..50 {
                    if result.is_ok() || !cgroup.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    result = std::fs::remove_dir(&cgroup);
                }
                if let (Err(e), true) = (result, cgroup.exists()) {
                    eprintln!("crius-e2e cleanup: rmdir {}: {e}", cgroup.display());
                }
            }
        }
    }

    fn remove_dir(&self) {
        let left = mounts_under(&self.path);
        if !left.is_empty() {
            // Never recurse through a mount: it could reach host files.
            eprintln!(
                "crius-e2e cleanup: keeping {} because of mounts {left:?}",
                self.path.display()
            );
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && self.path.exists()
        {
            eprintln!("crius-e2e cleanup: remove {}: {e}", self.path.display());
        }
    }
}

impl Drop for NodeDir {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Runs a cleanup command quietly, bounded in time; failures are expected
/// (the thing may already be gone).
fn run_quiet(command: &mut Command) {
    let spawned = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Ok(mut child) = spawned
        && wait_bounded(&mut child, Duration::from_secs(30)).is_none()
    {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A third octet n such that 10.201.n.0/24 is routed nowhere on this host
/// and claimed by no other live test's conflist.
fn free_subnet_octet() -> Result<u8> {
    let routes = std::fs::read_to_string("/proc/net/route").context(|| "read /proc/net/route")?;
    let routed: Vec<(u32, u32)> = routes
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Destination and mask are little-endian hex.
            let dest = u32::from_str_radix(fields.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?.swap_bytes();
            Some((dest, mask))
        })
        .filter(|&(_, mask)| mask != 0)
        .collect();
    for _ in 0..256 {
        let mut byte = [0u8; 1];
        let _ = getrandom::fill(&mut byte);
        let octet = byte[0];
        let net = u32::from(Ipv4Addr::new(10, 201, octet, 0));
        let overlaps = routed.iter().any(|&(dest, mask)| {
            let common = mask & 0xffff_ff00;
            dest & common == net & common
        });
        if !overlaps && !claimed_by_another_test(octet) {
            return Ok(octet);
        }
    }
    Err(err("no free 10.201.x.0/24 subnet for the test CNI network"))
}

fn claimed_by_another_test(octet: u8) -> bool {
    let needle = format!("\"10.201.{octet}.0/24\"");
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return false;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("crius-e2e-"))
        .filter_map(|e| std::fs::read_dir(e.path().join("cni/net.d")).ok())
        .flat_map(|confs| confs.flatten())
        .any(|conf| std::fs::read_to_string(conf.path()).is_ok_and(|t| t.contains(&needle)))
}
