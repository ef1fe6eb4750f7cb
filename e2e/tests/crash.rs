//! Crash injection: the daemon is killed (SIGKILL, from inside, via
//! `CRIUS_CRASH_AT`) at each named step of RunPodSandbox, CreateContainer,
//! StartContainer, StopContainer, RemoveContainer, StopPodSandbox,
//! RemovePodSandbox and PullImage. After a restart the state must be
//! consistent, the interrupted call must succeed when retried, start-up
//! recovery must have removed what no record knows about, and once
//! everything is removed nothing may leak.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails, never
//! skips, without it.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use crius_e2e::cri::{self, RuntimeClient};
use crius_e2e::{Crius, CriusOptions, Registry, TestImages, assert_no_leaks};
use k8s_cri::v1::{
    ContainerState, NamespaceMode, PodSandboxConfig, PodSandboxState, RemoveContainerRequest,
    RemoveImageRequest, RemovePodSandboxRequest, StopContainerRequest, StopPodSandboxRequest,
};

const CRASH_ENV: &str = "CRIUS_CRASH_AT";
/// How long an armed daemon may take to die once the call is made.
const DIE_TIMEOUT: Duration = Duration::from_secs(60);

/// Restarts `crius` (stopped) armed to crash at `point`.
async fn arm(crius: &mut Crius, point: &str) {
    crius.options_mut().env = vec![(CRASH_ENV.into(), point.into())];
    crius.restart().await.unwrap();
}

/// Checks that the call failed because the daemon killed itself at
/// `point`, then restarts it disarmed; returns a fresh client.
async fn crashed<T: std::fmt::Debug>(
    crius: &mut Crius,
    point: &str,
    call: Result<T, tonic::Status>,
) -> RuntimeClient {
    assert!(call.is_err(), "{point}: the call succeeded: {call:?}");
    let status = crius.wait_exit(DIE_TIMEOUT).await.unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{point}: daemon ended with {status}\n{}",
        crius.log_tail(30)
    );
    let log = std::fs::read_to_string(crius.dir().daemon_log()).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("crash point reached") && l.contains(point)),
        "{point}: not killed at that point\n{}",
        crius.log_tail(30)
    );
    crius.options_mut().env.clear();
    crius.restart().await.unwrap();
    crius.runtime_client()
}

/// Asserts the daemon log, since `from` bytes, says `what`.
fn logged_since(crius: &Crius, from: usize, what: &str, point: &str) {
    let log = std::fs::read_to_string(crius.dir().daemon_log()).unwrap();
    assert!(
        log[from.min(log.len())..].contains(what),
        "{point}: the log does not say {what:?}\n{}",
        crius.log_tail(40)
    );
}

fn log_len(crius: &Crius) -> usize {
    std::fs::metadata(crius.dir().daemon_log()).map_or(0, |m| m.len() as usize)
}

/// A pod with its own PID namespace (so an infra process and a pod cgroup
/// are made too), network and IPC.
fn crash_pod(crius: &Crius, name: &str) -> PodSandboxConfig {
    let mut pod = cri::pod_config(crius.dir(), name);
    if let Some(ns) = pod
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.pid = NamespaceMode::Pod as i32;
    }
    pod
}

/// Ends the test round: stops and removes every pod, stops the daemon and
/// checks nothing leaked.
async fn clean_up(crius: &mut Crius, point: &str) {
    let mut rt = crius.runtime_client();
    for id in cri::pod_ids(&mut rt).await.unwrap() {
        cri::stop_and_remove_pod(&mut rt, &id).await.unwrap();
    }
    crius.stop().await.unwrap();
    eprintln!("crash point {point}: recovered, retried, nothing leaked");
    assert_no_leaks(crius);
}

#[tokio::test]
async fn crashes_in_pod_calls_lose_and_leak_nothing() {
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    crius.stop().await.unwrap();

    for (round, point) in [
        "runp-after-namespaces",
        "runp-during-network",
        "runp-after-network",
        "runp-before-record",
    ]
    .into_iter()
    .enumerate()
    {
        arm(&mut crius, point).await;
        let pod = crash_pod(&crius, &format!("runp{round}"));
        let mut rt = crius.runtime_client();
        let call = cri::run_pod(&mut rt, &pod, "")
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()));
        let from = log_len(&crius);
        let mut rt = crashed(&mut crius, point, call).await;
        // Never recorded: not there, and its leftovers were removed.
        assert!(cri::pod_ids(&mut rt).await.unwrap().is_empty(), "{point}");
        logged_since(
            &crius,
            from,
            "removed the leftovers of an unfinished pod",
            point,
        );
        // The retry gets a working pod (an IP from the same pool).
        let id = cri::run_pod(&mut rt, &pod, "").await.unwrap();
        let status = cri::pod_status(&mut rt, &id).await.unwrap();
        assert_eq!(
            status.state,
            PodSandboxState::SandboxReady as i32,
            "{point}"
        );
        assert!(
            status.network.is_some_and(|n| !n.ip.is_empty()),
            "{point}: no IP"
        );
        clean_up(&mut crius, point).await;
    }

    for (round, point) in [
        "stopp-after-network",
        "removep-after-network",
        "removep-after-files",
    ]
    .into_iter()
    .enumerate()
    {
        arm(&mut crius, point).await;
        let pod = crash_pod(&crius, &format!("rmp{round}"));
        let mut rt = crius.runtime_client();
        let id = cri::run_pod(&mut rt, &pod, "").await.unwrap();
        let stop = rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
        let mut rt = if point.starts_with("stopp") {
            let mut rt = crashed(&mut crius, point, stop).await;
            // Still recorded, and stopping it again finishes the job.
            assert_eq!(cri::pod_ids(&mut rt).await.unwrap(), vec![id.clone()]);
            rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .unwrap();
            rt
        } else {
            stop.unwrap();
            let remove = rt
                .remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await;
            let mut rt = crashed(&mut crius, point, remove).await;
            assert_eq!(cri::pod_ids(&mut rt).await.unwrap(), vec![id.clone()]);
            rt
        };
        let status = cri::pod_status(&mut rt, &id).await.unwrap();
        assert_eq!(
            status.state,
            PodSandboxState::SandboxNotready as i32,
            "{point}"
        );
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
        assert!(cri::pod_ids(&mut rt).await.unwrap().is_empty(), "{point}");
        clean_up(&mut crius, point).await;
    }
}

