//! Stats and events: the figures of ContainerStats, ListContainerStats,
//! PodSandboxStats and ListPodSandboxStats checked against the kernel's
//! own cgroup files and network counters for a container burning CPU and
//! holding memory; filters; GetContainerEvents subscribers seeing a
//! container's whole lifecycle in order.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::World;
use crius_e2e::{CriusOptions, cri};
use k8s_cri::v1::{
    ContainerEventType, ContainerState, ContainerStatsFilter, ContainerStatsRequest,
    GetEventsRequest, ListContainerStatsRequest, ListMetricDescriptorsRequest,
    ListPodSandboxMetricsRequest, ListPodSandboxStatsRequest, PodSandboxStatsFilter,
    PodSandboxStatsRequest, PodSandboxStatusRequest, RemoveContainerRequest,
};
use tokio_stream::StreamExt;

/// The kernel's figures of a cgroup, read the way cAdvisor does, from
/// whichever hierarchy the host runs.
#[derive(Debug)]
struct Kernel {
    cpu_ns: u64,
    usage: u64,
    working_set: u64,
    rss: u64,
    pgfault: u64,
    pgmajfault: u64,
    pids: u64,
}

fn read_u64(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

fn read_keyed(p: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn kernel(cgroup: &str) -> Kernel {
    let rel = cgroup.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/memory").is_dir();
    if v1 {
        let d = |c: &str| PathBuf::from("/sys/fs/cgroup").join(c).join(rel);
        let stat = read_keyed(&d("memory").join("memory.stat"));
        let usage = read_u64(&d("memory").join("memory.usage_in_bytes"));
        Kernel {
            cpu_ns: read_u64(&d("cpuacct").join("cpuacct.usage")),
            usage,
            working_set: usage.saturating_sub(stat["total_inactive_file"]),
            rss: stat["total_rss"],
            pgfault: stat["total_pgfault"],
            pgmajfault: stat["total_pgmajfault"],
            pids: read_u64(&d("pids").join("pids.current")),
        }
    } else {
        let d = PathBuf::from("/sys/fs/cgroup").join(rel);
        let stat = read_keyed(&d.join("memory.stat"));
        let usage = read_u64(&d.join("memory.current"));
        Kernel {
            cpu_ns: read_keyed(&d.join("cpu.stat"))["usage_usec"] * 1000,
            usage,
            working_set: usage.saturating_sub(stat["inactive_file"]),
            rss: stat["anon"],
            pgfault: stat["pgfault"],
            pgmajfault: stat["pgmajfault"],
            pids: read_u64(&d.join("pids.current")),
        }
    }
}

/// `lo <= x <= hi`, or within `slack` of the range (memory moves a little
/// between reads).
fn assert_between(what: &str, lo: u64, x: u64, hi: u64, slack: u64) {
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    assert!(
        x + slack >= lo && x <= hi + slack,
        "{what}: {x} not within [{lo}, {hi}] ± {slack}"
    );
}

/// The interface counters of the netns pinned at `pin`, as the kernel
/// shows them to a process inside: name → (rx bytes, rx errors, tx bytes,
/// tx errors, rx packets, tx packets).
fn netns_counters(pin: &str) -> HashMap<String, [u64; 6]> {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={pin}"))
        .args(["cat", "/proc/net/dev"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
            Some((
                name.trim().to_string(),
                [f[0], f[2], f[8], f[10], f[1], f[9]],
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_match_the_kernels_figures_with_runc() {
    stats_match_the_kernels_figures("", "stats-runc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_match_the_kernels_figures_with_crun() {
    stats_match_the_kernels_figures("crun", "stats-crun").await;
}

async fn stats_match_the_kernels_figures(handler: &str, pod_name: &str) {
    let mut w = World::start(CriusOptions::default()).await;
    let pod = w.pod(pod_name);
    let pod_id = cri::run_pod(&mut w.rt, &pod, handler).await.unwrap();
    // 40 MiB in the pod's /dev/shm (charged to the container's memory
    // cgroup), 5 MiB written to its writable layer, then a busy loop.
    let busy = w
        .start_sh(
            &pod_id,
            &pod,
            "busy",
            "dd if=/dev/zero of=/dev/shm/fill bs=1M count=40 && \
             dd if=/dev/zero of=/layer bs=1M count=5 && echo filled && while :; do :; done",
        )
        .await;
    let idle = w.start_sh(&pod_id, &pod, "idle", "sleep 3600").await;
    w.wait_for_line(&pod, "busy", "filled").await;

    let pod_cgroup = format!("{}/{pod_id}", w.crius.dir().cgroup_parent());
    let busy_cgroup = format!("{pod_cgroup}/{busy}");

    // ContainerStats, between two reads of the kernel's files.
    let before = kernel(&busy_cgroup);
    let first =
        w.rt.container_stats(ContainerStatsRequest {
            container_id: busy.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let after = kernel(&busy_cgroup);
    let attrs = first.attributes.as_ref().unwrap();
    assert_eq!(attrs.id, busy);
    assert_eq!(attrs.metadata.as_ref().unwrap().name, "busy");
    assert_eq!(attrs.labels["e2e-container"], "busy");
    let cpu = first.cpu.as_ref().unwrap();
    let cpu_ns = cpu.usage_core_nano_seconds.as_ref().unwrap().value;
    assert_between("cpu ns", before.cpu_ns, cpu_ns, after.cpu_ns, 0);
    assert!(cpu_ns > 0);
    let mem = first.memory.as_ref().unwrap();
    let mib = 1 << 20;
    assert_between(
        "usage",
        before.usage,
        mem.usage_bytes.unwrap().value,
        after.usage,
        mib,
    );
    assert_between(
        "working set",
        before.working_set,
        mem.working_set_bytes.unwrap().value,
        after.working_set,
        mib,
    );
    assert!(mem.usage_bytes.unwrap().value >= 40 * mib, "{mem:?}");
    assert!(mem.working_set_bytes.unwrap().value >= 40 * mib, "{mem:?}");
    assert_between(
        "rss",
        before.rss,
        mem.rss_bytes.unwrap().value,
        after.rss,
        mib,
    );
    assert_between(
        "pgfault",
        before.pgfault,
        mem.page_faults.unwrap().value,
        after.pgfault,
        0,
    );
    assert_between(
        "pgmajfault",
        before.pgmajfault,
        mem.major_page_faults.unwrap().value,
        after.pgmajfault,
        0,
    );
    // No limit was set: nothing is "available".
    assert_eq!(mem.available_bytes, None);

    // The writable layer holds /layer: compare with the upper directory.
    let layer = first.writable_layer.as_ref().unwrap();
    let upper = w
        .crius
        .dir()
        .root()
        .join("containers")
        .join(&busy)
        .join("upper");
    let (bytes, inodes) = du(&upper);
    assert_eq!(layer.used_bytes.unwrap().value, bytes);
    assert_eq!(layer.inodes_used.unwrap().value, inodes);
    assert!(bytes >= 5 * mib, "{layer:?}");

    // A second sample gives the rate: one busy loop is about one core.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second =
        w.rt.container_stats(ContainerStatsRequest {
            container_id: busy.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let cpu2 = second.cpu.as_ref().unwrap();
    let rate = cpu2.usage_nano_cores.as_ref().unwrap().value;
    let expected = (cpu2.usage_core_nano_seconds.unwrap().value - cpu_ns) as u128 * 1_000_000_000
        / (cpu2.timestamp - cpu.timestamp) as u128;
    assert_eq!(u128::from(rate), expected);
    assert!(rate > 0 && rate <= 2_000_000_000, "{rate}");

    // PodSandboxStats: the pod cgroup, both containers, the network.
    let status =
        w.rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
    let pin = info["netns"].as_str().unwrap().to_string();
    let net_before = netns_counters(&pin);
    let k_before = kernel(&pod_cgroup);
    let ps =
        w.rt.pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let k_after = kernel(&pod_cgroup);
    let net_after = netns_counters(&pin);
    assert_eq!(ps.attributes.as_ref().unwrap().id, pod_id);
    let linux = ps.linux.as_ref().unwrap();
    let pcpu = linux
        .cpu
        .as_ref()
        .unwrap()
        .usage_core_nano_seconds
        .unwrap()
        .value;
    assert_between("pod cpu", k_before.cpu_ns, pcpu, k_after.cpu_ns, 0);
    let pmem = linux.memory.as_ref().unwrap();
    assert_between(
        "pod working set",
        k_before.working_set,
        pmem.working_set_bytes.unwrap().value,
        k_after.working_set,
        mib,
    );
    let procs = linux.process.as_ref().unwrap().process_count.unwrap().value;
    assert_between("pod pids", k_before.pids, procs, k_after.pids, 0);
    assert!(procs >= 2, "busy loop and sleep: {procs}");
    let mut ids: Vec<_> = linux
        .containers
        .iter()
        .map(|c| c.attributes.as_ref().unwrap().id.clone())
        .collect();
    ids.sort();
    let mut want = vec![busy.clone(), idle.clone()];
    want.sort();
    assert_eq!(ids, want);
    let net = linux.network.as_ref().unwrap();
    let eth0 = net.default_interface.as_ref().unwrap();
    assert_eq!(eth0.name, "eth0");
    assert!(net.interfaces.iter().all(|i| i.name != "lo"));
    for i in &net.interfaces {
        let (b, a) = (net_before[&i.name], net_after[&i.name]);
        let got = [
            i.rx_bytes.unwrap().value,
            i.rx_errors.unwrap().value,
            i.tx_bytes.unwrap().value,
            i.tx_errors.unwrap().value,
        ];
        for n in 0..4 {
            assert_between(&format!("{} counter {n}", i.name), b[n], got[n], a[n], 0);
        }
    }

    // Filters.
    let list = |f: ContainerStatsFilter| {
        let mut rt = w.rt.clone();
        async move {
            let mut ids: Vec<String> = rt
                .list_container_stats(ListContainerStatsRequest { filter: Some(f) })
                .await
                .unwrap()
                .into_inner()
                .stats
                .into_iter()
                .map(|s| s.attributes.unwrap().id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(list(ContainerStatsFilter::default()).await, want);
    assert_eq!(
        list(ContainerStatsFilter {
            id: idle[..12].to_string(),
            ..Default::default()
        })
        .await,
        [idle.as_str()]
    );
    assert_eq!(
        list(ContainerStatsFilter {
            pod_sandbox_id: pod_id.clone(),
            label_selector: HashMap::from([("e2e-container".into(), "busy".into())]),
            ..Default::default()
        })
        .await,
        [busy.as_str()]
    );
    assert_eq!(
        list(ContainerStatsFilter {
            pod_sandbox_id: "0000".into(),
            ..Default::default()
        })
        .await,
        [] as [String; 0]
    );
    let pods = |f: PodSandboxStatsFilter| {
        let mut rt = w.rt.clone();
        async move {
            rt.list_pod_sandbox_stats(ListPodSandboxStatsRequest { filter: Some(f) })
                .await
                .unwrap()
                .into_inner()
                .stats
                .into_iter()
                .map(|s| s.attributes.unwrap().id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        pods(PodSandboxStatsFilter::default()).await,
        [pod_id.as_str()]
    );
    assert_eq!(
        pods(PodSandboxStatsFilter {
            label_selector: HashMap::from([("e2e-pod".into(), pod_name.into())]),
            ..Default::default()
        })
        .await,
        [pod_id.as_str()]
    );
    assert_eq!(
        pods(PodSandboxStatsFilter {
            label_selector: HashMap::from([("e2e-pod".into(), "other".into())]),
            ..Default::default()
        })
        .await,
        [] as [String; 0]
    );

    // The same figures as cAdvisor-named metrics, for kubelet's CRI-only
    // stats path: every metric has a descriptor with as many label keys.
    let descriptors: HashMap<String, usize> =
        w.rt.list_metric_descriptors(ListMetricDescriptorsRequest {})
            .await
            .unwrap()
            .into_inner()
            .descriptors
            .into_iter()
            .map(|d| (d.name, d.label_keys.len()))
            .collect();
    assert!(descriptors.contains_key("container_cpu_usage_seconds_total"));
    let metrics =
        w.rt.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner()
            .pod_metrics;
    assert_eq!(metrics.len(), 1);
    let pm = &metrics[0];
    assert_eq!(pm.pod_sandbox_id, pod_id);
    let all = pm
        .metrics
        .iter()
        .chain(pm.container_metrics.iter().flat_map(|c| &c.metrics));
    for m in all {
        assert_eq!(
            descriptors.get(&m.name),
            Some(&m.label_values.len()),
            "{m:?}"
        );
    }
    let find = |metrics: &[k8s_cri::v1::Metric], name: &str| {
        metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name} in {metrics:?}"))
            .clone()
    };
    let busy_metrics = &pm
        .container_metrics
        .iter()
        .find(|c| c.container_id == busy)
        .unwrap()
        .metrics;
    let ws = find(busy_metrics, "container_memory_working_set_bytes");
    assert_eq!(ws.label_values[..2], [busy.clone(), "busy".to_string()]);
    assert!(ws.value.unwrap().value >= 40 * mib, "{ws:?}");
    // Every metric kubelet's cAdvisor path (and critest) expects has a
    // descriptor, and a value with as many label values as label keys.
    // Block I/O figures may be absent (no per-device accounting on the
    // overlay's backing disk); their descriptors are not.
    const EXPECTED: [&str; 51] = [
        "container_blkio_device_usage_total",
        "container_cpu_cfs_periods_total",
        "container_cpu_cfs_throttled_periods_total",
        "container_cpu_cfs_throttled_seconds_total",
        "container_cpu_system_seconds_total",
        "container_cpu_usage_seconds_total",
        "container_cpu_user_seconds_total",
        "container_file_descriptors",
        "container_fs_inodes_free",
        "container_fs_inodes_total",
        "container_fs_limit_bytes",
        "container_fs_reads_bytes_total",
        "container_fs_reads_total",
        "container_fs_usage_bytes",
        "container_fs_writes_bytes_total",
        "container_fs_writes_total",
        "container_last_seen",
        "container_memory_cache",
        "container_memory_failcnt",
        "container_memory_failures_total",
        "container_memory_kernel_usage",
        "container_memory_mapped_file",
        "container_memory_max_usage_bytes",
        "container_memory_rss",
        "container_memory_swap",
        "container_memory_usage_bytes",
        "container_memory_working_set_bytes",
        "container_network_receive_bytes_total",
        "container_network_receive_errors_total",
        "container_network_receive_packets_dropped_total",
        "container_network_receive_packets_total",
        "container_network_transmit_bytes_total",
        "container_network_transmit_errors_total",
        "container_network_transmit_packets_dropped_total",
        "container_network_transmit_packets_total",
        "container_oom_events_total",
        "container_pressure_cpu_stalled_seconds_total",
        "container_pressure_cpu_waiting_seconds_total",
        "container_pressure_io_stalled_seconds_total",
        "container_pressure_io_waiting_seconds_total",
        "container_pressure_memory_stalled_seconds_total",
        "container_pressure_memory_waiting_seconds_total",
        "container_processes",
        "container_sockets",
        "container_spec_cpu_period",
        "container_spec_cpu_shares",
        "container_spec_memory_limit_bytes",
        "container_spec_memory_swap_limit_bytes",
        "container_start_time_seconds",
        "container_threads",
        "container_threads_max",
    ];
    const OPTIONAL_VALUES: [&str; 5] = [
        "container_blkio_device_usage_total",
        "container_fs_reads_bytes_total",
        "container_fs_reads_total",
        "container_fs_writes_bytes_total",
        "container_fs_writes_total",
    ];
    let reported: HashMap<&str, usize> = pm
        .metrics
        .iter()
        .chain(pm.container_metrics.iter().flat_map(|c| &c.metrics))
        .map(|m| (m.name.as_str(), m.label_values.len()))
        .collect();
    for name in EXPECTED {
        let keys = descriptors
            .get(name)
            .unwrap_or_else(|| panic!("no descriptor {name}"));
        match reported.get(name) {
            Some(n) => assert_eq!(n, keys, "label values of {name}"),
            // Pressure stall figures exist on cgroup v2 with PSI on only.
            None => assert!(
                OPTIONAL_VALUES.contains(&name) || name.starts_with("container_pressure_"),
                "no value for {name}"
            ),
        }
    }
    let value = |m: k8s_cri::v1::Metric| m.value.unwrap().value;
    // Threads: the busy container's cgroup tasks (one shell).
    let cg = |ctl: &str| {
        let rel = busy_cgroup.trim_start_matches('/');
        if Path::new("/sys/fs/cgroup/memory").is_dir() {
            PathBuf::from("/sys/fs/cgroup").join(ctl).join(rel)
        } else {
            PathBuf::from("/sys/fs/cgroup").join(rel)
        }
    };
    let v1 = Path::new("/sys/fs/cgroup/memory").is_dir();
    let tasks =
        std::fs::read_to_string(cg("pids").join(if v1 { "tasks" } else { "cgroup.threads" }))
            .unwrap()
            .lines()
            .count() as u64;
    assert_eq!(value(find(busy_metrics, "container_threads")), tasks);
    // CFS period: cpu.cfs_period_us (v1) or cpu.max's second field (v2).
    let period = if v1 {
        read_u64(&cg("cpu").join("cpu.cfs_period_us"))
    } else {
        let max = std::fs::read_to_string(cg("cpu").join("cpu.max")).unwrap();
        max.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(
        value(find(busy_metrics, "container_spec_cpu_period")),
        period
    );
    // Memory limit: none was set, so the kernel's "unlimited" reads 0.
    let limit = if v1 {
        let l = read_u64(&cg("memory").join("memory.limit_in_bytes"));
        if l >= 1 << 62 { 0 } else { l }
    } else {
        let s = std::fs::read_to_string(cg("memory").join("memory.max")).unwrap();
        s.trim().parse().unwrap_or(0)
    };
    assert_eq!(limit, 0);
    assert_eq!(
        value(find(busy_metrics, "container_spec_memory_limit_bytes")),
        limit
    );
    let faults = busy_metrics
        .iter()
        .filter(|m| m.name == "container_memory_failures_total")
        .map(|m| m.label_values[3..].join("/"))
        .collect::<Vec<_>>();
    assert_eq!(
        faults,
        [
            "pgfault/container",
            "pgmajfault/container",
            "pgfault/hierarchy",
            "pgmajfault/hierarchy"
        ]
    );
    // Packets on the pod's interface, between two reads of the kernel's.
    let rx_packets = find(&pm.metrics, "container_network_receive_packets_total");
    assert_eq!(
        rx_packets.label_values,
        [pod_id.as_str(), "POD", "", "eth0"]
    );
    let tx_packets = value(find(
        &pm.metrics,
        "container_network_transmit_packets_total",
    ));
    let net_now = netns_counters(&pin);
    assert_between(
        "rx packets metric",
        net_before["eth0"][4],
        value(rx_packets),
        net_now["eth0"][4],
        0,
    );
    assert_between(
        "tx packets metric",
        net_before["eth0"][5],
        tx_packets,
        net_now["eth0"][5],
        0,
    );

    let rx = find(&pm.metrics, "container_network_receive_bytes_total");
    assert_eq!(rx.label_values, [pod_id.as_str(), "POD", "", "eth0"]);
    assert_between(
        "rx bytes metric",
        net_before["eth0"][0],
        rx.value.unwrap().value,
        netns_counters(&pin)["eth0"][0],
        0,
    );

    // Unknown ids name what was not found.
    let err =
        w.rt.container_stats(ContainerStatsRequest {
            container_id: "ffffffff".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains("ffffffff"), "{err:?}");
    let err =
        w.rt.pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    w.remove_pod(&pod_id).await;
    w.finish().await;
}

/// Bytes and inodes under `dir`, as the runtime counts them (du).
fn du(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut inodes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        bytes += m.blocks() * 512;
        inodes += 1;
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    (bytes, inodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_subscribers_see_a_containers_lifecycle_in_order() {
    lifecycle_events(CriusOptions::default()).await;
}

/// An OCI runtime whose `start` answers 1 s after the container has begun
/// (crun: crius starts runc's containers through their exec FIFO, not
/// `runc start`): a brief container is over before StartContainer is, as
/// on a loaded node.
const SLOW_START: &str = r#"
case " $* " in
*" start "*) "$real" "$@"; rc=$?; sleep 1; exit "$rc" ;;
esac
exec "$real" "$@"
"#;

#[tokio::test]
async fn started_comes_before_stopped_when_the_container_ends_before_its_start_returns() {
    let bin = tempfile::tempdir().unwrap();
    let crun = crius_e2e::wrapped_runtime::wrapped(bin.path(), "crun", SLOW_START);
    lifecycle_events(CriusOptions {
        config: Some(crius_e2e::wrapped_runtime::only_handler("crun", &crun)),
        ..Default::default()
    })
    .await;
}

/// Two subscribers see Created, Started, Stopped, Deleted of a container
/// that exits at once, each with the container's status then.
async fn lifecycle_events(options: CriusOptions) {
    let mut w = World::start(options).await;
    let pod = w.pod("events");
    let pod_id = w.run_pod(&pod).await;
    let mut subscribers = Vec::new();
    for _ in 0..2 {
        subscribers.push(
            w.rt.clone()
                .get_container_events(GetEventsRequest {})
                .await
                .unwrap()
                .into_inner(),
        );
    }
    // A subscriber that never reads: the runtime goes on regardless.
    let _idle_subscriber =
        w.rt.clone()
            .get_container_events(GetEventsRequest {})
            .await
            .unwrap()
            .into_inner();
    let id = w.start_sh(&pod_id, &pod, "brief", "exit 3").await;
    cri::wait_container_state(&mut w.rt, &id, ContainerState::ContainerExited)
        .await
        .unwrap();
    w.rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();

    let want = [
        ContainerEventType::ContainerCreatedEvent,
        ContainerEventType::ContainerStartedEvent,
        ContainerEventType::ContainerStoppedEvent,
        ContainerEventType::ContainerDeletedEvent,
    ];
    for sub in &mut subscribers {
        let mut seen = Vec::new();
        while seen.len() < want.len() {
            let ev = tokio::time::timeout(Duration::from_secs(30), sub.next())
                .await
                .expect("an event within 30 s")
                .unwrap()
                .unwrap();
            assert_eq!(ev.container_id, id);
            let status = ev.pod_sandbox_status.as_ref().unwrap();
            assert_eq!(status.id, pod_id);
            let me = ev
                .containers_statuses
                .iter()
                .find(|c| c.id == id)
                .expect("the container's own status");
            let kind = ContainerEventType::try_from(ev.container_event_type).unwrap();
            match kind {
                ContainerEventType::ContainerCreatedEvent => {
                    assert_eq!(me.state, ContainerState::ContainerCreated as i32)
                }
                ContainerEventType::ContainerStartedEvent => {
                    // It may already have exited by the time it is read.
                    assert_ne!(me.state, ContainerState::ContainerCreated as i32)
                }
                _ => {
                    assert_eq!(me.state, ContainerState::ContainerExited as i32);
                    assert_eq!(me.exit_code, 3);
                }
            }
            assert!(ev.created_at > 0);
            seen.push((kind, ev.created_at));
        }
        let kinds: Vec<_> = seen.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, want);
        assert!(seen.windows(2).all(|p| p[0].1 <= p[1].1), "{seen:?}");
    }
    drop(subscribers);
    w.remove_pod(&pod_id).await;
    w.finish().await;
}
