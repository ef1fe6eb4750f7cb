//! Pods in user namespaces (CRI userns mode POD, kubelet's hostUsers:
//! false), with real runc and crun: inside, the mapping is the pod's, the
//! process is root, the image's files and a host volume's root-owned files
//! (and an image volume's) look root-owned, a file made in the volume by
//! the container's root is the host root's (the volume is an ID-mapped
//! mount); the pod's files, /dev/shm, /proc, /sys and the container's
//! cgroup (at its cgroup namespace's root on v2) work; containers of a
//! pod share one user namespace (and a shared PID namespace works too);
//! bad requests are refused naming the pod; nothing is left behind.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

mod common;

use std::os::unix::fs::MetadataExt;

use common::World;
use crius_e2e::CriusOptions;
use crius_e2e::cri;
use k8s_cri::v1::{
    ContainerFilter, ContainerState, IdMapping, ImageSpec, Mount, NamespaceMode, PodSandboxConfig,
    RunPodSandboxRequest, StatusRequest, UserNamespace,
};
use tonic::Code;

const HOST_ID: u32 = 100000;
const LENGTH: u32 = 65536;

fn mapping(container_id: u32, host_id: u32) -> IdMapping {
    IdMapping {
        container_id,
        host_id,
        length: LENGTH,
    }
}

/// `pod` with user namespace options `userns` and PID mode `pid`.
fn with_userns(
    mut pod: PodSandboxConfig,
    userns: UserNamespace,
    pid: NamespaceMode,
) -> PodSandboxConfig {
    let ns = pod
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap();
    ns.userns_options = Some(userns);
    ns.pid = pid as i32;
    pod
}

fn pod_mode(uids: Vec<IdMapping>) -> UserNamespace {
    UserNamespace {
        mode: NamespaceMode::Pod as i32,
        gids: uids.clone(),
        uids,
    }
}

/// What the container reports about itself, one fact a line.
const SCRIPT: &str = "cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'; \
    echo uid=$(id -u); \
    echo image-owner=$(stat -c %u /bin/busybox); \
    echo volume-owner=$(stat -c %u /vol/host-file); \
    echo image-volume-owner=$(stat -c %u /imgvol/bin/busybox); \
    touch /vol/created && echo volume-writable; \
    echo hostname=$(cat /etc/hostname); \
    test -s /etc/resolv.conf && echo resolv-readable; \
    touch /dev/shm/x && echo shm-writable; \
    test -e /sys/class/net/lo && echo sysfs-ok; \
    test -e /proc/self/status && echo proc-ok; \
    touch /rootfs-file && echo rootfs-writable; \
    if test -e /sys/fs/cgroup/cgroup.controllers; then \
        echo cgroupfs=v2 $(cat /proc/self/cgroup); \
        cat /sys/fs/cgroup/pids.max >/dev/null && echo cgroup-limits-readable; \
    elif test -d /sys/fs/cgroup/memory; then echo cgroupfs=v1; fi; \
    readlink /proc/self/ns/user";

#[tokio::test]
async fn pods_in_user_namespaces_with_runc() {
    user_namespaces("", "userns-runc").await;
}

#[tokio::test]
async fn pods_in_user_namespaces_with_crun() {
    user_namespaces("crun", "userns-crun").await;
}

