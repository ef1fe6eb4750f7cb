//! Concurrent load: 50 pods, each with a container, made and started at
//! once, then stopped and removed at once, twice over. No call may hang
//! (each phase is bounded), every object must be listed in the state its
//! calls left it in (no lost update), and nothing may leak.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails, never
//! skips, without it.

use std::time::{Duration, Instant};

use crius_e2e::cri::{self, RuntimeClient};
use crius_e2e::{Crius, CriusOptions, Registry, TestImages, assert_no_leaks};
use k8s_cri::v1::{
    ContainerState, ListContainersRequest, ListPodSandboxRequest, PodSandboxState,
    RemoveContainerRequest, StopContainerRequest,
};

/// Pods (each with one container) per round.
const PODS: usize = 50;
/// Rounds of make-all then remove-all.
const ROUNDS: usize = 2;
/// A bound on each phase: a deadlock fails the test instead of hanging
/// it. Not a performance assertion (the figures are printed).
const PHASE_BOUND: Duration = Duration::from_secs(300);

/// Runs `f` for every index at once; panics naming the first failure, or
/// if the whole phase does not finish within [`PHASE_BOUND`].
async fn all_at_once<F, Fut, T>(what: &str, crius: &Crius, f: F) -> Vec<T>
where
    F: Fn(usize, RuntimeClient) -> Fut,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let began = Instant::now();
    let tasks: Vec<_> = (0..PODS)
        .map(|i| tokio::spawn(f(i, crius.runtime_client())))
        .collect();
    let joined = tokio::time::timeout(PHASE_BOUND, futures_util::future::join_all(tasks))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{what}: not done within {PHASE_BOUND:?} (deadlock?)\n{}",
                crius.log_tail(40)
            )
        });
    let mut out = Vec::new();
    for (i, r) in joined.into_iter().enumerate() {
        match r.unwrap() {
            Ok(v) => out.push(v),
            Err(e) => panic!("{what} #{i}: {e}\n{}", crius.log_tail(40)),
        }
    }
    eprintln!(
        "load: {what}: {PODS} at once in {:.2} s",
        began.elapsed().as_secs_f64()
    );
    out
}

#[tokio::test]
async fn fifty_pods_at_once_twice_lose_and_leak_nothing() {
    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let image = images.oci.reference.clone();
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut img = crius.image_client();
    cri::pull_image(&mut img, &image).await.unwrap();

    for round in 0..ROUNDS {
        let dir = crius.dir();
        let made = all_at_once("RunPodSandbox+CreateContainer+StartContainer", &crius, {
            |i, mut rt| {
                let pod = cri::pod_config(dir, &format!("load{round}-{i}"));
                let config = cri::container_config("sleeper", &image, &["sleep", "3600"]);
                async move {
                    let pod_id = cri::run_pod(&mut rt, &pod, "")
                        .await
                        .map_err(|e| e.to_string())?;
                    let id = cri::create_container(&mut rt, &pod_id, &pod, &config)
                        .await
                        .map_err(|e| e.to_string())?;
                    cri::start_container(&mut rt, &id)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok((pod_id, id))
                }
            }
        })
        .await;

        // Every pod ready, every container running, each exactly once.
        let mut rt = crius.runtime_client();
        let pods = rt
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(pods.len(), PODS, "round {round}: pods listed");
        assert!(
            pods.iter()
                .all(|p| p.state == PodSandboxState::SandboxReady as i32),
            "round {round}: {pods:?}"
        );
        let containers = rt
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(containers.len(), PODS, "round {round}: containers listed");
        for (pod_id, id) in &made {
            let c = containers
                .iter()
                .find(|c| &c.id == id)
                .unwrap_or_else(|| panic!("round {round}: container {id} not listed"));
            assert_eq!(&c.pod_sandbox_id, pod_id);
            assert_eq!(
                c.state,
                ContainerState::ContainerRunning as i32,
                "round {round}: {c:?}"
            );
        }
        let mut ips: Vec<String> = Vec::new();
        for (pod_id, _) in &made {
            let status = cri::pod_status(&mut rt, pod_id).await.unwrap();
            ips.push(status.network.map(|n| n.ip).unwrap_or_default());
        }
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), PODS, "round {round}: pod IPs not distinct");

        let made = std::sync::Arc::new(made);
        all_at_once(
            "StopContainer+RemoveContainer+StopPodSandbox+RemovePodSandbox",
            &crius,
            {
                let made = made.clone();
                move |i, mut rt| {
                    let (pod_id, id) = made[i].clone();
                    async move {
                        // Two stops of the same container race (kubelet
                        // retries); both succeed, one does the work.
                        let mut rt2 = rt.clone();
                        let stop = |id: String| StopContainerRequest {
                            container_id: id,
                            timeout: 1,
                        };
                        let (a, b) = tokio::join!(
                            rt.stop_container(stop(id.clone())),
                            rt2.stop_container(stop(id.clone()))
                        );
                        a.and(b).map_err(|e| format!("StopContainer {id}: {e}"))?;
                        rt.remove_container(RemoveContainerRequest {
                            container_id: id.clone(),
                        })
                        .await
                        .map_err(|e| format!("RemoveContainer {id}: {e}"))?;
                        cri::stop_and_remove_pod(&mut rt, &pod_id)
                            .await
                            .map_err(|e| e.to_string())
                    }
                }
            },
        )
        .await;
        assert!(cri::pod_ids(&mut rt).await.unwrap().is_empty());
        assert!(cri::container_ids(&mut rt, None).await.unwrap().is_empty());
    }

    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// Containers of one pod made at once: they are made side by side (the
