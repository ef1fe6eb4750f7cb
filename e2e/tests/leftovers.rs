//! Failure and stop paths leave nothing running or half-torn-down:
//!
//! - a RunPodSandbox that fails on a full state directory kills the infra
//!   process it started (the pod is retried once there is room);
//! - a CNI DEL that fails keeps the pod's network namespace (and its
//!   cached result) until a DEL succeeds, so the bridge plugin still finds
//!   what to undo: no masquerade rule is left, after a crash before the
//!   pod's record (the next start retries) or after a failed ADD whose
//!   rollback DEL failed too (retried while the daemon runs);
//! - StopContainer kills what was exec'd into a container whose PID
//!   namespace is the pod's: nothing of it runs once it is reported
//!   exited.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{World, set_namespaces};
use crius_e2e::cri;
use crius_e2e::host::{cgroup_processes, iptables_rules_of};
use crius_e2e::{CriusOptions, find_leaks};
use k8s_cri::v1::{ContainerState, ExecSyncRequest, NamespaceMode, StopContainerRequest};

/// The command lines of `crius-monitor` processes for this test's `dir`.
fn monitors(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|c| c.contains("crius-monitor") && c.contains(&needle))
        .collect()
}

/// Processes running `crius-monitor pod-infra` for a pod of this test.
fn infra_processes(dir: &Path) -> Vec<String> {
    monitors(dir)
        .into_iter()
        .filter(|c| c.contains("pod-infra"))
        .collect()
}

/// Container monitors of this test.
fn monitor_processes(dir: &Path) -> Vec<String> {
    monitors(dir)
        .into_iter()
        .filter(|c| !c.contains("pod-infra"))
        .collect()
}

/// A file filling the filesystem of `dir`; removed on drop.
struct Filler(PathBuf);

