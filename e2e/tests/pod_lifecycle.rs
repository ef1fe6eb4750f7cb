//! A pod's whole life through the CRI API, as kubelet drives it: images
//! pulled from a real registry, a pod on a real CNI bridge, containers run
//! by a real OCI runtime, their output in CRI log files — and nothing left
//! behind afterwards.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails, never
//! skips, without it.

use std::collections::HashMap;

use crius_e2e::cri::{self, LogLine};
use crius_e2e::image::{DATA_LISTING, ENTRYPOINT_MARKER, LAYER2_CONTENT, OPAQUE_LISTING};
use crius_e2e::{Crius, CriusOptions, Registry, TestImages, assert_no_leaks};
use k8s_cri::v1::{
    ContainerFilter, ContainerState, ContainerStateValue, ImageFsInfoRequest, ImageSpec,
    ImageStatusRequest, LinuxContainerConfig, LinuxContainerResources, ListImagesRequest,
    PodSandboxState, RemoveContainerRequest, StopContainerRequest, VersionRequest,
};

/// What the first container runs (after the image's entrypoint).
const SCRIPT: &str = "echo hello-from-crius; echo to-stderr >&2; hostname; cat /data/layer2; \
    ls /data; test ! -e /data/gone && echo gone-ok; ls /data/opaque; \
    echo entrypoint-$E2E_ENTRYPOINT; echo $E2E_IMAGE_ENV $E2E_CONFIG_ENV; pwd; \
    echo net $(ls /sys/class/net); ip -4 -o addr show eth0 | tr -s ' ' | cut -d' ' -f4 | cut -d/ -f1; \
    echo oom $(cat /proc/self/oom_score_adj); echo from-c1 > /dev/shm/c1-was-here";

#[tokio::test]
async fn pod_lifecycle_with_the_default_runtime() {
    pod_lifecycle("", "runc").await;
}

#[tokio::test]
async fn pod_lifecycle_with_crun() {
    pod_lifecycle("crun", "crun").await;
}

