//! kill -9 in a loop. The daemon is SIGKILLed every 150–250 ms, from
//! outside, wherever it is (mid-call, mid-recovery, mid-start-up) and
//! started again at once, for minutes, while workers drive pod and
//! container lifecycles against it and retry what failed, as kubelet
//! does. Then a clean restart, and:
//! - no record was damaged (none quarantined, none distrusted);
//! - every pod listed answers PodSandboxStatus and stops and removes
//!   cleanly; what is not listed left nothing;
//! - the pod that lived through it all still runs its container;
//! - once every pod is removed nothing is left: no cgroup, netns, mount,
//!   process, veth, NAT rule, IP reservation, pod or container directory;
//! - no plugin call cut short by a kill finished after recovery's DEL
//!   (the bridge plugin is slowed down here, so that kills land in the
//!   middle of its ADD, and it masquerades: an ADD finishing late leaves
//!   NAT rules, a veth and an address);
//! - nothing foreign was touched: cgroups of "the host", a cgroup below
//!   crius's parent named like a pod id crius never made, a directory in
//!   the state dir's pods that is no pod's.
//!
//! `CRIUS_KILL_LOOP_SECS` sets how long the killing goes on (default 120).
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{World, set_namespaces};
use crius_e2e::cri::{self, RuntimeClient};
use crius_e2e::host::CgroupSentinels;
use crius_e2e::{CriusOptions, NodeDir, connect_unix, random_hex};
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerState, ListContainersRequest, ListPodSandboxRequest, NamespaceMode, PodSandboxConfig,
    PodSandboxState, RemoveContainerRequest, StopContainerRequest,
};

const DEFAULT_SECS: u64 = 120;
const WORKERS: usize = 3;
/// The kill interval, drawn anew for each kill.
const INTERVAL_MS: std::ops::Range<u64> = 150..251;
/// Every this many kills, one longer interval ([`BREATHER`]), so that
/// whole lifecycles get through too, not only single calls.
const BREATHER_EVERY: u64 = 8;
const BREATHER: Duration = Duration::from_millis(1500);
/// How long a worker may take to notice the end and finish its call.
const WORKER_END_TIMEOUT: Duration = Duration::from_secs(120);

/// What the workers got done.
#[derive(Default)]
struct Tally {
    /// Whole lifecycles: run, create, start, stop, remove, stop and remove
    /// the pod, each answered.
    cycles: AtomicU64,
    /// Calls answered with success.
    calls_ok: AtomicU64,
    /// Calls that failed (the daemon died under them, or was not up yet).
    calls_failed: AtomicU64,
    /// Pods an interrupted cycle left, stopped and removed by a retry.
    retried_removals: AtomicU64,
}

impl Tally {
    fn count<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        let counter = match result {
            Ok(_) => &self.calls_ok,
            Err(_) => &self.calls_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }
}

/// What a worker needs to make its pods.
#[derive(Clone)]
struct Plan {
    socket: PathBuf,
    image: String,
    /// A pod config to copy (names, log dirs, cgroup parent of the test).
    template: PodSandboxConfig,
    logs: PathBuf,
}

impl Plan {
    fn pod(&self, name: &str, shared_pid: bool) -> PodSandboxConfig {
        let mut pod = self.template.clone();
        if let Some(meta) = pod.metadata.as_mut() {
            meta.uid = format!("{name}-{}", meta.uid);
            meta.name = name.to_string();
        }
        pod.hostname = name.to_string();
        pod.log_directory = self.logs.join(name).to_string_lossy().into_owned();
        if shared_pid {
            set_namespaces(&mut pod, NamespaceMode::Pod, NamespaceMode::Pod);
        }
        pod
    }
}

/// A client of whatever daemon answers on the socket now.
async fn client(socket: &Path) -> Option<RuntimeClient> {
    connect_unix(socket)
        .await
        .ok()
        .map(RuntimeServiceClient::new)
}

