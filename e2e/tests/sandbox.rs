//! Pod sandboxes in every namespace mode the CRI names, with what kubelet
//! asks of them: a shared PID namespace (and its infra process, across a
//! daemon restart), PID TARGET, DNS config and hostname, sysctls, the pod
//! cgroup and /dev/shm size, host PID and IPC, ListPodSandbox filters,
//! idempotent Stop/Remove, bad requests that change nothing, and the
//! leftovers of a pod whose record a crash lost.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{World, set_namespaces};
use crius_e2e::{CriusOptions, cri};
use k8s_cri::v1::{
    DnsConfig, LinuxContainerConfig, LinuxContainerSecurityContext, ListPodSandboxRequest,
    NamespaceMode, NamespaceOption, PodSandboxFilter, PodSandboxState, PodSandboxStateValue,
    PodSandboxStatusRequest,
};
use tonic::Code;

/// The verbose info of a pod, parsed.
async fn pod_info(w: &mut World, id: &str) -> serde_json::Value {
    let resp =
        w.rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    serde_json::from_str(&resp.info["info"]).unwrap()
}

/// A `/proc/<pid>/status` field.
fn proc_status(pid: i64, field: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| Some(l.strip_prefix(field)?.trim().to_string()))
}

/// Waits (bounded) until process `pid` is gone (or a zombie).
async fn wait_gone(pid: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while proc_status(pid, "State:").is_some_and(|s| !s.starts_with('Z')) {
        assert!(Instant::now() < deadline, "process {pid} is still alive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text without terminal colour sequences.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn containers_of_a_shared_pid_pod_see_each_other_across_a_restart() {
    let mut w = World::start(CriusOptions::default()).await;
    let mut pod = w.pod("shared-pid");
    set_namespaces(&mut pod, NamespaceMode::Pod, NamespaceMode::Pod);
    let id = w.run_pod(&pod).await;
    let info = pod_info(&mut w, &id).await;
    let infra = info["pid"].as_i64().unwrap();
    assert!(infra > 0, "{info}");
    assert!(info["namespaces"]["pid"].is_string(), "{info}");
    // The infra process: the pod's, unprivileged, in the pod's cgroup.
    assert_eq!(
        proc_status(infra, "Uid:").unwrap(),
        "65534\t65534\t65534\t65534"
    );
    assert_eq!(proc_status(infra, "CapEff:").unwrap(), "0000000000000000");
    let cgroups = std::fs::read_to_string(format!("/proc/{infra}/cgroup")).unwrap();
    let pod_cgroup = format!("{}/{id}/infra", w.crius.dir().cgroup_parent());
    assert!(
        cgroups.lines().any(|l| l.ends_with(&pod_cgroup)),
        "{cgroups}"
    );

    w.start_sh(&id, &pod, "sleeper", "exec sleep 1000").await;
    let seen = w
        .run_sh(
            &id,
            &pod,
            "looker",
            "ps -o pid,args | grep -v grep | grep -c 'sleep 1000'; cat /proc/1/comm; \
             ls /proc/1/root/ >/dev/null 2>&1 || echo root-hidden",
        )
        .await;
    assert_eq!(seen, ["1", "crius-pod-infra", "root-hidden"]);

    // The infra process outlives the daemon; a container made after the
    // restart joins the same namespace.
    w.crius.stop().await.unwrap();
    assert!(
        proc_status(infra, "State:").is_some(),
        "infra died with the daemon"
    );
    w.crius.restart().await.unwrap();
    w.rt = w.crius.runtime_client();
    let seen = w
        .run_sh(
            &id,
            &pod,
            "looker2",
            "ps -o args | grep -v grep | grep -c 'sleep 1000'",
        )
        .await;
    assert_eq!(seen, ["1"]);

    // StopPodSandbox kills it (and so everything in the namespace).
    w.rt.stop_pod_sandbox(k8s_cri::v1::StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    wait_gone(infra).await;
    assert_eq!(pod_info(&mut w, &id).await["pid"], 0);
    w.remove_pod(&id).await;
    w.finish().await;
}

#[tokio::test]
async fn pid_target_joins_another_containers_namespace() {
    let mut w = World::start(CriusOptions::default()).await;
    let pod = w.pod("target"); // PID mode CONTAINER, as kubelet sends it
    let id = w.run_pod(&pod).await;
    let target = w.start_sh(&id, &pod, "app", "exec sleep 1000").await;
    let mut debug = cri::container_config(
        "debug",
        &w.image,
        &["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo"],
    );
    debug.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                pid: NamespaceMode::Target as i32,
                target_id: target.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let debug_id = w.start_container(&id, &pod, debug.clone()).await;
    cri::wait_container_state(
        &mut w.rt,
        &debug_id,
        k8s_cri::v1::ContainerState::ContainerExited,
    )
    .await
    .unwrap();
    assert_eq!(common::stdout(&w.log_path(&pod, "debug")), ["sleep 1000 "]);
    // Without a target id, or with one that is not running: refused.
    let mut no_target = debug.clone();
    no_target.metadata.as_mut().unwrap().name = "debug2".into();
    if let Some(ns) = no_target
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.target_id.clear();
    }
    let r =
        w.rt.create_container(k8s_cri::v1::CreateContainerRequest {
            pod_sandbox_id: id.clone(),
            config: Some(no_target),
            sandbox_config: Some(pod.clone()),
        })
        .await;
    cri::assert_code(r, Code::InvalidArgument, "target_id");
    w.remove_pod(&id).await;
    w.finish().await;
}

#[tokio::test]
async fn dns_config_and_hostname_appear_inside_the_container() {
    let mut w = World::start(CriusOptions::default()).await;
    let mut pod = w.pod("dns");
    pod.hostname = "dns-test-host".into();
    pod.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into(), "192.0.2.53".into()],
        searches: vec!["ns1.svc.cluster.local".into(), "cluster.local".into()],
        options: vec!["ndots:5".into(), "timeout:2".into()],
    });
    let id = w.run_pod(&pod).await;
    let ip = cri::pod_status(&mut w.rt, &id)
        .await
        .unwrap()
        .network
        .unwrap()
        .ip;
    let lines = w
        .run_sh(
            &id,
            &pod,
            "show",
            "cat /etc/resolv.conf; hostname; cat /etc/hostname; grep dns-test-host /etc/hosts",
        )
        .await;
    assert_eq!(
        lines,
        [
            "search ns1.svc.cluster.local cluster.local".to_string(),
            "nameserver 10.96.0.10".into(),
            "nameserver 192.0.2.53".into(),
            "options ndots:5 timeout:2".into(),
            "dns-test-host".into(),
            "dns-test-host".into(),
            format!("{ip}\tdns-test-host"),
        ]
    );
    w.remove_pod(&id).await;
    w.finish().await;
}