#[tokio::test]
async fn crashes_in_container_and_image_calls_lose_and_leak_nothing() {
    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let image = images.oci.reference.clone();
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();

    // PullImage, killed once every layer is unpacked.
    let point = "pull-after-layers";
    crius.stop().await.unwrap();
    arm(&mut crius, point).await;
    let mut img = crius.image_client();
    let call = cri::pull_image(&mut img, &image)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()));
    crashed(&mut crius, point, call).await;
    let mut img = crius.image_client();
    assert!(
        cri::image_ids(&mut img).await.unwrap().is_empty(),
        "{point}"
    );
    cri::pull_image(&mut img, &image).await.unwrap();
    assert_eq!(cri::image_ids(&mut img).await.unwrap().len(), 1, "{point}");
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);

    let ticker = [
        "sh",
        "-c",
        "trap 'exit 3' TERM; while true; do echo tick; sleep 0.1; done",
    ];
    for (round, point) in [
        "create-after-rootfs",
        "create-after-monitor",
        "create-before-record",
        "start-before-runtime",
        "start-after-runtime",
        "stop-after-signal",
        "remove-after-runtime-delete",
        "remove-after-unmount",
    ]
    .into_iter()
    .enumerate()
    {
        arm(&mut crius, point).await;
        let pod = crash_pod(&crius, &format!("ctr{round}"));
        let mut rt = crius.runtime_client();
        let pod_id = cri::run_pod(&mut rt, &pod, "").await.unwrap();
        let config = cri::container_config("ticker", &image, &ticker);
        let from = log_len(&crius);
        let create = cri::create_container(&mut rt, &pod_id, &pod, &config)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()));
        let (mut rt, id) = if point.starts_with("create") {
            let mut rt = crashed(&mut crius, point, create).await;
            assert!(
                cri::container_ids(&mut rt, None).await.unwrap().is_empty(),
                "{point}"
            );
            logged_since(
                &crius,
                from,
                "removed the leftovers of an unfinished container",
                point,
            );
            let id = cri::create_container(&mut rt, &pod_id, &pod, &config)
                .await
                .unwrap();
            cri::start_container(&mut rt, &id).await.unwrap();
            (rt, id)
        } else {
            let id = create.unwrap();
            let start = cri::start_container(&mut rt, &id)
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()));
            if point.starts_with("start") {
                let mut rt = crashed(&mut crius, point, start).await;
                let status = cri::container_status(&mut rt, &id).await.unwrap();
                if point == "start-before-runtime" {
                    assert_eq!(
                        status.state,
                        ContainerState::ContainerCreated as i32,
                        "{point}"
                    );
                    cri::start_container(&mut rt, &id).await.unwrap();
                } else {
                    // The start happened; recovery recorded it.
                    assert_eq!(
                        status.state,
                        ContainerState::ContainerRunning as i32,
                        "{point}: {status:?}"
                    );
                    logged_since(&crius, from, "recorded the start of a container", point);
                }
                (rt, id)
            } else {
                start.unwrap();
                (rt, id)
            }
        };
        cri::wait_container_state(&mut rt, &id, ContainerState::ContainerRunning)
            .await
            .unwrap();
        // The trap is set once it ticks; a TERM before that would kill it
        // (143) instead of making it exit 3.
        let log = std::path::Path::new(&pod.log_directory).join("ticker.log");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !cri::read_cri_log(&log).is_ok_and(|l| l.iter().any(|l| l.content == "tick")) {
            assert!(
                std::time::Instant::now() < deadline,
                "{point}: no tick in {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stop = rt
            .stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: 10,
            })
            .await;
        let mut rt = if point.starts_with("stop") {
            let mut rt = crashed(&mut crius, point, stop).await;
            // The container got the signal and exited while the daemon
            // was down; the exit is found.
            let status = cri::wait_container_state(&mut rt, &id, ContainerState::ContainerExited)
                .await
                .unwrap();
            assert_eq!(status.exit_code, 3, "{point}: {status:?}");
            rt.stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: 10,
            })
            .await
            .unwrap();
            rt
        } else {
            stop.unwrap();
            rt
        };
        let remove = rt
            .remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await;
        let mut rt = if point.starts_with("remove") {
            let mut rt = crashed(&mut crius, point, remove).await;
            let status = cri::container_status(&mut rt, &id).await.unwrap();
            assert_eq!(
                status.state,
                ContainerState::ContainerExited as i32,
                "{point}"
            );
            rt.remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
            rt
        } else {
            remove.unwrap();
            rt
        };
        assert!(
            cri::container_ids(&mut rt, None).await.unwrap().is_empty(),
            "{point}"
        );
        clean_up(&mut crius, point).await;
    }

    crius.restart().await.unwrap();
    let mut img = crius.image_client();
    for id in cri::image_ids(&mut img).await.unwrap() {
        img.remove_image(RemoveImageRequest {
            image: Some(k8s_cri::v1::ImageSpec {
                image: id,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}
