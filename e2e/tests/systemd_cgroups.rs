//! The systemd cgroup driver, with real runc and crun and a real systemd
//! (the guest lane's node). With `cgroup_driver = "systemd"` a pod's
//! cgroup is a slice below the slice kubelet names, its infra process is
//! in a scope of its own, its containers are scopes runc and crun make
//! with `--systemd-cgroup`; resources are unit properties and cgroup
//! files alike, stats come from the scopes, and once the pod is removed
//! systemd knows none of its units. A daemon killed with a pod running
//! finds it whole again. `auto` picks systemd there, and RuntimeConfig
//! tells kubelet.
//!
//! On a node without systemd (this repo's CI host) the systemd driver
//! refuses to start, saying why, and `auto` picks cgroupfs.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{World, set_namespaces};
use crius_e2e::cri;
use crius_e2e::host::processes_below;
use crius_e2e::{Crius, CriusOptions, node_shape};
use k8s_cri::v1::{
    CgroupDriver, ContainerState, ContainerStatsRequest, LinuxContainerConfig,
    LinuxContainerResources, NamespaceMode, RemoveContainerRequest, RunPodSandboxRequest,
    RuntimeConfigRequest, StatusRequest, StopContainerRequest, UpdateContainerResourcesRequest,
};
use tonic::Code;

/// Whether this node can have the systemd driver: systemd as PID 1 on
/// cgroup v2 (what `auto` picks it for).
fn systemd_node() -> bool {
    node_shape::systemd_booted() && node_shape::cgroup_v2()
}