#[tokio::test]
async fn sysctls_pod_cgroup_and_shm_size() {
    let mut w = World::start(CriusOptions::default()).await;
    let host_port_start =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    let mut pod = w.pod("tuned");
    pod.linux.as_mut().unwrap().sysctls = HashMap::from([
        (
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "80".to_string(),
        ),
        ("kernel.shm_rmid_forced".into(), "1".into()),
        ("net/ipv4/conf/eth0/accept_local".into(), "1".into()),
    ]);
    pod.annotations
        .insert("crius.io/shm-size".into(), "16Mi".into());
    let id = w.run_pod(&pod).await;
    let lines = w
        .run_sh(
            &id,
            &pod,
            "show",
            "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shm_rmid_forced \
             /proc/sys/net/ipv4/conf/eth0/accept_local; \
             df -k /dev/shm | tail -n 1 | tr -s ' ' | cut -d' ' -f2",
        )
        .await;
    assert_eq!(lines, ["80", "1", "1", "16384"]);
    // The node's own values are untouched.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap(),
        host_port_start
    );
    // The container's cgroup is below the pod's.
    let running = w.start_sh(&id, &pod, "idle", "exec sleep 1000").await;
    let memory_cgroup = crius_e2e::node_shape::cgroup_dir(
        "memory",
        &format!("{}/{id}/{running}", w.crius.dir().cgroup_parent()),
    );
    assert!(
        memory_cgroup.join("cgroup.procs").is_file(),
        "{} missing",
        memory_cgroup.display()
    );
    w.remove_pod(&id).await;

    // Bad requests change nothing and name what was wrong.
    let bad = |f: &dyn Fn(&mut k8s_cri::v1::PodSandboxConfig)| {
        let mut p = w.pod("bad");
        f(&mut p);
        p
    };
    let cases: Vec<(k8s_cri::v1::PodSandboxConfig, &str)> = vec![
        (
            bad(&|p| {
                p.linux
                    .as_mut()
                    .unwrap()
                    .sysctls
                    .insert("kernel.pid_max".into(), "99999".into());
            }),
            "kernel.pid_max",
        ),
        (
            bad(&|p| {
                set_namespaces(p, NamespaceMode::Node, NamespaceMode::Container);
                p.linux
                    .as_mut()
                    .unwrap()
                    .sysctls
                    .insert("net.core.somaxconn".into(), "1024".into());
            }),
            "net.core.somaxconn",
        ),
        (
            bad(&|p| {
                p.annotations
                    .insert("crius.io/shm-size".into(), "lots".into());
            }),
            "crius.io/shm-size",
        ),
        (
            bad(&|p| {
                p.linux.as_mut().unwrap().cgroup_parent = "/kubepods/../../escape".into();
            }),
            "cgroup_parent",
        ),
        // Found out only when written (the kernel refuses it): the pod is
        // undone.
        (
            bad(&|p| {
                p.linux
                    .as_mut()
                    .unwrap()
                    .sysctls
                    .insert("net.ipv4.ip_unprivileged_port_start".into(), "many".into());
            }),
            "net.ipv4.ip_unprivileged_port_start",
        ),
        (
            bad(&|p| {
                p.linux
                    .as_mut()
                    .unwrap()
                    .sysctls
                    .insert("net.ipv4.no_such_knob".into(), "1".into());
            }),
            "net.ipv4.no_such_knob",
        ),
        (
            bad(&|p| {
                set_namespaces(p, NamespaceMode::Pod, NamespaceMode::Target);
            }),
            "TARGET",
        ),
    ];
    for (config, needle) in cases {
        let r =
            w.rt.run_pod_sandbox(k8s_cri::v1::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await;
        cri::assert_code(r, Code::InvalidArgument, needle);
    }
    let r =
        w.rt.run_pod_sandbox(k8s_cri::v1::RunPodSandboxRequest {
            config: Some(w.pod("bad-handler")),
            runtime_handler: "no-such-handler".into(),
        })
        .await;
    cri::assert_code(r, Code::InvalidArgument, "no-such-handler");
    w.finish().await;
}