/// pod's lock is shared by creates), all listed once and running, then
/// removed at once with the pod.
#[tokio::test]
async fn many_containers_in_one_pod_at_once() {
    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let image = images.oci.reference.clone();
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut img = crius.image_client();
    cri::pull_image(&mut img, &image).await.unwrap();
    let mut rt = crius.runtime_client();
    let pod = cri::pod_config(crius.dir(), "crowded");
    let pod_id = cri::run_pod(&mut rt, &pod, "").await.unwrap();

    let ids = all_at_once(
        "CreateContainer+StartContainer in one pod",
        &crius,
        |i, mut rt| {
            let config = cri::container_config(&format!("c{i}"), &image, &["sleep", "3600"]);
            let (pod, pod_id) = (pod.clone(), pod_id.clone());
            async move {
                let id = cri::create_container(&mut rt, &pod_id, &pod, &config)
                    .await
                    .map_err(|e| e.to_string())?;
                cri::start_container(&mut rt, &id)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(id)
            }
        },
    )
    .await;
    let mut listed = cri::container_ids(&mut rt, None).await.unwrap();
    listed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(listed, want);
    for id in &ids {
        let status = cri::container_status(&mut rt, id).await.unwrap();
        assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    }
    // Removing the pod (which stops and removes them) races removes of
    // each container: every call succeeds, and nothing remains.
    let ids = std::sync::Arc::new(ids);
    let remover = {
        let (mut rt, pod_id) = (crius.runtime_client(), pod_id.clone());
        tokio::spawn(async move { cri::stop_and_remove_pod(&mut rt, &pod_id).await })
    };
    all_at_once(
        "RemoveContainer racing RemovePodSandbox",
        &crius,
        |i, mut rt| {
            let id = ids[i].clone();
            async move {
                rt.remove_container(RemoveContainerRequest {
                    container_id: id.clone(),
                })
                .await
                .map(drop)
                .map_err(|e| format!("RemoveContainer {id}: {e}"))
            }
        },
    )
    .await;
    tokio::time::timeout(PHASE_BOUND, remover)
        .await
        .expect("RemovePodSandbox hung")
        .unwrap()
        .unwrap();
    assert!(cri::pod_ids(&mut rt).await.unwrap().is_empty());
    assert!(cri::container_ids(&mut rt, None).await.unwrap().is_empty());
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}
