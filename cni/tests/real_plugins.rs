//! The facade against the real plugins in /usr/lib/cni (bridge, host-local,
//! portmap, loopback) in a real pinned namespace. Needs root; skipped
//! otherwise. Every test uses its own bridge, subnet, host port, container
//! id and temp dir, and a guard cleans up even when an assertion fails.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crius_cni::result::Cidr;
use crius_cni::{Attachment, Cni, CniOptions, netns};
use serde_json::json;
use sha2::Digest;

const PLUGIN_DIR: &str = "/usr/lib/cni";

/// These tests need root and the plugins; without them they fail, never
/// skip (`e2e/run-tests.sh` installs the plugins and runs as root).
fn require_prerequisites() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root: it creates network namespaces"
    );
    assert!(
        Path::new(PLUGIN_DIR).join("bridge").exists(),
        "no CNI plugins in {PLUGIN_DIR}: install containernetworking-plugins"
    );
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

/// A /24 in 10.200.0.0/16 that no host route uses yet.
fn free_subnet() -> u8 {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap();
    loop {
        let x = random_bytes::<1>()[0];
        // /proc/net/route holds destinations as little-endian hex.
        let dest = format!("{:08X}", u32::from_le_bytes([10, 200, x, 0]));
        if !routes
            .lines()
            .any(|l| l.split('\t').nth(1) == Some(dest.as_str()))
        {
            return x;
        }
    }
}

/// One test's world: temp dir, config, bridge, namespace, attachment.
/// Drop tears everything down, whatever the test did or did not finish.
struct Testbed {
    tmp: tempfile::TempDir,
    cni: Cni,
    att: Attachment,
    network: String,
    bridge: String,
    subnet: Cidr,
    host_port: u16,
}

impl Testbed {
    /// bridge (+ host-local) and, with `portmap`, portmap with one mapping;
    /// plus the loopback plugin unless `loopback_plugin` is false.
    fn new(portmap: bool) -> Testbed {
        Self::with(portmap, true)
    }