/// `systemctl ARGS…`'s stdout.
fn systemctl(args: &[&str]) -> String {
    let out = Command::new("systemctl").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The units systemd knows whose names contain `needle`, any state.
fn units_named(needle: &str) -> Vec<String> {
    systemctl(&["list-units", "--all", "--plain", "--no-legend", "--full"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|u| u.contains(needle))
        .map(str::to_string)
        .collect()
}

/// A unit's property, as `systemctl show -p NAME --value` prints it.
fn unit_property(unit: &str, name: &str) -> String {
    systemctl(&["show", unit, "-p", name, "--value"])
        .trim()
        .to_string()
}

/// The cgroup (unified hierarchy) of process `pid`.
fn cgroup_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

#[tokio::test]
async fn auto_picks_the_driver_of_the_node_and_runtime_config_tells_it() {
    let mut crius = Crius::start(CriusOptions {
        cgroup_driver: "auto",
        ..CriusOptions::without_cni()
    })
    .await
    .unwrap();
    let mut rt = crius.runtime_client();
    let want = if systemd_node() {
        CgroupDriver::Systemd
    } else {
        CgroupDriver::Cgroupfs
    };
    let config = rt
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(config.linux.unwrap().cgroup_driver, want as i32);
    let info = rt
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner()
        .info;
    let named = if want == CgroupDriver::Systemd {
        "\"systemd\""
    } else {
        "\"cgroupfs\""
    };
    assert_eq!(info.get("cgroupDriver").map(String::as_str), Some(named));
    crius.stop().await.unwrap();
}

/// What the test checks of one container: its scope, its resources as
/// unit properties and cgroup files, its stats, an update.
async fn check_container(
    w: &mut World,
    pod_slice_dir: &Path,
    pod_id: &str,
    pod: &k8s_cri::v1::PodSandboxConfig,
    name: &str,
) -> String {
    let mut config = cri::container_config(name, &w.image, &["sh", "-c", "echo up; sleep 1000"]);
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = w.start_container(pod_id, pod, config).await;
    w.wait_for_line(pod, name, "up").await;
    let scope = format!("crius-{id}.scope");
    let dir = pod_slice_dir.join(&scope);
    // The container's processes are in its scope (crun puts them in a
    // `container` cgroup below it, runc in the scope itself).
    // The shell has printed "up"; its sleep may still be on its way
    // (forked, not yet exec'd: an empty command line), so look a while.
    let mut procs = Vec::new();
    let mut cmdlines: Vec<String> = Vec::new();
    for _ in 0..100 {
        procs = processes_below(&dir);
        cmdlines = procs
            .iter()
            .map(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ")
            })
            .collect();
        if cmdlines.iter().any(|c| c.trim() == "sleep 1000") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        cmdlines.iter().any(|c| c.trim() == "sleep 1000"),
        "{name}'s scope holds {cmdlines:?}"
    );
    let mut limited = None;
    for pid in &procs {
        let cgroup = Path::new("/sys/fs/cgroup").join(cgroup_of(*pid).trim_start_matches('/'));
        assert!(cgroup.starts_with(&dir), "{pid} is in {}", cgroup.display());
        limited = Some(cgroup);
    }
    // Where the runtime set the limits: runc on the scope, as unit
    // properties and files alike; crun in the cgroup below the scope that
    // systemd delegated to it, as files (systemd knows none of them).
    let limited = limited.unwrap();
    assert_eq!(unit_property(&scope, "ActiveState"), "active");
    if limited == dir {
        assert_eq!(
            unit_property(&scope, "MemoryMax"),
            (64u64 << 20).to_string()
        );
    } else {
        assert_eq!(unit_property(&scope, "Delegate"), "yes");
    }
    assert_eq!(read(&limited.join("memory.max")), (64u64 << 20).to_string());
    assert_eq!(read(&limited.join("cpu.max")), "50000 100000");
    // Stats come from the scope.
    let stats =
        w.rt.container_stats(ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let memory = stats.memory.unwrap();
    assert!(
        memory.working_set_bytes.unwrap().value > 0,
        "{memory:?} of {name}"
    );
    // An update reaches the same cgroup.
    w.rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(read(&limited.join("memory.max")), (96u64 << 20).to_string());
    id
}

/// A container over its memory limit is OOMKilled, although systemd
/// removes its scope, and the count in its `memory.events`, as soon as its
/// last process has gone (critest's OOM spec failed that way with runc).
async fn oom_kill(w: &mut World, pod_id: &str, pod: &k8s_cri::v1::PodSandboxConfig) {
    let mut config = cri::container_config(
        "hog",
        &w.image,
        &[
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}",
        ],
    );
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            memory_swap_limit_in_bytes: 16 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = w.start_container(pod_id, pod, config).await;
    let status = cri::wait_container_state(&mut w.rt, &id, ContainerState::ContainerExited)
        .await
        .unwrap();
    assert_eq!(status.reason, "OOMKilled", "{status:?}");
    assert_eq!(status.exit_code, 137, "{status:?}");
    w.rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pods_and_containers_are_slices_and_scopes_of_systemd_with_runc() {
    slices_and_scopes("runc").await;
}

#[tokio::test]
async fn pods_and_containers_are_slices_and_scopes_of_systemd_with_crun() {
    slices_and_scopes("crun").await;
}

/// The systemd driver's life of a pod with `handler`; without systemd,
/// its refusal.
async fn slices_and_scopes(handler: &str) {
    if !systemd_node() {
        // Without systemd (or cgroup v2) the driver is refused at
        // start-up, saying why.
        let err = Crius::start(CriusOptions {
            cgroup_driver: "systemd",
            ..CriusOptions::without_cni()
        })
        .await
        .err()
        .expect("the systemd driver started without systemd");
        let text = err.to_string();
        let why = if node_shape::systemd_booted() {
            "the systemd cgroup driver needs the unified cgroup v2 hierarchy"
        } else {
            "the systemd cgroup driver needs systemd running as PID 1"
        };
        assert!(text.contains(why), "{text}");
        return;
    }
    let mut w = World::start(CriusOptions {
        cgroup_driver: "systemd",
        ..Default::default()
    })
    .await;
    // Below the test's slice (which its cleanup stops), a pod slice as
    // kubelet names them.
    let parent_stem = format!("crius_e2e_{}", w.crius.dir().id());
    assert_eq!(
        w.crius.dir().cgroup_parent(),
        format!("{parent_stem}.slice")
    );
    let mut pod = w.pod(&format!("sd-{handler}"));
    set_namespaces(&mut pod, NamespaceMode::Pod, NamespaceMode::Pod);
    let kubelet_slice = format!("{parent_stem}-pod{}.slice", w.crius.dir().id());
    pod.linux.as_mut().unwrap().cgroup_parent = kubelet_slice.clone();
    let pod_id = cri::run_pod(&mut w.rt, &pod, handler).await.unwrap();
    let pod_slice = format!(
        "{parent_stem}-pod{}-crius_{pod_id}.slice",
        w.crius.dir().id()
    );
    let pod_slice_dir = PathBuf::from(format!(
        "/sys/fs/cgroup/{parent_stem}.slice/{kubelet_slice}/{pod_slice}"
    ));
    assert!(
        pod_slice_dir.is_dir(),
        "{} missing",
        pod_slice_dir.display()
    );
    assert_eq!(unit_property(&pod_slice, "ActiveState"), "active");
    let infra = format!("crius-infra-{pod_id}.scope");
    assert_eq!(unit_property(&infra, "Slice"), pod_slice);
    let infra_procs = read(&pod_slice_dir.join(&infra).join("cgroup.procs"));
    assert_eq!(infra_procs.lines().count(), 1, "{infra_procs}");

    let ctr = check_container(&mut w, &pod_slice_dir, &pod_id, &pod, handler).await;
    oom_kill(&mut w, &pod_id, &pod).await;

    // A daemon killed with the pod running finds it whole.
    w.crius.kill().unwrap();
    w.crius.restart().await.unwrap();
    w.rt = w.crius.runtime_client();
    assert_eq!(
        cri::pod_ids(&mut w.rt).await.unwrap(),
        std::slice::from_ref(&pod_id)
    );
    assert_eq!(
        unit_property(&format!("crius-{ctr}.scope"), "ActiveState"),
        "active"
    );
    assert_eq!(
        read(&pod_slice_dir.join(&infra).join("cgroup.procs")),
        infra_procs
    );

    // Stopping and removing a container takes its scope.
    w.rt.stop_container(StopContainerRequest {
        container_id: ctr.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    w.rt.remove_container(RemoveContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .unwrap();
    let gone = |needle: &str| {
        let needle = needle.to_string();
        async move {
            for _ in 0..100 {
                if units_named(&needle).is_empty() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("systemd still has {:?}", units_named(&needle));
        }
    };
    gone(&ctr).await;

    // Removing the pod takes the rest: nothing of it is left in systemd.
    w.remove_pod(&pod_id).await;
    gone(&pod_id).await;
    assert!(!pod_slice_dir.exists(), "{} left", pod_slice_dir.display());
    // The same parent by its place in the tree, as critest sends
    // `/test.slice`: the pod gets the same slice below it.
    let mut by_path = w.pod(&format!("sd-path-{handler}"));
    set_namespaces(&mut by_path, NamespaceMode::Pod, NamespaceMode::Pod);
    by_path.linux.as_mut().unwrap().cgroup_parent = format!("/{parent_stem}.slice/{kubelet_slice}");
    let path_pod = cri::run_pod(&mut w.rt, &by_path, handler).await.unwrap();
    assert_eq!(
        unit_property(&format!("crius-infra-{path_pod}.scope"), "Slice"),
        format!(
            "{parent_stem}-pod{}-crius_{path_pod}.slice",
            w.crius.dir().id()
        )
    );
    w.remove_pod(&path_pod).await;
    gone(&path_pod).await;
    // A path that is not where systemd puts that slice is refused.
    by_path.linux.as_mut().unwrap().cgroup_parent = format!("/{kubelet_slice}");
    let r =
        w.rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(by_path),
            runtime_handler: handler.into(),
        })
        .await;
    cri::assert_code(r, Code::InvalidArgument, "cgroup_parent");

    // Then kubelet removes its pod slice (crius's parent, not crius's).
    let kubelet_dir = pod_slice_dir.parent().unwrap();
    assert_eq!(processes_below(kubelet_dir), [] as [u32; 0]);
    systemctl(&["stop", &kubelet_slice]);
    assert!(!kubelet_dir.exists(), "{} left", kubelet_dir.display());
    w.finish().await;
}
