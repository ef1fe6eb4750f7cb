//! What an unprivileged user of the host can reach of crius's files (the
//! class of CVE-2021-41103: walking into an unpacked layer or a
//! container's rootfs and running a setuid-root binary from it).
//!
//! With a plain pod and a user-namespaced pod running (runc and crun), and
//! a setuid-root copy of busybox made by a container in its writable
//! layer, every path under crius's root and state — layers, blobs,
//! records, writable layers, bundles and the mounted rootfs — is tried as
//! `nobody`: none may be opened. Then the daemon is stopped, the
//! directories are opened up as an older crius made them (0755), and the
//! restarted daemon tightens them again, saying so.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::World;
use crius_e2e::CriusOptions;
use crius_e2e::cri;
use crius_e2e::host::{openable_by, walk};

const NOBODY: u32 = 65534;

/// The container that leaves a setuid-root binary in its writable layer.
const SETUID: &str = "cp /bin/busybox /suid && chmod 4755 /suid && echo made && sleep 1000";

/// Every path of crius's root and state that `nobody` can open; panics
/// listing them. `expect` are paths that must exist (and so be tried).
fn assert_nobody_reaches_nothing(world: &World, expect: &[PathBuf]) {
    let dir = world.crius.dir();
    let (root, state) = (dir.root(), dir.state());
    let paths = walk(&[root.as_path(), state.as_path()]);
    for p in expect {
        assert!(
            paths.contains(p),
            "{} was not found to be tried",
            p.display()
        );
    }
    // Sanity: there is a lot to try (layers, rootfs trees).
    assert!(
        paths.len() > 200,
        "only {} paths under root and state",
        paths.len()
    );
    let open = openable_by(NOBODY, NOBODY, &paths);
    assert!(
        open.is_empty(),
        "nobody can open {} of {} paths under root and state, e.g.:\n  {}",
        open.len(),
        paths.len(),
        open.iter()
            .take(20)
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// The setuid binary a container made, in its writable layer and its
/// mounted rootfs.
fn setuid_paths(root: &Path, state: &Path, container: &str) -> Vec<PathBuf> {
    let upper = root.join("containers").join(container).join("upper/suid");
    let rootfs = state.join("containers").join(container).join("rootfs/suid");
    for p in [&upper, &rootfs] {
        let meta = std::fs::metadata(p).unwrap();
        assert_eq!(
            meta.mode() & 0o4000,
            0o4000,
            "{} is not setuid",
            p.display()
        );
    }
    vec![upper, rootfs]
}

#[tokio::test]
async fn no_host_user_reaches_image_or_container_files() {
    let mut world = World::start(CriusOptions::default()).await;
    let dir = world.crius.dir();
    let (root, state) = (dir.root(), dir.state());
    let mut expect = Vec::new();
    let mut pods = Vec::new();
    for (name, handler, userns) in [
        ("plain-runc", "", false),
        ("userns-runc", "", true),
        ("plain-crun", "crun", false),
        ("userns-crun", "crun", true),
    ] {
        let mut pod = world.pod(name);
        if userns {
            pod = cri::in_user_namespace(pod);
        }
        let pod_id = cri::run_pod(&mut world.rt, &pod, handler).await.unwrap();
        let id = world.start_sh(&pod_id, &pod, "suid", SETUID).await;
        world.wait_for_line(&pod, "suid", "made").await;
        expect.extend(setuid_paths(&root, &state, &id));
        expect.push(state.join("containers").join(&id).join("config.json"));
        pods.push(pod_id);
    }
    expect.push(root.join("meta"));
    assert_nobody_reaches_nothing(&world, &expect);

    // An older crius made everything 0755: the next start tightens it.
    world.crius.stop().await.unwrap();
    let mut opened = 0;
    for top in [&root, &state] {
        for path in walk(&[top.as_path()]) {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            // Only crius's own directories (not a mounted rootfs's).
            let ours = path
                .strip_prefix(top)
                .is_ok_and(|rel| rel.components().count() <= 2);
            if meta.is_dir() && ours && meta.mode() & 0o7777 != 0o755 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
                opened += 1;
            }
        }
    }
    assert!(opened > 10, "opened up only {opened} directories");
    assert!(
        !openable_by(NOBODY, NOBODY, &expect).is_empty(),
        "the test did not open anything up"
    );
    let log_before = std::fs::metadata(world.crius.dir().daemon_log())
        .unwrap()
        .len() as usize;
    world.crius.restart().await.unwrap();
    world.rt = world.crius.runtime_client();
    let log = std::fs::read_to_string(world.crius.dir().daemon_log()).unwrap();
    assert!(
        log[log_before..].contains("tightened the access of a directory crius keeps"),
        "{}",
        world.crius.log_tail(30)
    );
    assert_nobody_reaches_nothing(&world, &expect);
    for pod in pods {
        world.remove_pod(&pod).await;
    }
    world.finish().await;
}