    fn with(portmap: bool, loopback_plugin: bool) -> Testbed {
        let tmp = tempfile::tempdir().unwrap();
        let tag = hex::encode(random_bytes::<3>());
        let bridge = format!("crtest{tag}");
        let network = format!("crtest-{tag}");
        let x = free_subnet();
        let subnet: Cidr = format!("10.200.{x}.0/24").parse().unwrap();
        let host_port = 20000 + u16::from_le_bytes(random_bytes::<2>()) % 20000;
        let conf_dir = tmp.path().join("net.d");
        std::fs::create_dir_all(&conf_dir).unwrap();
        let mut conflist = json!({
            "cniVersion": "1.0.0",
            "name": network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": subnet.to_string()}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": tmp.path().join("ipam").display().to_string()
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        if !portmap {
            conflist["plugins"].as_array_mut().unwrap().pop();
        }
        std::fs::write(conf_dir.join("10-test.conflist"), conflist.to_string()).unwrap();
        let cni = Cni::new(CniOptions {
            conf_dir,
            bin_dirs: vec![PLUGIN_DIR.into()],
            cache_dir: tmp.path().join("cache"),
            plugin_timeout: Duration::from_secs(60),
            loopback_plugin,
        });
        let att = Attachment {
            container_id: format!("crius-cni-test-{}", hex::encode(random_bytes::<6>())),
            netns: tmp.path().join("netns"),
            ifname: "eth0".into(),
            args: vec![("IgnoreUnknown".into(), "1".into())],
            capability_args: json!({"portMappings": [
                {"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}
            ]})
            .as_object()
            .unwrap()
            .clone(),
        };
        netns::create(&att.netns).unwrap();
        Testbed {
            tmp,
            cni,
            att,
            network,
            bridge,
            subnet,
            host_port,
        }
    }

    fn pin(&self) -> &Path {
        &self.att.netns
    }

    fn allocation(&self, ip: IpAddr) -> PathBuf {
        self.tmp
            .path()
            .join("ipam")
            .join(&self.network)
            .join(ip.to_string())
    }

    fn bridge_ports(&self) -> Vec<String> {
        match std::fs::read_dir(format!("/sys/class/net/{}/brif", self.bridge)) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// portmap's per-container DNAT chain (utils.MustFormatChainNameWithPrefix).
    fn dnat_chain(&self) -> String {
        let hash = sha2::Sha512::digest(format!("{}{}", self.network, self.att.container_id));
        format!("CNI-DN-{}", hex::encode(hash))[..28].to_string()
    }

    /// Lines of the nat table that belong to this test's container.
    fn nat_rules(&self) -> Vec<String> {
        let out = Command::new("iptables-save")
            .args(["-t", "nat"])
            .output()
            .unwrap();
        let chain = self.dnat_chain();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&self.att.container_id) || l.contains(&chain))
            .map(str::to_string)
            .collect()
    }

    /// The files in the cache directory, its calls lock aside.
    fn cache_files(&self) -> usize {
        std::fs::read_dir(self.tmp.path().join("cache"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name() != ".calls.lock")
                    .count()
            })
            .unwrap_or(0)
    }

    /// `ip -o <args>` run inside the namespace.
    fn ip_in_netns(&self, args: &[&str]) -> String {
        let out = netns::run_in(self.pin(), || {
            Command::new("ip").arg("-o").args(args).output()
        })
        .unwrap()
        .unwrap();
        assert!(out.status.success(), "ip {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Teardown is async and Drop is not: run it on a runtime of its own
        // on a fresh thread (a test's runtime cannot be blocked on).
        let cni = self.cni.clone();
        let att = self.att.clone();
        let torn = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(cni.teardown(&att))
                .map_err(|e| e.to_string())
        })
        .join();
        if !matches!(torn, Ok(Ok(()))) {
            eprintln!("cleanup: teardown failed: {torn:?}");
        }
        if let Err(e) = netns::remove(self.pin()) {
            eprintln!("cleanup: {e}");
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn bridge_and_portmap_attach_and_detach_without_leftovers() {
    require_prerequisites();
    let t = Testbed::new(true);
    let result = t.cni.setup(&t.att).await.unwrap();

    let ip = result.first_ipv4().expect("an IPv4 address");
    assert!(t.subnet.contains(ip), "{ip} not in {}", t.subnet);
    assert_eq!(result.sandbox_ips("eth0").next(), Some(ip));
    let links = t.ip_in_netns(&["link", "show"]);
    let lo = links
        .lines()
        .find(|l| l.contains(" lo: "))
        .unwrap_or_else(|| panic!("no lo in {links}"));
    assert!(lo.contains(",UP"), "lo not up: {lo}");
    assert!(
        links.lines().any(|l| l.contains(" eth0@")),
        "no eth0 in {links}"
    );
    let addrs = t.ip_in_netns(&["-4", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("{ip}/24")), "{addrs}");

    assert!(t.allocation(ip).exists(), "host-local allocation");
    assert_eq!(t.bridge_ports().len(), 1, "one veth on {}", t.bridge);
    let rules = t.nat_rules();
    assert!(
        rules
            .iter()
            .any(|l| l.contains(&format!("--dport {}", t.host_port))),
        "no DNAT for port {}: {rules:?}",
        t.host_port
    );
    assert_eq!(t.cache_files(), 2, "main network and loopback cached");

    t.cni.teardown(&t.att).await.unwrap();
    assert_eq!(t.cache_files(), 0);
    assert!(!t.allocation(ip).exists(), "allocation released");
    assert!(
        t.bridge_ports().is_empty(),
        "veth left: {:?}",
        t.bridge_ports()
    );
    assert!(
        t.nat_rules().is_empty(),
        "portmap left: {:?}",
        t.nat_rules()
    );
    let links = t.ip_in_netns(&["link", "show"]);
    assert!(!links.contains(" eth0@"), "{links}");

    // Idempotent.
    t.cni.teardown(&t.att).await.unwrap();
}

#[tokio::test]
async fn teardown_after_the_namespace_is_gone_still_releases_everything() {
    require_prerequisites();
    let t = Testbed::new(true);
    let result = t.cni.setup(&t.att).await.unwrap();
    let ip = result.first_ipv4().unwrap();
    assert!(!t.nat_rules().is_empty());

    netns::remove(t.pin()).unwrap();
    assert!(!t.pin().exists());
    t.cni.teardown(&t.att).await.unwrap();
    assert_eq!(t.cache_files(), 0);
    assert!(!t.allocation(ip).exists(), "allocation released");
    assert!(
        t.nat_rules().is_empty(),
        "portmap left: {:?}",
        t.nat_rules()
    );
    // The veth dies with the namespace, which the kernel frees in the
    // background: wait for it rather than race it.
    for _ in 0..3000 {
        if t.bridge_ports().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        t.bridge_ports().is_empty(),
        "veth left: {:?}",
        t.bridge_ports()
    );
    t.cni.teardown(&t.att).await.unwrap();
}

// Not with portmap: its CHECK (plugins <= 1.2) fails for IPv4-only
// attachments (containernetworking/plugins#819).
#[tokio::test]
async fn check_passes_while_attached_and_fails_once_eth0_is_gone() {
    require_prerequisites();
    let t = Testbed::new(false);
    t.cni.setup(&t.att).await.unwrap();
    t.cni.check(&t.att).await.unwrap();

    t.ip_in_netns(&["link", "del", "eth0"]);
    let err = t.cni.check(&t.att).await.unwrap_err();
    assert!(
        matches!(err, crius_cni::Error::Plugin { ref plugin, command: "CHECK", .. } if plugin == "bridge"),
        "{err}"
    );
    t.cni.teardown(&t.att).await.unwrap();
    assert_eq!(t.cache_files(), 0);
}

#[test]
fn pinned_namespace_is_separate_and_removable() {
    require_prerequisites();
    let tmp = tempfile::tempdir().unwrap();
    let pin = tmp.path().join("ns");
    netns::create(&pin).unwrap();
    struct Unpin<'a>(&'a Path);
    impl Drop for Unpin<'_> {
        fn drop(&mut self) {
            let _ = netns::remove(self.0);
        }
    }
    let _unpin = Unpin(&pin);

    // A new namespace has only lo, and it is up.
    let flags = netns::run_in(&pin, || {
        Command::new("ip")
            .args(["-o", "link", "show", "lo"])
            .output()
    })
    .unwrap()
    .unwrap();
    let flags = String::from_utf8_lossy(&flags.stdout);
    assert!(flags.contains(",UP"), "{flags}");
    let dev = netns::run_in(&pin, || {
        std::fs::read_to_string("/proc/thread-self/net/dev")
    })
    .unwrap()
    .unwrap();
    let ifaces: Vec<_> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, ["lo"]);
    let inside = netns::run_in(&pin, || std::fs::read_link("/proc/thread-self/ns/net"))
        .unwrap()
        .unwrap();
    let outside = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    assert_ne!(inside, outside);
    // This thread was never moved.
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        outside
    );

    assert!(netns::create(&pin).is_err(), "pin exists already");
    netns::remove(&pin).unwrap();
    assert!(!pin.exists());
    netns::remove(&pin).unwrap();
}

#[tokio::test]
async fn without_the_loopback_plugin_lo_is_up_and_nothing_is_cached_for_it() {
    require_prerequisites();
    let t = Testbed::with(false, false);
    t.cni.setup(&t.att).await.unwrap();
    let links = t.ip_in_netns(&["link", "show", "lo"]);
    assert!(links.contains(",UP"), "lo not up: {links}");
    assert_eq!(t.cache_files(), 1, "only the main network is cached");
    t.cni.check(&t.att).await.unwrap();
    t.cni.teardown(&t.att).await.unwrap();
    assert_eq!(t.cache_files(), 0);
    assert!(t.bridge_ports().is_empty(), "{:?}", t.bridge_ports());
}