#[tokio::test]
async fn stop_and_remove_are_idempotent_and_remove_takes_the_containers() {
    let mut w = World::start(CriusOptions::default()).await;
    let pod = w.pod("twice");
    let id = w.run_pod(&pod).await;
    let other = w.run_pod(&w.pod("other")).await;
    let c = w.start_sh(&id, &pod, "c", "exec sleep 1000").await;
    let info = pod_info(&mut w, &id).await;
    let netns = info["netns"].as_str().unwrap().to_string();
    assert!(netns.ends_with("/ns/net"), "{info}");
    assert!(std::path::Path::new(&netns).exists());
    // The CNI chain's result under containerd's key: the pod's IP is the
    // one it gave eth0 in the pod's namespace.
    let ip =
        w.rt.pod_sandbox_status(k8s_cri::v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .network
        .unwrap()
        .ip;
    let result = &info["cniResult"];
    let eth0 = result["interfaces"]
        .as_array()
        .and_then(|i| {
            i.iter()
                .position(|i| i["name"] == "eth0" && i["sandbox"] == netns.as_str())
        })
        .unwrap_or_else(|| panic!("no eth0 in {netns}: {info}"));
    assert!(
        result["ips"].as_array().unwrap().iter().any(|a| {
            a["interface"] == eth0
                && a["address"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{ip}/"))
        }),
        "{ip} not in {result}"
    );
    w.rt.stop_pod_sandbox(k8s_cri::v1::StopPodSandboxRequest {
        pod_sandbox_id: other.clone(),
    })
    .await
    .unwrap();

    // ListPodSandbox filters: id (or a prefix), state, labels.
    let list = async |w: &mut World, filter: PodSandboxFilter| -> Vec<String> {
        let mut ids: Vec<String> =
            w.rt.list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(filter),
            })
            .await
            .unwrap()
            .into_inner()
            .items
            .into_iter()
            .map(|p| p.id)
            .collect();
        ids.sort();
        ids
    };
    let mut both = vec![id.clone(), other.clone()];
    both.sort();
    assert_eq!(list(&mut w, PodSandboxFilter::default()).await, both);
    let by_id = PodSandboxFilter {
        id: id[..12].to_string(),
        ..Default::default()
    };
    assert_eq!(list(&mut w, by_id).await, [id.as_str()]);
    let state = |s: PodSandboxState| PodSandboxFilter {
        state: Some(PodSandboxStateValue { state: s as i32 }),
        ..Default::default()
    };
    assert_eq!(
        list(&mut w, state(PodSandboxState::SandboxReady)).await,
        [id.as_str()]
    );
    assert_eq!(
        list(&mut w, state(PodSandboxState::SandboxNotready)).await,
        [other.as_str()]
    );
    let labels = |v: &str| PodSandboxFilter {
        label_selector: HashMap::from([("e2e-pod".to_string(), v.to_string())]),
        ..Default::default()
    };
    assert_eq!(list(&mut w, labels("other")).await, [other.as_str()]);
    assert_eq!(list(&mut w, labels("nobody")).await, [] as [String; 0]);
    w.remove_pod(&other).await;

    for _ in 0..2 {
        w.rt.stop_pod_sandbox(k8s_cri::v1::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    }
    let status = cri::container_status(&mut w.rt, &c).await.unwrap();
    assert_eq!(
        status.state,
        k8s_cri::v1::ContainerState::ContainerExited as i32
    );
    // The network was torn down once: a second DEL would have run the
    // plugins again, which the daemon logs.
    let log = strip_ansi(&std::fs::read_to_string(w.crius.dir().daemon_log()).unwrap());
    let dels = log
        .lines()
        .filter(|l| l.contains("command=DEL") && l.contains("plugin=\"bridge\""))
        .count();
    // (Two pods were stopped: "other" and this one.)
    assert_eq!(dels, 2, "bridge DEL ran {dels} times");
    for _ in 0..2 {
        w.rt.remove_pod_sandbox(k8s_cri::v1::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    }
    assert_eq!(
        cri::container_ids(&mut w.rt, None).await.unwrap(),
        [] as [String; 0]
    );
    w.finish().await;
}

#[tokio::test]
async fn a_pod_whose_record_was_lost_is_cleaned_up_at_start() {
    let mut w = World::start(CriusOptions::default()).await;
    let mut pod = w.pod("lost");
    set_namespaces(&mut pod, NamespaceMode::Pod, NamespaceMode::Pod);
    let id = w.run_pod(&pod).await;
    let infra = pod_info(&mut w, &id).await["pid"].as_i64().unwrap();
    // A crash before the record was written: kill the daemon, drop the
    // record.
    w.crius.kill().unwrap();
    let record = w
        .crius
        .dir()
        .root()
        .join("meta/pods")
        .join(format!("{id}.json"));
    std::fs::remove_file(&record).unwrap();
    w.crius.restart().await.unwrap();
    w.rt = w.crius.runtime_client();
    assert_eq!(cri::pod_ids(&mut w.rt).await.unwrap(), [] as [String; 0]);
    wait_gone(infra).await;
    // finish() checks that no interface, address, mount, process, cgroup
    // or directory of it is left.
    for base in [w.crius.dir().state(), w.crius.dir().root()] {
        assert!(!base.join("pods").join(&id).exists());
    }
    w.finish().await;
}

#[tokio::test]
async fn host_pid_and_host_ipc_pods_see_the_nodes() {
    let mut w = World::start(CriusOptions::default()).await;
    let mut pod = w.pod("host-pid-ipc");
    pod.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options = Some(NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Node as i32,
        ipc: NamespaceMode::Node as i32,
        ..Default::default()
    });
    // A file in the node's POSIX shared memory, removed whatever happens.
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let marker = format!("crius-e2e-{}", w.crius.dir().id());
    let shm_file = Remove(std::path::Path::new("/dev/shm").join(&marker));
    std::fs::write(&shm_file.0, "node").unwrap();
    let id = w.run_pod(&pod).await;
    let me = std::process::id();
    let lines = w
        .run_sh(
            &id,
            &pod,
            "look",
            &format!("test -d /proc/{me} && echo sees-the-test; cat /dev/shm/{marker}"),
        )
        .await;
    assert_eq!(lines, ["sees-the-test", "node"]);
    let info = pod_info(&mut w, &id).await;
    assert!(info["namespaces"].get("ipc").is_none(), "{info}");
    assert_eq!(info["pid"], 0, "no infra process: {info}");
    w.remove_pod(&id).await;
    w.finish().await;
}