/// Runs the scenario with RunPodSandbox's `handler`, which must end up
/// using OCI runtime `runtime`.
async fn pod_lifecycle(handler: &str, runtime: &str) {
    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut rt = crius.runtime_client();
    let mut img = crius.image_client();

    // Version and Status.
    let version = rt
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.runtime_name, "crius");
    assert_eq!(version.runtime_api_version, "v1");
    let conditions = cri::runtime_conditions(&mut rt).await.unwrap();
    for condition in ["RuntimeReady", "NetworkReady"] {
        let found = conditions.get(condition);
        assert!(
            found.is_some_and(|c| c.status),
            "{condition}: {conditions:?}"
        );
    }

    // Images: all three manifest kinds resolve to the expected config.
    for image in images.all() {
        let image_ref = cri::pull_image(&mut img, &image.reference).await.unwrap();
        assert_eq!(image_ref, image.image_id, "PullImage {}", image.reference);
    }
    let listed = img
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(listed.len(), 2, "{listed:?}"); // :index is :oci's image
    // A filter naming the repository alone (`crictl images REPO`) lists
    // every image in it; with a tag, the one image.
    let filtered = |image: &str| {
        let mut img = img.clone();
        let image = image.to_string();
        async move {
            let mut ids: Vec<String> = img
                .list_images(ListImagesRequest {
                    filter: Some(k8s_cri::v1::ImageFilter {
                        image: Some(ImageSpec {
                            image,
                            ..Default::default()
                        }),
                    }),
                })
                .await
                .unwrap()
                .into_inner()
                .images
                .into_iter()
                .map(|i| i.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let mut all: Vec<String> = listed.iter().map(|i| i.id.clone()).collect();
    all.sort();
    let oci = &images.all()[0];
    assert_eq!(filtered(&oci.repository).await, all);
    assert_eq!(
        filtered(&oci.reference).await,
        std::slice::from_ref(&oci.image_id)
    );
    assert_eq!(
        filtered(&format!("{}-other", oci.repository)).await,
        [] as [String; 0]
    );
    for image in images.all() {
        let entry = listed.iter().find(|i| i.id == image.image_id).unwrap();
        assert!(entry.repo_tags.contains(&image.reference), "{entry:?}");
        assert!(
            entry.repo_digests.contains(&image.repo_digest()),
            "{entry:?}"
        );
        assert!(entry.size > 0);

        let status = img
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: image.reference.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image
            .unwrap();
        assert_eq!(status.id, entry.id);
        assert_eq!(sorted(&status.repo_tags), sorted(&entry.repo_tags));
        assert_eq!(sorted(&status.repo_digests), sorted(&entry.repo_digests));
    }
    let oci_image = listed
        .iter()
        .find(|i| i.id == images.oci.image_id)
        .unwrap()
        .clone();

    // ImageFsInfo: what kubelet's image GC reads (and crictl checks).
    let fs = img
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let image_fs = &fs.image_filesystems[0];
    assert_eq!(
        image_fs.fs_id.as_ref().unwrap().mountpoint,
        crius.dir().root().to_string_lossy()
    );
    // Blobs and unpacked layers: at least the compressed images, at most
    // what the whole root holds.
    let used = image_fs.used_bytes.as_ref().unwrap().value;
    let pulled: u64 = listed.iter().map(|i| i.size).sum();
    assert!(used >= pulled, "used {used} < pulled {pulled}");
    assert!(image_fs.inodes_used.as_ref().unwrap().value > 10);

    // The pod.
    let pod = cri::pod_config(crius.dir(), "e2e-pod");
    let pod_id = cri::run_pod(&mut rt, &pod, handler).await.unwrap();
    let status = cri::pod_status(&mut rt, &pod_id).await.unwrap();
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(status.metadata, pod.metadata);
    assert_eq!(status.labels, pod.labels);
    assert_eq!(status.annotations, pod.annotations);
    if !handler.is_empty() {
        assert_eq!(status.runtime_handler, handler);
    }
    let ip = status.network.unwrap().ip;
    assert!(
        crius.dir().subnet_contains(&ip),
        "pod IP {ip:?} not in {}",
        crius.dir().subnet()
    );

    // A container that runs to completion.
    let mut c1 = cri::container_config("c1", &images.oci.reference, &["sh", "-c", SCRIPT]);
    c1.envs = cri::envs(&[("E2E_CONFIG_ENV", "2")]);
    // What kubelet asks for a Guaranteed pod; root here cannot go below its
    // own score, so the runtime must clamp it rather than fail.
    c1.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            oom_score_adj: -997,
            ..Default::default()
        }),
        ..Default::default()
    });
    let c1_id = cri::create_container(&mut rt, &pod_id, &pod, &c1)
        .await
        .unwrap();
    cri::start_container(&mut rt, &c1_id).await.unwrap();
    let status = cri::wait_container_state(&mut rt, &c1_id, ContainerState::ContainerExited)
        .await
        .unwrap();
    let log_path = crius.dir().pod_log_dir("e2e-pod").join("c1.log");
    assert_eq!(
        status.exit_code,
        0,
        "{status:?}\n{:?}",
        std::fs::read_to_string(&log_path)
    );
    assert_eq!(status.metadata, c1.metadata);
    assert!(0 < status.created_at, "{status:?}");
    assert!(status.created_at <= status.started_at, "{status:?}");
    assert!(status.started_at <= status.finished_at, "{status:?}");
    assert_eq!(status.image.unwrap().image, images.oci.reference);
    assert!(
        status.image_ref == oci_image.id || oci_image.repo_digests.contains(&status.image_ref),
        "image_ref {:?} is neither the id nor a repo digest of {oci_image:?}",
        status.image_ref
    );
    assert_eq!(status.log_path, log_path.to_string_lossy());
    assert_eq!(status.labels, c1.labels);
    assert_eq!(status.annotations, c1.annotations);

    let log = cri::read_cri_log(&log_path).unwrap();
    assert!(log.iter().all(|l| l.tag == "F"), "{log:?}");
    let stream = |name: &str| -> Vec<String> {
        log.iter()
            .filter(|l| l.stream == name)
            .map(|l: &LogLine| l.content.clone())
            .collect()
    };
    let mut expected = vec!["hello-from-crius", "e2e-pod", LAYER2_CONTENT];
    expected.extend(DATA_LISTING);
    expected.push("gone-ok");
    expected.extend(OPAQUE_LISTING);
    let marker = format!("entrypoint-{}", ENTRYPOINT_MARKER.1);
    // The pod's network namespace (its interfaces and IP), and the
    // daemon's own oom_score_adj (the test's: 0).
    let own_oom = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    let oom = format!("oom {}", own_oom.trim().parse::<i32>().unwrap().max(-997));
    expected.extend([marker.as_str(), "1 2", "/data", "net eth0 lo", &ip, &oom]);
    assert_eq!(stream("stdout"), expected);
    assert_eq!(stream("stderr"), ["to-stderr"]);

    // Another container of the pod sees the first one's /dev/shm.
    let c3 = cri::container_config(
        "c3",
        &images.oci.reference,
        &["cat", "/dev/shm/c1-was-here"],
    );
    let c3_id = cri::create_container(&mut rt, &pod_id, &pod, &c3)
        .await
        .unwrap();
    cri::start_container(&mut rt, &c3_id).await.unwrap();
    let status = cri::wait_container_state(&mut rt, &c3_id, ContainerState::ContainerExited)
        .await
        .unwrap();
    assert_eq!(status.exit_code, 0, "{status:?}");
    let log = cri::read_cri_log(&crius.dir().pod_log_dir("e2e-pod").join("c3.log")).unwrap();
    assert_eq!(
        log.iter().map(|l| l.content.as_str()).collect::<Vec<_>>(),
        ["from-c1"]
    );
    rt.remove_container(RemoveContainerRequest {
        container_id: c3_id,
    })
    .await
    .unwrap();

    // Listing, by pod and by state.
    let by_pod = |id: &str| ContainerFilter {
        pod_sandbox_id: id.to_string(),
        ..Default::default()
    };
    let by_state = |state: ContainerState| ContainerFilter {
        state: Some(ContainerStateValue {
            state: state as i32,
        }),
        ..Default::default()
    };
    let list = async |rt: &mut cri::RuntimeClient, filter| {
        let mut ids = cri::container_ids(rt, Some(filter)).await.unwrap();
        ids.sort();
        ids
    };
    assert_eq!(list(&mut rt, by_pod(&pod_id)).await, [c1_id.as_str()]);
    assert_eq!(
        list(&mut rt, by_pod("no-such-pod")).await,
        [] as [String; 0]
    );
    let exited = by_state(ContainerState::ContainerExited);
    assert_eq!(list(&mut rt, exited.clone()).await, [c1_id.as_str()]);
    let running = by_state(ContainerState::ContainerRunning);
    assert_eq!(list(&mut rt, running.clone()).await, [] as [String; 0]);

    // A long-running container, stopped. sleep is PID 1 and has no SIGTERM
    // handler, so SIGTERM is ignored and SIGKILL ends it after the timeout.
    let c2 = cri::container_config("c2", &images.oci.reference, &["sleep", "1000"]);
    let c2_id = cri::create_container(&mut rt, &pod_id, &pod, &c2)
        .await
        .unwrap();
    cri::start_container(&mut rt, &c2_id).await.unwrap();
    cri::wait_container_state(&mut rt, &c2_id, ContainerState::ContainerRunning)
        .await
        .unwrap();
    assert_eq!(list(&mut rt, running).await, [c2_id.as_str()]);
    assert_runtime_holds_containers(&crius, runtime);
    let mut both = vec![c1_id.clone(), c2_id.clone()];
    both.sort();
    assert_eq!(list(&mut rt, by_pod(&pod_id)).await, both);
    rt.stop_container(StopContainerRequest {
        container_id: c2_id.clone(),
        timeout: 2,
    })
    .await
    .unwrap();
    let status = cri::container_status(&mut rt, &c2_id).await.unwrap();
    assert_eq!(status.state, ContainerState::ContainerExited as i32);
    assert_eq!(status.exit_code, 137, "{status:?}");
    assert_eq!(list(&mut rt, exited).await, both);

    for id in [&c1_id, &c2_id] {
        rt.remove_container(RemoveContainerRequest {
            container_id: id.to_string(),
        })
        .await
        .unwrap();
    }
    assert_eq!(
        cri::container_ids(&mut rt, None).await.unwrap(),
        [] as [String; 0]
    );

    // What was made shows in the metrics.
    let metrics = crius_e2e::http_get(crius.metrics_addr().unwrap(), "/metrics").unwrap();
    for (kind, n) in [("pod_sandbox", 1.0), ("container", 3.0)] {
        let series = format!("crius_created_total{{kind=\"{kind}\"}}");
        assert_eq!(crius_e2e::sample(&metrics, &series), Some(n), "{metrics}");
    }

    // The pod goes.
    rt.stop_pod_sandbox(k8s_cri::v1::StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .unwrap();
    let status = cri::pod_status(&mut rt, &pod_id).await.unwrap();
    assert_eq!(status.state, PodSandboxState::SandboxNotready as i32);
    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();
    assert_eq!(cri::pod_ids(&mut rt).await.unwrap(), [] as [String; 0]);

    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut items = items.to_vec();
    items.sort();
    items
}

/// While a container exists, the runtime chosen holds its state, and only it.
fn assert_runtime_holds_containers(crius: &Crius, runtime: &str) {
    let held: HashMap<String, usize> = crius
        .dir()
        .runtime_roots()
        .iter()
        .map(|root| {
            let name = root.file_name().unwrap().to_string_lossy().into_owned();
            let count = std::fs::read_dir(root).map_or(0, |d| d.count());
            (name, count)
        })
        .collect();
    for (name, count) in &held {
        assert_eq!(
            *count > 0,
            name == runtime,
            "expected only {runtime} to hold containers: {held:?}"
        );
    }
}
