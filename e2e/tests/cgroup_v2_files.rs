//! Every resource a CRI LinuxContainerResources carries, and the figures
//! crius reports for it, against the kernel's cgroup v2 files: cpu.weight
//! from shares, cpu.max from quota and period, cpuset, memory.max,
//! memory.swap.max, hugetlb, `unified` (memory.high, pids.max, io.weight),
//! the OOM score; the same after UpdateContainerResources; swap, block
//! I/O and pressure stall figures (ContainerStats and
//! ListPodSandboxMetrics) between two reads of the kernel's files. With
//! runc and crun, under the cgroupfs and the systemd driver (the guest
//! lane's node: systemd, pure cgroup v2).
//!
//! The container swaps for real: the test turns on a swap file of its own
//! for its run (and off again), and the container's memory.high pushes
//! part of what it writes to /dev/shm out to it.
//!
//! On a cgroup v1 node (this repo's CI host) `unified` has nowhere to go:
//! CreateContainer and UpdateContainerResources refuse it, naming the
//! keys.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::World;
use crius_e2e::{CriusOptions, cri, node_shape};
use k8s_cri::v1::{
    ContainerStatsRequest, ExecSyncRequest, HugepageLimit, LinuxContainerConfig,
    LinuxContainerResources, ListPodSandboxMetricsRequest, Metric, UpdateContainerResourcesRequest,
};
use tonic::Code;

const MIB: u64 = 1 << 20;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

fn read_u64(path: &Path) -> u64 {
    let s = read(path);
    s.parse()
        .unwrap_or_else(|e| panic!("{}: {s:?}: {e}", path.display()))
}

/// The `total=` of line `kind` ("some"/"full") of a `*.pressure` file, µs.
fn pressure_total(path: &Path, kind: &str) -> u64 {
    let text = read(path);
    text.lines()
        .find_map(|l| l.strip_prefix(kind)?.strip_prefix(' '))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("total="))
        })
        .unwrap_or_else(|| panic!("no {kind} total in {}: {text}", path.display()))
        .parse()
        .unwrap()
}

/// `io.stat`'s `key` for device `major:minor` (0 when the device has no line).
fn io_stat(cgroup: &Path, device: &str, key: &str) -> u64 {
    read(&cgroup.join("io.stat"))
        .lines()
        .find_map(|l| l.strip_prefix(device)?.strip_prefix(' '))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        })
        .map_or(0, |v| v.parse().unwrap())
}

#[track_caller]
fn assert_between(what: &str, low: u64, value: u64, high: u64) {
    assert!(
        low <= value && value <= high,
        "{what}: {value} not within [{low}, {high}]"
    );
}

/// A swap file the kernel uses while this lives; off and gone on drop.
struct SwapFile(PathBuf);

