//! A node restart under a stopped daemon: the state directory (a tmpfs:
//! namespace pins, bundles, exit files, runtime state) is gone, and every
//! container and infra process with it, while the records and the CNI
//! cache remain. The daemon must come up, report the pods not ready and
//! the containers exited, and remove them all, releasing their IPs.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails, never
//! skips, without it.

use crius_e2e::cri;
use crius_e2e::{Crius, CriusOptions, Registry, TestImages, assert_no_leaks};
use k8s_cri::v1::{ContainerState, NamespaceMode, PodSandboxState, RemoveContainerRequest};

#[tokio::test]
async fn after_a_node_restart_pods_are_not_ready_containers_exited_and_all_removable() {
    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let image = images.oci.reference.clone();
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut img = crius.image_client();
    cri::pull_image(&mut img, &image).await.unwrap();
    let mut rt = crius.runtime_client();

    // One pod with its own PID namespace (an infra process), one on the
    // default: a running and a created container in the first.
    let mut shared = cri::pod_config(crius.dir(), "shared-pid");
    if let Some(ns) = shared
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.pid = NamespaceMode::Pod as i32;
    }
    let plain = cri::pod_config(crius.dir(), "plain");
    let shared_id = cri::run_pod(&mut rt, &shared, "").await.unwrap();
    let plain_id = cri::run_pod(&mut rt, &plain, "").await.unwrap();
    let running = cri::container_config("running", &image, &["sleep", "3600"]);
    let running_id = cri::create_container(&mut rt, &shared_id, &shared, &running)
        .await
        .unwrap();
    cri::start_container(&mut rt, &running_id).await.unwrap();
    let created = cri::container_config("created", &image, &["true"]);
    let created_id = cri::create_container(&mut rt, &shared_id, &shared, &created)
        .await
        .unwrap();

    crius.stop().await.unwrap();
    crius.dir().simulate_reboot();
    crius.restart().await.unwrap();
    let mut rt = crius.runtime_client();

    for pod in [&shared_id, &plain_id] {
        let status = cri::pod_status(&mut rt, pod).await.unwrap();
        assert_eq!(
            status.state,
            PodSandboxState::SandboxNotready as i32,
            "{status:?}"
        );
    }
    for id in [&running_id, &created_id] {
        let status = cri::container_status(&mut rt, id).await.unwrap();
        assert_eq!(
            status.state,
            ContainerState::ContainerExited as i32,
            "{status:?}"
        );
        assert_eq!(status.exit_code, 255, "{status:?}");
        assert_eq!(status.reason, "Unknown", "{status:?}");
        assert!(status.message.contains("node restarted"), "{status:?}");
    }
    let log = std::fs::read_to_string(crius.dir().daemon_log()).unwrap();
    assert!(
        log.contains("lost with a node restart"),
        "{}",
        crius.log_tail(30)
    );

    // kubelet removes them; their IPs go back to the pool.
    for id in [&running_id, &created_id] {
        rt.remove_container(RemoveContainerRequest {
            container_id: id.to_string(),
        })
        .await
        .unwrap();
    }
    for pod in [&shared_id, &plain_id] {
        cri::stop_and_remove_pod(&mut rt, pod).await.unwrap();
    }
    assert!(cri::pod_ids(&mut rt).await.unwrap().is_empty());
    // A new pod works on the restarted node.
    let again = cri::run_pod(&mut rt, &plain, "").await.unwrap();
    cri::stop_and_remove_pod(&mut rt, &again).await.unwrap();
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}