/// One worker: lifecycles until `end`, each call allowed to fail. A pod
/// whose cycle was cut short is stopped and removed before the next
/// cycle begins, until that succeeds.
async fn worker(n: usize, plan: Plan, end: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut owed: Vec<String> = Vec::new();
    let mut round = 0u64;
    while !end.load(Ordering::Relaxed) {
        let Some(mut rt) = client(&plan.socket).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let mut still_owed = Vec::new();
        for id in owed.drain(..) {
            match tally.count(cri::stop_and_remove_pod(&mut rt, &id).await) {
                Ok(()) => {
                    tally.retried_removals.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => still_owed.push(id),
            }
        }
        owed = still_owed;
        if !owed.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        round += 1;
        let name = format!("w{n}-{round}");
        let pod = plan.pod(&name, round.is_multiple_of(2));
        let Ok(pod_id) = tally.count(cri::run_pod(&mut rt, &pod, "").await) else {
            continue;
        };
        owed.push(pod_id.clone());
        if cycle(&mut rt, &plan, &pod_id, &pod, &tally).await.is_ok() {
            owed.retain(|id| *id != pod_id);
            tally.cycles.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The rest of a lifecycle once the pod runs.
async fn cycle(
    rt: &mut RuntimeClient,
    plan: &Plan,
    pod_id: &str,
    pod: &PodSandboxConfig,
    tally: &Tally,
) -> Result<(), ()> {
    let config = cri::container_config("main", &plan.image, &["sleep", "1000"]);
    let id = tally
        .count(cri::create_container(rt, pod_id, pod, &config).await)
        .map_err(drop)?;
    tally
        .count(cri::start_container(rt, &id).await)
        .map_err(drop)?;
    tally
        .count(rt.list_pod_sandbox(ListPodSandboxRequest::default()).await)
        .map_err(drop)?;
    tally
        .count(
            rt.stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await,
        )
        .map_err(drop)?;
    tally
        .count(
            rt.remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await,
        )
        .map_err(drop)?;
    tally
        .count(cri::stop_and_remove_pod(rt, pod_id).await)
        .map_err(drop)
}

/// Entries of `dir` (names), sorted; none if it does not exist.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Where a daemon in `dir` keeps per-pod and per-container directories.
fn object_dirs(dir: &NodeDir) -> [PathBuf; 4] {
    [
        dir.state().join("pods"),
        dir.root().join("pods"),
        dir.state().join("containers"),
        dir.root().join("containers"),
    ]
}

/// How long the bridge plugin's ADD takes in this test: long enough that
/// kills land in the middle of it, as they do on a node whose network
/// plugin is slow.
const SLOW_ADD: &str = "0.3";

/// Restarts the daemon with masquerading on (NAT rules are what an ADD
/// finishing after recovery's DEL would leave behind) and a bridge plugin
/// that takes [`SLOW_ADD`] seconds to ADD.
async fn slow_masquerading_bridge(w: &mut World) {
    use std::os::unix::fs::PermissionsExt;
    w.crius.stop().await.unwrap();
    let dir = w.crius.dir();
    let mut conflist = dir.conflist();
    conflist["plugins"][0]["ipMasq"] = true.into();
    std::fs::write(
        dir.cni_conf_dir().join("10-crius-e2e.conflist"),
        serde_json::to_vec(&conflist).unwrap(),
    )
    .unwrap();
    let real = crius_e2e::installed_cni_plugin("bridge").unwrap();
    let wrapper = dir.cni_bin_dir().join("bridge");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$CNI_COMMAND\" = ADD ] && sleep {SLOW_ADD}\nexec {}\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    w.crius.restart().await.unwrap();
    w.rt = w.crius.runtime_client();
}

#[tokio::test]
async fn kill_9_every_200_ms_under_lifecycle_calls_loses_leaks_and_touches_nothing() {
    let secs: u64 = std::env::var("CRIUS_KILL_LOOP_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECS);
    let mut w = World::start(CriusOptions::default()).await;
    slow_masquerading_bridge(&mut w).await;
    let dir_id = w.crius.dir().id().to_string();
    let parent = w.crius.dir().cgroup_parent();

    // The pod that lives through the loop, a PID namespace of its own
    // (infra process, pod cgroup), its container printing ticks.
    let mut keeper = w.pod("keeper");
    set_namespaces(&mut keeper, NamespaceMode::Pod, NamespaceMode::Pod);
    let keeper_id = w.run_pod(&keeper).await;
    let keeper_ctr = w
        .start_sh(
            &keeper_id,
            &keeper,
            "ticker",
            "i=0; while :; do i=$((i+1)); echo tick $i; sleep 1; done",
        )
        .await;
    w.wait_for_line(&keeper, "ticker", "tick 1").await;

    // What is none of crius's business.
    let stranger = random_hex(32);
    let sentinels = CgroupSentinels::make(&[
        format!("/crius-e2e-{dir_id}-host/system.slice"),
        format!("{parent}/sentinel"),
        format!("{parent}/{stranger}"),
    ]);
    let foreign = w.crius.dir().state().join("pods").join("not-a-pod");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("keep"), "mine").unwrap();

    let template = w.pod("template");
    let plan = Plan {
        socket: w.crius.dir().socket(),
        image: w.image.clone(),
        logs: PathBuf::from(&template.log_directory)
            .parent()
            .unwrap()
            .to_path_buf(),
        template,
    };
    let end = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let workers: Vec<_> = (0..WORKERS)
        .map(|n| tokio::spawn(worker(n, plan.clone(), end.clone(), tally.clone())))
        .collect();

    let began = Instant::now();
    let mut kills = 0u64;
    let mut rng = random_hex(8);
    while began.elapsed() < Duration::from_secs(secs) {
        if rng.len() < 4 {
            rng = random_hex(8);
        }
        let draw = u64::from_str_radix(&rng[..4], 16).unwrap();
        rng.drain(..4);
        let wait = match kills % BREATHER_EVERY {
            0 if kills > 0 => BREATHER,
            _ => Duration::from_millis(
                INTERVAL_MS.start + draw % (INTERVAL_MS.end - INTERVAL_MS.start),
            ),
        };
        tokio::time::sleep(wait).await;
        if let Some(status) = w.crius.exited() {
            panic!(
                "crius exited by itself ({status}, signal {:?}) after {kills} kills\n{}",
                status.signal(),
                w.crius.log_tail(60)
            );
        }
        w.crius.kill().unwrap();
        kills += 1;
        w.crius.respawn().unwrap();
    }
    let killing = began.elapsed();
    end.store(true, Ordering::Relaxed);
    for worker in workers {
        tokio::time::timeout(WORKER_END_TIMEOUT, worker)
            .await
            .expect("a worker did not finish its call")
            .unwrap();
    }

    // One last kill, then a clean start.
    w.crius.kill().unwrap();
    w.crius.respawn().unwrap();
    w.crius.wait_ready_again().await.unwrap();
    w.rt = w.crius.runtime_client();
    let cycles = tally.cycles.load(Ordering::Relaxed);
    let log = std::fs::read_to_string(w.crius.dir().daemon_log()).unwrap();
    let served = log.lines().filter(|l| l.contains("serving CRI")).count();
    eprintln!(
        "kill loop: {kills} SIGKILLs in {killing:.1?} (one per {:.0?}; {INTERVAL_MS:?} ms, \
         {BREATHER:?} every {BREATHER_EVERY}th), {served} starts got to serving, {WORKERS} workers: \
         {cycles} whole lifecycles, {} calls answered, {} failed, {} interrupted pods removed on retry",
        killing / kills.max(1) as u32,
        tally.calls_ok.load(Ordering::Relaxed),
        tally.calls_failed.load(Ordering::Relaxed),
        tally.retried_removals.load(Ordering::Relaxed),
    );
    assert!(kills >= secs * 2, "only {kills} kills in {killing:?}");
    assert!(cycles > 0, "no lifecycle ever got through");

    // No record was damaged, and none distrusted, in any of the starts.
    for bad in ["cannot be trusted", "panicked"] {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(bad)).take(5).collect();
        assert!(
            hits.is_empty(),
            "the daemon logged {bad:?}:\n{}",
            hits.join("\n")
        );
    }
    let quarantine = w.crius.dir().root().join("meta").join("quarantine");
    assert!(
        names_in(&quarantine).is_empty(),
        "records were quarantined: {:?}",
        names_in(&quarantine)
    );

    // The keeper pod still runs its container, which still ticks.
    let status = cri::pod_status(&mut w.rt, &keeper_id).await.unwrap();
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
    let ctr = cri::container_status(&mut w.rt, &keeper_ctr).await.unwrap();
    assert_eq!(
        ctr.state,
        ContainerState::ContainerRunning as i32,
        "{ctr:?}"
    );
    let ticks = common::stdout(&w.log_path(&keeper, "ticker")).len();
    w.wait_for_line(&keeper, "ticker", &format!("tick {}", ticks + 2))
        .await;

    // Every other pod listed works: status, stop, remove.
    let listed = cri::pod_ids(&mut w.rt).await.unwrap();
    let leftovers: Vec<&String> = listed.iter().filter(|id| **id != keeper_id).collect();
    for id in &leftovers {
        let status = cri::pod_status(&mut w.rt, id).await.unwrap();
        assert!(
            status.state == PodSandboxState::SandboxReady as i32
                || status.state == PodSandboxState::SandboxNotready as i32,
            "{status:?}"
        );
        cri::stop_and_remove_pod(&mut w.rt, id).await.unwrap();
    }
    eprintln!(
        "kill loop: {} pods left listed by interrupted calls, each stopped and removed",
        leftovers.len()
    );
    let containers =
        w.rt.list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    let ids: Vec<&str> = containers.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [keeper_ctr.as_str()],
        "containers besides the keeper's"
    );
    // What is not listed is fully gone: only the keeper's directories (and
    // the foreign one) remain.
    let [state_pods, root_pods, state_ctrs, root_ctrs] = object_dirs(w.crius.dir());
    let mut want_pods = vec![keeper_id.clone(), "not-a-pod".to_string()];
    want_pods.sort();
    assert_eq!(names_in(&state_pods), want_pods, "{}", state_pods.display());
    assert_eq!(
        names_in(&root_pods),
        std::slice::from_ref(&keeper_id),
        "{}",
        root_pods.display()
    );
    for dir in [&state_ctrs, &root_ctrs] {
        let names = names_in(dir);
        assert!(
            names.iter().all(|n| *n == keeper_ctr),
            "{}: {names:?}",
            dir.display()
        );
    }

    // Then the keeper goes too, and nothing at all is left; nothing
    // foreign was touched.
    w.remove_pod(&keeper_id).await;
    assert_eq!(cri::pod_ids(&mut w.rt).await.unwrap(), [] as [String; 0]);
    w.crius.stop().await.unwrap();
    sentinels.assert_intact(&w.crius.log_tail(40));
    assert_eq!(
        std::fs::read_to_string(foreign.join("keep")).unwrap(),
        "mine",
        "the foreign directory in state/pods was touched"
    );
    // The sentinels below crius's cgroup parent would count as leaks.
    drop(sentinels);
    crius_e2e::assert_no_leaks(&w.crius);
}
