//! Pod networking with the real CNI plugins (bridge, host-local, portmap,
//! loopback) and real packets: pods reaching each other, host ports from
//! the host, host-network pods, a failing plugin leaving nothing behind,
//! and NetworkReady following the config directory.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{World, node_ip, set_namespaces};
use crius_e2e::{CriusOptions, cri, find_leaks, free_port};
use k8s_cri::v1::{NamespaceMode, PortMapping, Protocol};
use serde_json::json;

/// How long a test retries a connection that should work.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits (bounded) until the pod's IPv4 UDP stack has dropped a datagram
/// for want of a listener: proof that one arrived.
const UDP_WATCH: &str = r#"while ! awk '/^Udp: [0-9]/ { exit !($3 > 0) }' /proc/net/snmp; do sleep 0.1; done; echo udp-arrived; exec sleep 1000"#;

/// GET / from `addr` until it answers (bounded); the response.
fn http_get_retrying(addr: SocketAddr) -> String {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match crius_e2e::http_get(addr, "/") {
            Ok(r) if r.contains("200") => return r,
            other => assert!(
                Instant::now() < deadline,
                "GET http://{addr}/ did not work within {CONNECT_TIMEOUT:?}: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mapping(protocol: Protocol, container_port: i32, host_port: u16, host_ip: &str) -> PortMapping {
    PortMapping {
        protocol: protocol as i32,
        container_port,
        host_port: i32::from(host_port),
        host_ip: host_ip.into(),
    }
}

/// The NAT rules that mention `id` (portmap tags its rules with the
/// container id).
fn nat_rules_of(id: &str) -> Vec<String> {
    let out = std::process::Command::new("iptables")
        .args(["-w", "-t", "nat", "-S"])
        .output()
        .unwrap();
    assert!(out.status.success(), "iptables -t nat -S: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(id))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn pods_reach_each_other_and_host_ports_reach_a_pod() {
    let mut w = World::start(CriusOptions::default()).await;
    let tcp_port = free_port().unwrap();
    let local_only_port = free_port().unwrap();
    let udp_port = free_udp_port();

    let mut server = w.pod("server");
    server.port_mappings = vec![
        mapping(Protocol::Tcp, 8080, tcp_port, ""),
        mapping(Protocol::Tcp, 8080, local_only_port, "127.0.0.1"),
        mapping(Protocol::Udp, 5353, udp_port, ""),
    ];
    let server_id = w.run_pod(&server).await;
    let server_ip = cri::pod_status(&mut w.rt, &server_id)
        .await
        .unwrap()
        .network
        .unwrap()
        .ip;
    assert!(w.crius.dir().subnet_contains(&server_ip), "{server_ip}");
    w.start_sh(
        &server_id,
        &server,
        "web",
        "mkdir -p /www && echo hello-from-server > /www/index.html && echo serving && \
         exec httpd -f -p 8080 -h /www",
    )
    .await;
    w.wait_for_line(&server, "web", "serving").await;
    w.start_sh(&server_id, &server, "udp", UDP_WATCH).await;
    // Containers of a pod share its network namespace, whose lo is up.
    let local = w
        .run_sh(
            &server_id,
            &server,
            "local",
            "wget -q -O - http://127.0.0.1:8080/",
        )
        .await;
    assert_eq!(local, ["hello-from-server"]);

    // Another pod on the bridge reaches it by IP, with wget and with nc.
    let client = w.pod("client");
    let client_id = w.run_pod(&client).await;
    let fetched = w
        .run_sh(
            &client_id,
            &client,
            "fetch",
            &format!(
                "wget -q -O - http://{server_ip}:8080/; \
                 printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {server_ip} 8080 | tail -n 1"
            ),
        )
        .await;
    assert_eq!(fetched, ["hello-from-server", "hello-from-server"]);

    // The host port, from the host: on loopback and on the node's IP.
    let node = node_ip();
    for addr in [
        SocketAddr::from((Ipv4Addr::LOCALHOST, tcp_port)),
        SocketAddr::from((node, tcp_port)),
        SocketAddr::from((Ipv4Addr::LOCALHOST, local_only_port)),
    ] {
        let response = http_get_retrying(addr);
        assert!(response.contains("hello-from-server"), "{addr}: {response}");
    }
    // A mapping bound to 127.0.0.1 is not forwarded from the node's IP;
    // nothing else listens there.
    let refused = TcpStream::connect_timeout(
        &SocketAddr::from((node, local_only_port)),
        Duration::from_secs(5),
    );
    assert!(refused.is_err(), "{node}:{local_only_port} answered");

    // UDP: datagrams to the host port arrive in the pod.
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let log = w.log_path(&server, "udp");
    while !common::stdout(&log).iter().any(|l| l == "udp-arrived") {
        assert!(Instant::now() < deadline, "no UDP datagram reached the pod");
        socket
            .send_to(b"ping", (Ipv4Addr::LOCALHOST, udp_port))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert!(
        !nat_rules_of(&server_id).is_empty(),
        "portmap made no rules"
    );
    w.remove_pod(&client_id).await;
    w.remove_pod(&server_id).await;
    // The host ports are gone with the pod.
    assert_eq!(nat_rules_of(&server_id), [] as [String; 0]);
    let gone = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, tcp_port)),
        Duration::from_secs(5),
    )
    .and_then(|mut s| {
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut r = String::new();
        s.read_to_string(&mut r)?;
        Ok(r)
    });
    assert!(
        gone.as_ref().map_or(true, |r| !r.contains("hello")),
        "{gone:?}"
    );
    w.finish().await;
}

#[tokio::test]
async fn a_host_network_pod_sees_the_nodes_interfaces() {
    let mut w = World::start(CriusOptions::default()).await;
    // A pod on the bridge first, so that the test's bridge exists.
    let bridged = w.pod("bridged");
    let bridged_id = w.run_pod(&bridged).await;
    let bridge = w.crius.dir().bridge();
    assert!(
        std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists()
    );

    let mut pod = w.pod("hostnet");
    set_namespaces(&mut pod, NamespaceMode::Node, NamespaceMode::Container);
    let id = w.run_pod(&pod).await;
    let status = cri::pod_status(&mut w.rt, &id).await.unwrap();
    assert_eq!(
        status.network.unwrap().ip,
        "",
        "a host-network pod has no IP of its own"
    );
    let lines = w
        .run_sh(
            &id,
            &pod,
            "look",
            "echo links $(ls /sys/class/net); echo name $(hostname); cat /etc/hosts | md5sum",
        )
        .await;
    let links: Vec<&str> = lines[0].split_whitespace().skip(1).collect();
    let node_dev = std::fs::read_to_string("/proc/net/route")
        .unwrap()
        .lines()
        .skip(1)
        .find(|l| l.split('\t').nth(1) == Some("00000000"))
        .and_then(|l| l.split('\t').next().map(str::to_string))
        .unwrap();
    for link in ["lo", node_dev.as_str(), bridge.as_str()] {
        assert!(links.contains(&link), "{link} not in {links:?}");
    }
    let hostname = nix::unistd::gethostname().unwrap();
    assert_eq!(lines[1], format!("name {}", hostname.to_string_lossy()));
    let hosts = std::process::Command::new("md5sum")
        .arg("/etc/hosts")
        .output()
        .unwrap();
    let node_sum = String::from_utf8_lossy(&hosts.stdout);
    assert_eq!(
        lines[2].split_whitespace().next(),
        node_sum.split_whitespace().next(),
        "a host-network pod has the node's /etc/hosts"
    );
    w.remove_pod(&id).await;
    w.remove_pod(&bridged_id).await;
    w.finish().await;
}

/// A plugin that fails ADD, as a broken or refusing plugin would; DEL and
/// CHECK succeed.
const FAILING_PLUGIN: &str = r#"#!/bin/sh
cat > /dev/null
[ "$CNI_COMMAND" = ADD ] || exit 0
printf '{"cniVersion":"1.0.0","code":7,"msg":"crius-e2e refuses this pod","details":"on purpose"}'
exit 1
"#;

#[tokio::test]
async fn a_failing_plugin_leaves_nothing_and_network_ready_follows_the_config() {
    let mut w = World::start(CriusOptions::default()).await;
    let dir = w.crius.dir();
    let conf_file = dir.cni_conf_dir().join("10-crius-e2e.conflist");
    let good = dir.conflist();

    // Chain the failing plugin after bridge and portmap: by then a veth
    // exists and an address is reserved, which the rollback must undo.
    let plugin = dir.cni_bin_dir().join("fail-add");
    std::fs::write(&plugin, FAILING_PLUGIN).unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    wait_until_executable(&plugin);
    let mut bad = good.clone();
    bad["plugins"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "fail-add"}));
    std::fs::write(&conf_file, bad.to_string()).unwrap();

    let mut pod = w.pod("refused");
    pod.port_mappings = vec![mapping(Protocol::Tcp, 80, free_port().unwrap(), "")];
    // A shared PID namespace too: its infra process starts while the
    // plugins run, and must go with the rest.
    set_namespaces(&mut pod, NamespaceMode::Pod, NamespaceMode::Pod);
    let e = cri::run_pod(&mut w.rt, &pod, "").await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("fail-add")
            && text.contains("ADD failed (code 7): crius-e2e refuses this pod: on purpose"),
        "{text}"
    );
    // Nothing of the pod is left: no interface on the bridge, no address
    // reserved, no namespace pin or other mount, no directories, no cache.
    let dir = w.crius.dir();
    let daemon = w.crius.pid().unwrap();
    let leaks: Vec<String> = find_leaks(dir)
        .into_iter()
        .filter(|l| !l.starts_with(&format!("process {daemon} ")))
        .collect();
    assert_eq!(leaks, [] as [String; 0]);
    for sub in ["pods", "cni/cache"] {
        let left: Vec<_> = std::fs::read_dir(dir.state().join(sub))
            .into_iter()
            .chain(std::fs::read_dir(dir.root().join(sub)))
            .flatten()
            .flatten()
            // The CNI client's calls lock is the client's, not the pod's.
            .filter(|e| e.file_name() != ".calls.lock")
            .map(|e| e.path())
            .collect();
        assert_eq!(left, [] as [std::path::PathBuf; 0], "{sub}");
    }
    assert_eq!(cri::pod_ids(&mut w.rt).await.unwrap(), [] as [String; 0]);

    // NetworkReady follows the directory, without a restart.
    let network_ready = async |w: &mut World| {
        cri::runtime_conditions(&mut w.rt).await.unwrap()["NetworkReady"].clone()
    };
    assert!(network_ready(&mut w).await.status);
    std::fs::remove_file(&conf_file).unwrap();
    let cond = network_ready(&mut w).await;
    assert!(!cond.status);
    assert_eq!(cond.reason, "NetworkPluginNotReady");
    std::fs::write(w.crius.dir().cni_conf_dir().join("05-broken.conf"), "{").unwrap();
    let cond = network_ready(&mut w).await;
    assert!(!cond.status);
    assert!(cond.message.contains("05-broken.conf"), "{}", cond.message);
    std::fs::write(&conf_file, good.to_string()).unwrap();
    assert!(network_ready(&mut w).await.status);

    // And the node works again.
    let id = cri::run_pod(&mut w.rt, &pod, "").await.unwrap();
    let ip = cri::pod_status(&mut w.rt, &id)
        .await
        .unwrap()
        .network
        .unwrap()
        .ip;
    assert!(w.crius.dir().subnet_contains(&ip), "{ip}");
    w.remove_pod(&id).await;
    w.finish().await;
}