async fn user_namespaces(handler: &str, pod_name: &str) {
    let mut w = World::start(CriusOptions::default()).await;
    let status =
        w.rt.status(StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    for h in &status.runtime_handlers {
        assert!(h.features.as_ref().unwrap().user_namespaces, "{:?}", h.name);
    }
    let volume = tempfile::tempdir().unwrap();
    std::fs::write(volume.path().join("host-file"), "x").unwrap();

    // Shared PID namespace too (the infra process then lives in the user
    // namespace).
    for (pid, suffix) in [(NamespaceMode::Container, "c"), (NamespaceMode::Pod, "p")] {
        let name = format!("{pod_name}-{suffix}");
        let pod = with_userns(w.pod(&name), pod_mode(vec![mapping(0, HOST_ID)]), pid);
        let pod_id = cri::run_pod(&mut w.rt, &pod, handler).await.unwrap();
        let status = cri::pod_status(&mut w.rt, &pod_id).await.unwrap();
        let userns = status
            .linux
            .and_then(|l| l.namespaces)
            .and_then(|n| n.options)
            .and_then(|o| o.userns_options)
            .unwrap();
        assert_eq!(userns.mode, NamespaceMode::Pod as i32);
        assert_eq!(userns.uids, [mapping(0, HOST_ID)]);
        let mut lines = Vec::new();
        for container in ["one", "two"] {
            let mut config = cri::container_config(container, &w.image, &["sh", "-c", SCRIPT]);
            config.mounts = vec![
                Mount {
                    container_path: "/vol".into(),
                    host_path: volume.path().to_string_lossy().into_owned(),
                    ..Default::default()
                },
                // An image volume: its layers ID-mapped as the rootfs's.
                Mount {
                    container_path: "/imgvol".into(),
                    readonly: true,
                    image: Some(ImageSpec {
                        image: w.image.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ];
            let id = w.start_container(&pod_id, &pod, config).await;
            let status = cri::wait_container_state(&mut w.rt, &id, ContainerState::ContainerExited)
                .await
                .unwrap();
            let out = common::stdout(&w.log_path(&pod, container));
            assert_eq!(status.exit_code, 0, "{status:?} {out:?}");
            lines.push(out);
        }
        let out = &lines[0];
        for want in [
            format!("0 {HOST_ID} {LENGTH}"),
            "uid=0".into(),
            "image-owner=0".into(),
            "volume-owner=0".into(),
            "image-volume-owner=0".into(),
            "volume-writable".into(),
            format!("hostname={name}"),
            "resolv-readable".into(),
            "shm-writable".into(),
            "sysfs-ok".into(),
            "proc-ok".into(),
            "rootfs-writable".into(),
            // The container's own cgroup, at the root of its cgroup
            // namespace on v2, its limits readable.
            if crius_e2e::node_shape::cgroup_v2() {
                "cgroupfs=v2 0::/".into()
            } else {
                "cgroupfs=v1".into()
            },
        ] {
            assert!(out.contains(&want), "{want:?} not in {out:?}");
        }
        if crius_e2e::node_shape::cgroup_v2() {
            assert!(out.iter().any(|l| l == "cgroup-limits-readable"), "{out:?}");
        }
        // Both containers in one user namespace (not the host's).
        let host_userns = std::fs::read_link("/proc/self/ns/user").unwrap();
        let userns = |out: &Vec<String>| out.last().unwrap().clone();
        assert_eq!(userns(&lines[0]), userns(&lines[1]));
        assert_ne!(userns(&lines[0]), host_userns.to_string_lossy());
        // The volume is an ID-mapped mount (as containerd does it): the
        // container's root (host ID HOST_ID) writes through the mapping,
        // so its file is stored as the host's root, the owner it sees.
        let created = std::fs::metadata(volume.path().join("created")).unwrap();
        assert_eq!((created.uid(), created.gid()), (0, 0));
        std::fs::remove_file(volume.path().join("created")).unwrap();
        // A volume whose filesystem cannot be ID-mapped (sysfs): refused
        // naming it, and nothing of the container is left (the leak check
        // at the end sees every mount).
        let mut config = cri::container_config("unmappable", &w.image, &["true"]);
        config.mounts = vec![Mount {
            container_path: "/unmappable".into(),
            host_path: "/sys/kernel".into(),
            ..Default::default()
        }];
        let err = cri::create_container(&mut w.rt, &pod_id, &pod, &config)
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("/unmappable"), "{err:?}");
        assert_eq!(
            cri::container_ids(
                &mut w.rt,
                Some(ContainerFilter {
                    pod_sandbox_id: pod_id.clone(),
                    ..Default::default()
                })
            )
            .await
            .unwrap()
            .len(),
            2
        );
        w.remove_pod(&pod_id).await;
    }

    // Refused, naming the pod: not one mapping, 0 not mapped, modes
    // CONTAINER and TARGET.
    for (userns, why) in [
        (
            pod_mode(vec![mapping(0, 1000), mapping(0, 2000)]),
            "exactly one",
        ),
        (pod_mode(vec![mapping(1, 1000)]), "container ID 0"),
        (
            UserNamespace {
                mode: NamespaceMode::Container as i32,
                ..Default::default()
            },
            "CONTAINER",
        ),
        (
            UserNamespace {
                mode: NamespaceMode::Target as i32,
                ..Default::default()
            },
            "TARGET",
        ),
    ] {
        let pod = with_userns(w.pod("userns-bad"), userns, NamespaceMode::Container);
        let err =
            w.rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod),
                runtime_handler: handler.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains("userns-bad") && err.message().contains(why),
            "{err:?}"
        );
    }
    w.finish().await;
}
