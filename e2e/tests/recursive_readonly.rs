//! Recursively read-only mounts, with real runc and crun (neither knows
//! `rro`: crius makes the read-only copy itself): a host directory with a
//! tmpfs mounted inside it is read-only in the container all the way down,
//! while with plain `readonly` the tmpfs stays writable. Bad combinations
//! are refused by name, and nothing is left mounted. Writable, with any
//! propagation, the host's submount outlives the container.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

mod common;

use std::path::{Path, PathBuf};

use common::World;
use crius_e2e::CriusOptions;
use crius_e2e::cri;
use k8s_cri::v1::{ContainerState, Mount, MountPropagation, StatusRequest};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use tonic::Code;

/// A host directory with a tmpfs mounted at `tmpfs/` inside it, unmounted
/// and removed on drop (also when the test fails). The directory is a
/// shared mount of its own, as every hostPath is on a systemd node (where
/// `/` is shared): a copy crius makes of it must not take the host's
/// submounts along when it goes.
struct HostTree {
    dir: tempfile::TempDir,
}

impl HostTree {
    fn new() -> HostTree {
        let dir = tempfile::tempdir().unwrap();
        mount(
            Some(dir.path()),
            dir.path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        mount(
            None::<&str>,
            dir.path(),
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("tmpfs")).unwrap();
        mount(
            Some("none"),
            &dir.path().join("tmpfs"),
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        HostTree { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn submount(&self) -> PathBuf {
        self.dir.path().join("tmpfs")
    }
}

impl Drop for HostTree {
    fn drop(&mut self) {
        let _ = umount2(&self.submount(), MntFlags::MNT_DETACH);
        let _ = umount2(self.dir.path(), MntFlags::MNT_DETACH);
    }
}

/// Whether `path` is a mount point in the node's mount namespace.
fn is_mount_point(path: &Path) -> bool {
    let path = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*path))
}

fn volume(host: &Path, readonly: bool, rro: bool, propagation: MountPropagation) -> Mount {
    Mount {
        container_path: "/mnt".into(),
        host_path: host.to_string_lossy().into_owned(),
        readonly,
        recursive_read_only: rro,
        propagation: propagation as i32,
        ..Default::default()
    }
}

/// Writes to the top of the volume and to its submount; prints which
/// succeeded.
const WRITE_SCRIPT: &str = "for f in /mnt/top /mnt/tmpfs/sub; do \
     if touch $f 2>/dev/null; then echo \"$f writable\"; else echo \"$f read-only\"; fi; done";

#[tokio::test]
async fn recursive_read_only_mounts_with_runc() {
    recursive_read_only("", "rro-runc").await;
}

#[tokio::test]
async fn recursive_read_only_mounts_with_crun() {
    recursive_read_only("crun", "rro-crun").await;
}

async fn recursive_read_only(handler: &str, pod_name: &str) {
    let host = HostTree::new();
    let mut w = World::start(CriusOptions::default()).await;

    // Status says so, for every handler.
    let status =
        w.rt.status(StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    // The default handler is listed under the empty name too (the CRI's
    // convention; critest looks features up there).
    let names: Vec<&str> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(names.first(), Some(&""), "{names:?}");
    assert!(
        names.contains(&"runc") && names.contains(&"crun"),
        "{names:?}"
    );
    for h in &status.runtime_handlers {
        let f = h.features.as_ref().unwrap();
        assert!(f.recursive_read_only_mounts, "handler {:?}", h.name);
    }

    let pod = w.pod(pod_name);
    let pod_id = cri::run_pod(&mut w.rt, &pod, handler).await.unwrap();

    let image = w.image.clone();
    let run = |name: &str, m: Mount| {
        let mut c = cri::container_config(name, &image, &["sh", "-c", WRITE_SCRIPT]);
        c.mounts = vec![m];
        c
    };
    // Recursive: both the top and the submount are read-only.
    let config = run(
        "rro",
        volume(
            host.path(),
            true,
            true,
            MountPropagation::PropagationPrivate,
        ),
    );
    let id = w.start_container(&pod_id, &pod, config).await;
    let status = cri::wait_container_state(&mut w.rt, &id, ContainerState::ContainerExited)
        .await
        .unwrap();
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert_eq!(status.mounts.len(), 1, "{:?}", status.mounts);
    // crius's read-only copy is gone from the node's mount namespace once
    // the runtime has its own: only the host's own tmpfs is mounted there,
    // so the host tree stays removable (as critest removes it).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let node_dir = w.crius.dir().path().to_string_lossy().into_owned();
    let staged: Vec<&str> = mountinfo
        .lines()
        .filter(|l| l.contains(&node_dir) && l.contains("staged"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
    // … and releasing it left the host's own submount where it was.
    assert!(
        is_mount_point(&host.submount()),
        "the host's tmpfs at {} was unmounted with crius's copy",
        host.submount().display()
    );
    assert!(status.mounts[0].recursive_read_only, "{:?}", status.mounts);
    let lines = common::stdout(&w.log_path(&pod, "rro"));
    assert_eq!(
        lines,
        ["/mnt/top read-only", "/mnt/tmpfs/sub read-only"],
        "{lines:?}"
    );
    // Plain read-only: only the top is; the submount stays writable.
    let config = run(
        "ro",
        volume(
            host.path(),
            true,
            false,
            MountPropagation::PropagationPrivate,
        ),
    );
    let id = w.start_container(&pod_id, &pod, config).await;
    cri::wait_container_state(&mut w.rt, &id, ContainerState::ContainerExited)
        .await
        .unwrap();
    let lines = common::stdout(&w.log_path(&pod, "ro"));
    assert_eq!(
        lines,
        ["/mnt/top read-only", "/mnt/tmpfs/sub writable"],
        "{lines:?}"
    );
    assert!(host.submount().join("sub").exists());
    assert!(!host.path().join("top").exists());

    // Refused by name: not read-only, or not private.
    for (name, m) in [
        (
            "rw",
            volume(
                host.path(),
                false,
                true,
                MountPropagation::PropagationPrivate,
            ),
        ),
        (
            "slave",
            volume(
                host.path(),
                true,
                true,
                MountPropagation::PropagationHostToContainer,
            ),
        ),
        (
            "shared",
            volume(
                host.path(),
                true,
                true,
                MountPropagation::PropagationBidirectional,
            ),
        ),
    ] {
        let config = run(name, m);
        let err =
            w.rt.create_container(k8s_cri::v1::CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert!(err.message().contains("/mnt"), "{name}: {err:?}");
    }

    // Writable, with each propagation: the container writes through to
    // the host's submount, and neither its end nor its removal takes that
    // submount from the host.
    for (name, propagation) in [
        ("private", MountPropagation::PropagationPrivate),
        (
            "hosttocontainer",
            MountPropagation::PropagationHostToContainer,
        ),
        ("bidirectional", MountPropagation::PropagationBidirectional),
    ] {
        let config = run(name, volume(host.path(), false, false, propagation));
        let id = w.start_container(&pod_id, &pod, config).await;
        cri::wait_container_state(&mut w.rt, &id, ContainerState::ContainerExited)
            .await
            .unwrap();
        let lines = common::stdout(&w.log_path(&pod, name));
        assert_eq!(
            lines,
            ["/mnt/top writable", "/mnt/tmpfs/sub writable"],
            "{name}: {lines:?}"
        );
        w.rt.remove_container(k8s_cri::v1::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
        assert!(
            is_mount_point(&host.submount()),
            "{name}: the host's tmpfs at {} went with the container",
            host.submount().display()
        );
        std::fs::remove_file(host.path().join("top")).unwrap();
    }

    w.remove_pod(&pod_id).await;
    // The host tree is untouched: its submount is still there, unchanged.
    assert!(host.submount().join("sub").exists());
    w.finish().await;
}
