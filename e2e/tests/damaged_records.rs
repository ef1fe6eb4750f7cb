//! Start-up recovery with records it cannot trust: a pod record naming
//! the root cgroup, cgroup records that are empty, `/` or a cgroup of the
//! host, an empty record file, a record whose id is not its file's, a
//! directory that is not a pod's. The restarted daemon quarantines the
//! records, cleans up what the pods' ids prove is theirs, and touches
//! nothing else: cgroups outside and inside its cgroup parent, the other
//! pod and its running container, the foreign directory all stay.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

mod common;

use std::path::Path;

use common::{World, set_namespaces};
use crius_e2e::cri;
use crius_e2e::host::{CgroupSentinels, hierarchy_roots};
use crius_e2e::{CriusOptions, random_hex};
use k8s_cri::v1::{ContainerState, NamespaceMode};
use serde_json::Value;

fn edit_record(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut record: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut record);
    std::fs::write(path, serde_json::to_vec(&record).unwrap()).unwrap();
}

/// A pod state directory as a crash may leave it, with `cgroup` as its
/// cgroup record.
fn orphan_pod_dir(world: &World, cgroup: &str) -> String {
    let id = random_hex(32);
    let dir = world.crius.dir().state().join("pods").join(&id);
    std::fs::create_dir_all(dir.join("ns")).unwrap();
    std::fs::write(dir.join("cgroup"), cgroup).unwrap();
    std::fs::create_dir_all(world.crius.dir().root().join("pods").join(&id)).unwrap();
    id
}

#[tokio::test]
async fn damaged_records_are_quarantined_and_nothing_foreign_is_touched() {
    let mut w = World::start(CriusOptions::default()).await;
    let dir_id = w.crius.dir().id().to_string();
    let parent = w.crius.dir().cgroup_parent();
    let host_cgroup = format!("/crius-e2e-{dir_id}-host");

    // Pod A shares a PID namespace (an infra process, a pod cgroup);
    // pod B has a running container and an intact record.
    let mut pod_a = w.pod("a");
    set_namespaces(&mut pod_a, NamespaceMode::Pod, NamespaceMode::Pod);
    let a = w.run_pod(&pod_a).await;
    let pod_b = w.pod("b");
    let b = w.run_pod(&pod_b).await;
    let ctr = w.start_sh(&b, &pod_b, "keep", "echo up; sleep 1000").await;
    w.wait_for_line(&pod_b, "keep", "up").await;

    // What the host has that no record may lead crius to: cgroups of "the
    // host" (a stand-in), and below crius's parent one that is no pod's.
    let stranger = random_hex(32);
    let sentinels = CgroupSentinels::make(&[
        format!("{host_cgroup}/sub"),
        format!("{parent}/sentinel"),
        format!("{parent}/{stranger}"),
    ]);

    w.crius.kill().unwrap();
    let root = w.crius.dir().root();
    let state = w.crius.dir().state();
    let meta = root.join("meta");
    // A's record now names the root cgroup.
    edit_record(&meta.join("pods").join(format!("{a}.json")), |r| {
        r["pod_cgroup"] = "/".into();
        r["cgroup_parent"] = "/".into();
    });
    // Unfinished pods whose cgroup record is empty, `/`, the host's.
    let orphans = [
        orphan_pod_dir(&w, ""),
        orphan_pod_dir(&w, "/"),
        orphan_pod_dir(&w, &host_cgroup),
    ];
    // An empty record (a write a crash cut short) and a container record
    // whose id would lead outside its directories.
    let empty = random_hex(32);
    std::fs::write(meta.join("pods").join(format!("{empty}.json")), b"").unwrap();
    let forged = random_hex(32);
    let copy = std::fs::read(meta.join("containers").join(format!("{ctr}.json"))).unwrap();
    let forged_path = meta.join("containers").join(format!("{forged}.json"));
    std::fs::write(&forged_path, copy).unwrap();
    edit_record(&forged_path, |r| r["id"] = "../../..".into());
    // Not a pod directory crius makes.
    let foreign = state.join("pods").join("not-a-pod");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("keep"), b"mine").unwrap();

    w.crius.restart().await.unwrap();
    w.rt = w.crius.runtime_client();
    let log = w.crius.log_tail(80);

    sentinels.assert_intact(&log);
    assert!(foreign.join("keep").is_file(), "{log}");
    // B and its container are as they were.
    assert_eq!(
        cri::pod_ids(&mut w.rt).await.unwrap(),
        vec![b.clone()],
        "{log}"
    );
    let status = cri::container_status(&mut w.rt, &ctr).await.unwrap();
    assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    // A (its record quarantined) and the unfinished pods are gone, as far
    // as their ids prove: directories, infra process, A's own cgroup.
    for id in orphans.iter().chain([&a]) {
        for base in [&state, &root] {
            assert!(!base.join("pods").join(id).exists(), "pod {id} left\n{log}");
        }
    }
    let a_cgroup = hierarchy_roots()
        .into_iter()
        .map(|r| r.join(parent.trim_start_matches('/')).join(&a))
        .find(|d| d.exists());
    assert_eq!(a_cgroup, None, "{log}");
    // Three records kept aside, each logged.
    let kept: Vec<_> = ["pods", "containers"]
        .iter()
        .flat_map(|t| std::fs::read_dir(meta.join("quarantine").join(t)).unwrap())
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 3, "{kept:?}\n{log}");
    for id in [&a, &empty, &forged] {
        assert!(
            kept.iter().any(|k| k.starts_with(id.as_str())),
            "{id}: {kept:?}"
        );
    }
    let full_log = std::fs::read_to_string(w.crius.dir().daemon_log()).unwrap();
    assert!(full_log.contains("moved it to quarantine"));
    assert!(full_log.contains("not a pod directory crius makes"));
    assert!(full_log.contains("ignoring a damaged cgroup record"));

    std::fs::remove_dir_all(&foreign).unwrap();
    w.remove_pod(&b).await;
    drop(sentinels);
    w.finish().await;
}