/// A script just written may fail to exec with ETXTBSY while a process
/// forked by another test thread still holds the write descriptor.
fn wait_until_executable(script: &std::path::Path) {
    for _ in 0..1000 {
        match std::process::Command::new(script)
            .env("CNI_COMMAND", "VERSION")
            .stdin(std::process::Stdio::null())
            .output()
        {
            Ok(_) => return,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("run {}: {e}", script.display()),
        }
    }
    panic!("{} stays busy", script.display());
}

/// The bandwidth plugin's ifb devices on the host.
fn ifb_devices() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("bwp"))
        .collect()
}

/// Deletes the listed links when dropped (a failing test's cleanup).
struct DeleteLinks(Vec<String>);

impl Drop for DeleteLinks {
    fn drop(&mut self) {
        for link in &self.0 {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", link])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// The qdiscs of the host, one per line.
fn qdiscs() -> String {
    let out = std::process::Command::new("tc")
        .args(["qdisc", "show"])
        .output()
        .unwrap();
    assert!(out.status.success(), "tc qdisc show: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn bandwidth_and_ips_reach_the_plugins_and_a_pod_gets_two_address_families() {
    let mut w = World::start(CriusOptions::default()).await;
    let dir = w.crius.dir();
    // Dual stack, and the bandwidth plugin after bridge and portmap. No
    // gateway: the bridge plugin would turn IPv6 forwarding on host-wide.
    let v6_subnet = format!("fd42:{}::/64", &dir.id()[..4]);
    let mut conf = dir.conflist();
    let bridge = &mut conf["plugins"][0];
    bridge["isGateway"] = false.into();
    // host-local honours the ips capability; the bridge hands it over.
    bridge["capabilities"] = json!({"ips": true});
    bridge["ipam"]["ranges"]
        .as_array_mut()
        .unwrap()
        .push(json!([{"subnet": v6_subnet}]));
    bridge["ipam"].as_object_mut().unwrap().remove("routes");
    conf["plugins"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}));
    std::fs::write(
        dir.cni_conf_dir().join("10-crius-e2e.conflist"),
        conf.to_string(),
    )
    .unwrap();

    let mut pod = w.pod("shaped");
    pod.annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "3M".into());
    pod.annotations
        .insert("kubernetes.io/egress-bandwidth".into(), "5M".into());
    let v4 = w.crius.dir().subnet().replace(".0/24", ".77");
    let v6 = v6_subnet.replace("::/64", "::77");
    pod.annotations
        .insert("crius.io/ips".into(), format!("{v4},{v6}"));
    let ifbs_before = ifb_devices();
    let id = w.run_pod(&pod).await;
    let ours: Vec<String> = ifb_devices()
        .into_iter()
        .filter(|d| !ifbs_before.contains(d))
        .collect();
    let _cleanup = DeleteLinks(ours.clone());
    let network = cri::pod_status(&mut w.rt, &id)
        .await
        .unwrap()
        .network
        .unwrap();
    // The addresses asked for, IPv4 first.
    assert_eq!(network.ip, v4, "{network:?}");
    assert_eq!(network.additional_ips.len(), 1, "{network:?}");
    // Compared as addresses: the subnet's group may have a leading zero
    // that the canonical form drops.
    assert_eq!(
        network.additional_ips[0]
            .ip
            .parse::<std::net::IpAddr>()
            .ok(),
        v6.parse().ok(),
        "{network:?}"
    );

    // Ingress shaped on the host side of the pod's veth, egress on an
    // ifb device the plugin made.
    let veth = std::fs::read_dir(format!("/sys/class/net/{}/brif", w.crius.dir().bridge()))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    let all = qdiscs();
    let on_veth: Vec<&str> = all
        .lines()
        .filter(|l| l.contains(&format!("dev {veth} ")))
        .collect();
    assert!(
        on_veth
            .iter()
            .any(|l| l.contains("tbf") && l.contains("rate 3Mbit")),
        "{all}"
    );
    assert!(
        all.lines()
            .any(|l| l.contains("tbf") && l.contains("rate 5Mbit")),
        "{all}"
    );
    w.remove_pod(&id).await;
    let after = qdiscs();
    assert!(
        !after.contains("rate 5Mbit"),
        "egress shaping left: {after}"
    );
    w.finish().await;
}

/// A veth pair (this host's kernel has no dummy links) with a route on
/// one end, deleted with its route on drop.
struct RoutedLink(String);

impl RoutedLink {
    fn new(name: &str, route: &str) -> RoutedLink {
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let peer = format!("{name}p");
        ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
        let link = RoutedLink(name.to_string());
        ip(&["link", "set", name, "up"]);
        ip(&["route", "add", route, "dev", name]);
        link
    }
}

impl Drop for RoutedLink {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

/// The NetworkReady condition: (status, reason, message).
async fn network_ready(rt: &mut cri::RuntimeClient) -> (bool, String, String) {
    let c = cri::runtime_conditions(rt).await.unwrap();
    let n = &c["NetworkReady"];
    (n.status, n.reason.clone(), n.message.clone())
}

/// A pod subnet the node already routes through another interface (a
/// bridge containerd, podman or CRI-O left behind) is said in
/// NetworkReady's reason and message, the network staying ready; once
/// the route goes, so does the reason.
#[tokio::test]
async fn a_pod_subnet_routed_elsewhere_is_reported() {
    let w = World::start(CriusOptions::default()).await;
    let mut rt = w.rt.clone();
    assert_eq!(
        network_ready(&mut rt).await,
        (true, String::new(), String::new())
    );
    let subnet = w.crius.dir().subnet();
    let name = format!("crsd{}", w.crius.dir().id());
    let link = RoutedLink::new(&name, &subnet);
    let (ready, reason, message) = network_ready(&mut rt).await;
    assert!(ready, "{reason}: {message}");
    assert_eq!(reason, "PodSubnetRoutedElsewhere", "{message}");
    assert!(
        message.contains(&subnet) && message.contains(&name),
        "{message}"
    );
    drop(link);
    assert_eq!(
        network_ready(&mut rt).await,
        (true, String::new(), String::new())
    );
    w.finish().await;
}