impl Filler {
    fn fill(dir: &Path) -> Filler {
        let path = dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        Filler(path)
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn a_pod_start_failing_on_a_full_state_dir_leaves_no_infra_process() {
    let mut w = World::start(CriusOptions::default()).await;
    w.crius.stop().await.unwrap();
    // The state directory on a small filesystem of its own (the harness
    // unmounts it whatever happens).
    let state = w.crius.dir().state();
    nix::mount::mount(
        Some("tmpfs"),
        &state,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=4m,mode=0711"),
    )
    .unwrap();
    w.crius.restart().await.unwrap();
    w.rt = w.crius.runtime_client();
    let mut pod = w.pod("full");
    set_namespaces(&mut pod, NamespaceMode::Pod, NamespaceMode::Pod);
    let filler = Filler::fill(&state);
    let failed = cri::run_pod(&mut w.rt, &pod, "").await;
    let message = format!("{failed:?}");
    assert!(failed.is_err(), "the pod ran on a full state dir");
    assert!(message.contains("No space left"), "{message}");
    assert_eq!(
        infra_processes(w.crius.dir().path()),
        Vec::<String>::new(),
        "{message}"
    );
    assert_eq!(cri::pod_ids(&mut w.rt).await.unwrap(), Vec::<String>::new());
    // With room again the same pod runs.
    drop(filler);
    let id = cri::run_pod(&mut w.rt, &pod, "").await.unwrap();
    assert_eq!(
        infra_processes(w.crius.dir().path()).len(),
        2,
        "keeper and init"
    );
    // A container made on a full state dir fails and leaves no monitor.
    let config = cri::container_config("c", &w.image, &["sleep", "1000"]);
    let filler = Filler::fill(&state);
    let failed = cri::create_container(&mut w.rt, &id, &pod, &config).await;
    assert!(
        format!("{failed:?}").contains("No space left"),
        "{failed:?}"
    );
    assert_eq!(
        monitor_processes(w.crius.dir().path()),
        Vec::<String>::new()
    );
    assert!(
        cri::container_ids(&mut w.rt, None)
            .await
            .unwrap()
            .is_empty()
    );
    drop(filler);
    cri::create_container(&mut w.rt, &id, &pod, &config)
        .await
        .unwrap();
    w.remove_pod(&id).await;
    w.crius.stop().await.unwrap();
    let leaks: Vec<String> = find_leaks(w.crius.dir())
        .into_iter()
        .filter(|l| *l != format!("mount {}", state.display()))
        .collect();
    assert_eq!(leaks, Vec::<String>::new());
    nix::mount::umount2(&state, nix::mount::MntFlags::MNT_DETACH).unwrap();
}

/// A plugin of the test's own in front of the real one: refuses `command`
/// while the marker file `marker` exists beside it.
fn refusing_wrapper(bin_dir: &Path, plugin: &str, command: &str, marker: &str) {
    let real = crius_e2e::installed_cni_plugin(plugin).unwrap();
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$CNI_COMMAND\" = {command} ] && [ -e \"$(dirname \"$0\")/{marker}\" ]; then\n\
         printf '{{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"{command} refused by the test\"}}'\n\
         exit 1\n\
         fi\n\
         exec {}\n",
        real.display()
    );
    let path = bin_dir.join(plugin);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The pod directories in the state directory.
fn pod_dirs(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("pods"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_failed_cni_del_keeps_the_netns_until_one_succeeds() {
    let mut w = World::start(CriusOptions {
        config: Some("[cni]\nteardown_retry_secs = 1\n".into()),
        ..Default::default()
    })
    .await;
    w.crius.stop().await.unwrap();
    let dir = w.crius.dir();
    let (bin, state) = (dir.cni_bin_dir(), dir.state());
    let network = dir.network_name();
    // Masquerade on: the bridge plugin's NAT rules are what a DEL without
    // the namespace leaves behind.
    let mut conflist = dir.conflist();
    conflist["plugins"][0]["ipMasq"] = true.into();
    std::fs::write(
        dir.cni_conf_dir().join("10-crius-e2e.conflist"),
        serde_json::to_vec(&conflist).unwrap(),
    )
    .unwrap();
    refusing_wrapper(&bin, "bridge", "DEL", "fail-del");
    refusing_wrapper(&bin, "portmap", "ADD", "fail-add");
    let fail_del = bin.join("fail-del");
    let fail_add = bin.join("fail-add");

    // 1. The daemon dies before the pod's record; its next start cannot
    //    DEL (the plugin refuses); the one after can.
    w.crius.options_mut().env = vec![("CRIUS_CRASH_AT".into(), "runp-before-record".into())];
    w.crius.restart().await.unwrap();
    let pod = w.pod("crashed");
    let crashed = cri::run_pod(&mut w.crius.runtime_client(), &pod, "").await;
    assert!(crashed.is_err());
    w.crius.wait_exit(Duration::from_secs(60)).await.unwrap();
    assert!(
        !iptables_rules_of(&network).is_empty(),
        "no masquerade rule was made"
    );
    std::fs::write(&fail_del, b"").unwrap();
    w.crius.options_mut().env.clear();
    w.crius.restart().await.unwrap();
    let kept = pod_dirs(&state);
    assert_eq!(kept.len(), 1, "{}", w.crius.log_tail(30));
    assert!(
        kept[0].join("ns/net").exists(),
        "the netns went before its DEL"
    );
    std::fs::remove_file(&fail_del).unwrap();
    w.crius.stop().await.unwrap();
    w.crius.restart().await.unwrap();
    assert_eq!(
        pod_dirs(&state),
        Vec::<PathBuf>::new(),
        "{}",
        w.crius.log_tail(30)
    );
    assert_eq!(iptables_rules_of(&network), Vec::<String>::new());

    // 2. ADD fails after the bridge attached the pod, and the rollback DEL
    //    fails too: the netns stays, and the DEL is retried until it works.
    std::fs::write(&fail_add, b"").unwrap();
    std::fs::write(&fail_del, b"").unwrap();
    w.rt = w.crius.runtime_client();
    let pod = w.pod("rollback");
    let failed = cri::run_pod(&mut w.rt, &pod, "").await;
    assert!(
        format!("{failed:?}").contains("ADD refused by the test"),
        "{failed:?}"
    );
    assert!(!iptables_rules_of(&network).is_empty());
    let kept = pod_dirs(&state);
    assert_eq!(kept.len(), 1, "{}", w.crius.log_tail(30));
    assert!(
        kept[0].join("ns/net").exists(),
        "the netns went before its DEL"
    );
    std::fs::remove_file(&fail_add).unwrap();
    std::fs::remove_file(&fail_del).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !pod_dirs(&state).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the teardown was not retried\n{}",
            w.crius.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        std::fs::read_to_string(w.crius.dir().daemon_log())
            .unwrap()
            .contains("tore down the network of a pod whose start failed")
    );
    // finish() counts any rule naming the network as a leak.
    w.finish().await;
}

#[tokio::test]
async fn stop_kills_what_was_execed_into_a_shared_pid_namespace() {
    let mut w = World::start(CriusOptions::default()).await;
    let mut pod = w.pod("exec-left");
    set_namespaces(&mut pod, NamespaceMode::Pod, NamespaceMode::Pod);
    let pod_id = w.run_pod(&pod).await;
    let ctr = w
        .start_sh(&pod_id, &pod, "main", "echo up; sleep 1000")
        .await;
    w.wait_for_line(&pod, "main", "up").await;
    w.rt.exec_sync(ExecSyncRequest {
        container_id: ctr.clone(),
        cmd: ["sh", "-c", "sleep 999 </dev/null >/dev/null 2>&1 &"]
            .map(String::from)
            .to_vec(),
        timeout: 10,
    })
    .await
    .unwrap();
    let cgroup = format!("{}/{pod_id}/{ctr}", w.crius.dir().cgroup_parent());
    assert_eq!(
        cgroup_processes(&cgroup).len(),
        2,
        "sleep 1000 and sleep 999"
    );
    w.rt.stop_container(StopContainerRequest {
        container_id: ctr.clone(),
        timeout: 2,
    })
    .await
    .unwrap();
    let status = cri::container_status(&mut w.rt, &ctr).await.unwrap();
    assert_eq!(status.state, ContainerState::ContainerExited as i32);
    assert_eq!(
        cgroup_processes(&cgroup),
        Vec::<u32>::new(),
        "left running after Stop"
    );
    w.remove_pod(&pod_id).await;
    w.finish().await;
}