impl SwapFile {
    fn on(path: PathBuf, bytes: u64) -> SwapFile {
        let run = |args: &[&str]| {
            let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let p = path.to_str().unwrap().to_string();
        // Swap files must be fully allocated and private to root.
        run(&[
            "dd",
            "if=/dev/zero",
            &format!("of={p}"),
            "bs=1M",
            &format!("count={}", bytes / MIB),
        ]);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        run(&["mkswap", &p]);
        let swap = SwapFile(path);
        run(&["swapon", &p]);
        swap
    }
}

impl Drop for SwapFile {
    fn drop(&mut self) {
        let _ = Command::new("swapoff").arg(&self.0).status();
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The swap file this binary's tests share, with how many use it: one
/// for them all, since turning one off would pull the others' pages back
/// in mid-test. The last to finish (or fail) turns it off.
static SWAP: std::sync::Mutex<Option<(SwapFile, usize)>> = std::sync::Mutex::new(None);

/// A use of the shared swap file.
struct SwapUse;

impl SwapUse {
    fn take() -> SwapUse {
        let mut swap = SWAP.lock().unwrap_or_else(|p| p.into_inner());
        match swap.as_mut() {
            Some((_, users)) => *users += 1,
            None => {
                // On the disk (/var/tmp), where the kernel can swap to a file.
                let path = format!("/var/tmp/crius-e2e-swap-{}", std::process::id());
                *swap = Some((SwapFile::on(path.into(), 256 * MIB), 1));
            }
        }
        SwapUse
    }
}

impl Drop for SwapUse {
    fn drop(&mut self) {
        let mut swap = SWAP.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, users)) = swap.as_mut() {
            *users -= 1;
            if *users == 0 {
                *swap = None;
            }
        }
    }
}

/// The cgroup (unified hierarchy) of the process whose command line is
/// exactly `cmdline`, waiting for it to appear.
async fn cgroup_of_process(cmdline: &str) -> (u32, PathBuf) {
    for _ in 0..600 {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            if String::from_utf8_lossy(&cmd).replace('\0', " ").trim() != cmdline {
                continue;
            }
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
            return (
                pid,
                Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/')),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no process runs {cmdline:?}");
}

/// What the test asks for, and what the kernel's files must then say.
struct Ask {
    resources: LinuxContainerResources,
    /// cgroup file → its expected contents.
    files: Vec<(&'static str, String)>,
}

/// The first request: every field set.
fn first_ask(hugetlb: bool) -> Ask {
    let mut r = LinuxContainerResources {
        cpu_shares: 512,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpuset_cpus: "0".into(),
        cpuset_mems: "0".into(),
        memory_limit_in_bytes: (64 * MIB) as i64,
        // Memory and swap together, as Docker and kubelet count it.
        memory_swap_limit_in_bytes: (96 * MIB) as i64,
        oom_score_adj: 500,
        unified: HashMap::from([
            ("memory.high".to_string(), (40 * MIB).to_string()),
            ("pids.max".to_string(), "64".to_string()),
            ("io.weight".to_string(), "default 200".to_string()),
        ]),
        ..Default::default()
    };
    // runc and crun map shares to weight: 1 + (shares - 2) * 9999 / 262142.
    let mut files = vec![
        ("cpu.weight", "20".to_string()),
        ("cpu.max", "50000 100000".to_string()),
        ("cpuset.cpus", "0".to_string()),
        ("cpuset.mems", "0".to_string()),
        ("memory.max", (64 * MIB).to_string()),
        ("memory.swap.max", (32 * MIB).to_string()),
        ("memory.high", (40 * MIB).to_string()),
        ("pids.max", "64".to_string()),
        ("io.weight", "default 200".to_string()),
    ];
    if hugetlb {
        r.hugepage_limits = vec![HugepageLimit {
            page_size: "2MB".into(),
            limit: 4 * MIB,
        }];
        files.push(("hugetlb.2MB.max", (4 * MIB).to_string()));
    }
    Ask {
        resources: r,
        files,
    }
}

/// The update: every field changed.
fn second_ask(hugetlb: bool, cpus: usize) -> Ask {
    let cpuset = if cpus > 1 { "0-1" } else { "0" };
    let mut r = LinuxContainerResources {
        cpu_shares: 1024,
        cpu_period: 50_000,
        cpu_quota: 20_000,
        cpuset_cpus: cpuset.into(),
        cpuset_mems: "0".into(),
        memory_limit_in_bytes: (96 * MIB) as i64,
        memory_swap_limit_in_bytes: (160 * MIB) as i64,
        unified: HashMap::from([
            ("memory.high".to_string(), (80 * MIB).to_string()),
            ("pids.max".to_string(), "128".to_string()),
            ("io.weight".to_string(), "default 300".to_string()),
        ]),
        ..Default::default()
    };
    let mut files = vec![
        ("cpu.weight", "39".to_string()),
        ("cpu.max", "20000 50000".to_string()),
        ("cpuset.cpus", cpuset.to_string()),
        ("cpuset.mems", "0".to_string()),
        ("memory.max", (96 * MIB).to_string()),
        ("memory.swap.max", (64 * MIB).to_string()),
        ("memory.high", (80 * MIB).to_string()),
        ("pids.max", "128".to_string()),
        ("io.weight", "default 300".to_string()),
    ];
    if hugetlb {
        r.hugepage_limits = vec![HugepageLimit {
            page_size: "2MB".into(),
            limit: 8 * MIB,
        }];
        files.push(("hugetlb.2MB.max", (8 * MIB).to_string()));
    }
    Ask {
        resources: r,
        files,
    }
}

#[track_caller]
fn assert_files(cgroup: &Path, ask: &Ask, when: &str) {
    for (file, want) in &ask.files {
        assert_eq!(
            &read(&cgroup.join(file)),
            want,
            "{file} of {} {when}",
            cgroup.display()
        );
    }
}

/// What ExecSync of `cmd` printed, asserting it succeeded.
async fn exec(w: &mut World, id: &str, cmd: &[&str]) -> String {
    let r =
        w.rt.exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 30,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.exit_code,
        0,
        "{cmd:?}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).trim().to_string()
}

/// The value of the metric `name` whose label values end with `tail`.
fn metric(metrics: &[Metric], name: &str, tail: &[&str]) -> u64 {
    metrics
        .iter()
        .find(|m| {
            m.name == name
                && m.label_values
                    .ends_with(&tail.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        })
        .unwrap_or_else(|| panic!("no {name} {tail:?}"))
        .value
        .unwrap()
        .value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resource_and_stat_in_the_v2_files_with_runc() {
    every_resource_and_stat("", "cgroupfs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resource_and_stat_in_the_v2_files_with_crun() {
    every_resource_and_stat("crun", "cgroupfs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resource_and_stat_in_the_v2_files_with_runc_under_systemd() {
    every_resource_and_stat("", "systemd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resource_and_stat_in_the_v2_files_with_crun_under_systemd() {
    every_resource_and_stat("crun", "systemd").await;
}

async fn every_resource_and_stat(handler: &str, driver: &'static str) {
    if !node_shape::cgroup_v2() {
        unified_is_refused_on_v1(handler).await;
        return;
    }
    if driver == "systemd" {
        assert!(
            node_shape::systemd_booted(),
            "a cgroup v2 node for this test runs systemd (the guest lane's does)"
        );
    }
    let controllers = read(Path::new("/sys/fs/cgroup/cgroup.controllers"));
    for c in ["cpu", "cpuset", "memory", "pids", "io"] {
        assert!(
            controllers.split_whitespace().any(|x| x == c),
            "no {c} controller: {controllers}"
        );
    }
    let hugetlb = controllers.split_whitespace().any(|x| x == "hugetlb")
        && Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").is_dir();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut w = World::start(CriusOptions {
        cgroup_driver: driver,
        ..Default::default()
    })
    .await;
    let runtime = if handler.is_empty() { "runc" } else { handler };
    let _swap = SwapUse::take();
    let name = format!("files-{runtime}-{driver}");
    let pod = w.pod(&name);
    let pod_id = cri::run_pod(&mut w.rt, &pod, handler).await.unwrap();

    // 56 MiB into /dev/shm over a 40 MiB memory.high: the kernel swaps
    // the excess out. Then 8 MiB written through to the disk, and a
    // sleep to find the container's cgroup by.
    // Unique on the node: the four tests of this binary run at once.
    let which = match (runtime, driver) {
        ("runc", "cgroupfs") => 0,
        ("crun", "cgroupfs") => 1,
        ("runc", _) => 2,
        _ => 3,
    };
    let tag = format!(
        "sleep {}",
        100_000 + (std::process::id() % 200_000) * 4 + which
    );
    let ask = first_ask(hugetlb);
    let mut config = cri::container_config(
        "filler",
        &w.image,
        &[
            "sh",
            "-c",
            &format!(
                "dd if=/dev/zero of=/dev/shm/fill bs=1M count=56 2>/dev/null && \
                 dd if=/dev/zero of=/io bs=1M count=8 conv=fsync 2>/dev/null && \
                 echo filled && exec {tag}"
            ),
        ],
    );
    config.linux = Some(LinuxContainerConfig {
        resources: Some(ask.resources.clone()),
        ..Default::default()
    });
    let id = w.start_container(&pod_id, &pod, config).await;
    let (pid, cgroup) = cgroup_of_process(&tag).await;
    assert_files(&cgroup, &ask, "after CreateContainer");
    assert_eq!(
        read(Path::new(&format!("/proc/{pid}/oom_score_adj"))),
        "500"
    );
    // The container sees its own limits through its cgroup namespace.
    for file in ["memory.max", "cpu.max", "pids.max"] {
        assert_eq!(
            exec(&mut w, &id, &["cat", &format!("/sys/fs/cgroup/{file}")]).await,
            read(&cgroup.join(file)),
            "{file} inside the container"
        );
    }
    w.wait_for_line(&pod, "filler", "filled").await;

    // ContainerStats between two reads of the kernel's files.
    let swap_before = read_u64(&cgroup.join("memory.swap.current"));
    let stats =
        w.rt.container_stats(ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let swap_after = read_u64(&cgroup.join("memory.swap.current"));
    let swap = stats.swap.expect("no swap figures");
    let used = swap.swap_usage_bytes.unwrap().value;
    assert_between(
        &format!("swap used of {}", cgroup.display()),
        swap_before.min(swap_after),
        used,
        swap_before.max(swap_after),
    );
    assert!(
        used >= 8 * MIB,
        "56 MiB over a 40 MiB memory.high swapped only {used}"
    );
    let limit = 32 * MIB;
    assert_between(
        "swap available",
        limit - swap_before.max(swap_after),
        swap.swap_available_bytes.unwrap().value,
        limit - swap_before.min(swap_after),
    );
    let memory = stats.memory.unwrap();
    let ws = memory.working_set_bytes.unwrap().value;
    assert_eq!(memory.available_bytes.unwrap().value, 64 * MIB - ws);

    // ListPodSandboxMetrics: pressure stall and block I/O figures.
    let dev = {
        let meta = std::fs::metadata(w.crius.dir().root()).unwrap();
        let dev = std::os::unix::fs::MetadataExt::dev(&meta);
        // The disk, not its partition: io.stat counts whole devices.
        let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
        let part = format!("/sys/dev/block/{major}:{minor}/partition");
        if Path::new(&part).exists() {
            read(Path::new(&format!("/sys/dev/block/{major}:{minor}/../dev")))
        } else {
            format!("{major}:{minor}")
        }
    };
    let (major, minor) = dev.split_once(':').unwrap();
    let psi = |file: &str, kind: &str| pressure_total(&cgroup.join(file), kind) / 1_000_000;
    let files = ["cpu.pressure", "memory.pressure", "io.pressure"];
    let before: Vec<(u64, u64)> = files
        .iter()
        .map(|f| (psi(f, "some"), psi(f, "full")))
        .collect();
    let written_before = io_stat(&cgroup, &dev, "wbytes");
    let pm =
        w.rt.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner();
    let written_after = io_stat(&cgroup, &dev, "wbytes");
    let after: Vec<(u64, u64)> = files
        .iter()
        .map(|f| (psi(f, "some"), psi(f, "full")))
        .collect();
    let ours = pm
        .pod_metrics
        .iter()
        .find(|p| p.pod_sandbox_id == pod_id)
        .unwrap()
        .container_metrics
        .iter()
        .find(|c| c.container_id == id)
        .unwrap();
    let m = &ours.metrics;
    for (i, res) in ["cpu", "memory", "io"].iter().enumerate() {
        let waiting = metric(
            m,
            &format!("container_pressure_{res}_waiting_seconds_total"),
            &[],
        );
        let stalled = metric(
            m,
            &format!("container_pressure_{res}_stalled_seconds_total"),
            &[],
        );
        assert_between(&format!("{res} waiting"), before[i].0, waiting, after[i].0);
        assert_between(&format!("{res} stalled"), before[i].1, stalled, after[i].1);
    }
    let written = metric(
        m,
        "container_blkio_device_usage_total",
        &[major, minor, "Write"],
    );
    assert_between("written", written_before, written, written_after);
    assert!(
        written >= 8 * MIB,
        "8 MiB written through: io.stat says {written}"
    );
    assert!(metric(m, "container_memory_swap", &[]) >= 8 * MIB);
    assert_eq!(
        metric(m, "container_spec_memory_swap_limit_bytes", &[]),
        32 * MIB
    );

    // UpdateContainerResources: every figure changes in the files, and
    // ContainerStatus says what was asked.
    let ask = second_ask(hugetlb, cpus);
    w.rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(ask.resources.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_files(&cgroup, &ask, "after UpdateContainerResources");
    let status = cri::container_status(&mut w.rt, &id).await.unwrap();
    let got = status.resources.unwrap().linux.unwrap();
    assert_eq!(
        (got.cpu_shares, got.cpu_quota, got.cpu_period),
        (1024, 20_000, 50_000)
    );
    assert_eq!(
        (got.memory_limit_in_bytes, got.memory_swap_limit_in_bytes),
        ((96 * MIB) as i64, (160 * MIB) as i64)
    );
    assert_eq!(got.unified, ask.resources.unified);
    assert_eq!(got.cpuset_cpus, ask.resources.cpuset_cpus);
    assert_eq!(got.hugepage_limits, ask.resources.hugepage_limits);
    // The OOM score is the process's: an update leaves it.
    assert_eq!(got.oom_score_adj, 500);
    assert_eq!(
        read(Path::new(&format!("/proc/{pid}/oom_score_adj"))),
        "500"
    );

    // Every figure different, and one the runtime cannot write: the call
    // fails and changes nothing; the files and the record keep the last
    // good figures (crius puts back what the runtime wrote before failing).
    let mut bad = first_ask(hugetlb).resources;
    bad.unified.insert("pids.max".into(), "lots".into());
    let r =
        w.rt.update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(bad),
            ..Default::default()
        })
        .await;
    assert!(r.is_err(), "pids.max=lots accepted");
    assert_files(&cgroup, &ask, "after a failed update");
    let status = cri::container_status(&mut w.rt, &id).await.unwrap();
    assert_eq!(
        status.resources.unwrap().linux.unwrap().unified,
        ask.resources.unified
    );

    w.remove_pod(&pod_id).await;
    w.finish().await;
}

/// On cgroup v1 there is no unified hierarchy to write `unified` keys to.
async fn unified_is_refused_on_v1(handler: &str) {
    let mut w = World::start(CriusOptions::default()).await;
    let pod = w.pod(&format!(
        "v1-{}",
        if handler.is_empty() { "runc" } else { handler }
    ));
    let pod_id = cri::run_pod(&mut w.rt, &pod, handler).await.unwrap();
    let mut config = cri::container_config("unified", &w.image, &["sleep", "1000"]);
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            unified: HashMap::from([("memory.high".to_string(), "1000000".to_string())]),
            ..Default::default()
        }),
        ..Default::default()
    });
    let r = cri::create_container(&mut w.rt, &pod_id, &pod, &config).await;
    let err = r.expect_err("unified accepted on cgroup v1");
    let text = format!("{err:#}");
    assert!(
        text.contains("memory.high") && text.contains("cgroup v1"),
        "{text}"
    );
    assert_eq!(
        cri::container_ids(&mut w.rt, None).await.unwrap(),
        [] as [String; 0]
    );
    // UpdateContainerResources the same, on a container without it.
    let id = w.start_sh(&pod_id, &pod, "plain", "sleep 1000").await;
    let r =
        w.rt.update_container_resources(UpdateContainerResourcesRequest {
            container_id: id,
            linux: config.linux.unwrap().resources,
            ..Default::default()
        })
        .await;
    cri::assert_code(r, Code::InvalidArgument, "cgroup v1");
    w.remove_pod(&pod_id).await;
    w.finish().await;
}
