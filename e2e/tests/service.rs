//! crius as the systemd service `deploy/install.sh` makes of it, on a node
//! where systemd is PID 1 (the guest lane's): installed from the binaries
//! this build made, it serves on /run/crius/crius.sock under its unit with
//! the systemd cgroup driver; `systemctl restart crius`, and a crius killed
//! and restarted by systemd, disturb no pod or container; its log is in
//! the journal; `deploy/uninstall.sh --purge` takes it all away.
//!
//! On every node, the unit itself says what keeps containers alive across
//! a restart (KillMode=process, Delegate=yes). On a node without systemd
//! the install is not tried: it would start crius by hand, outside any
//! test directory, on the machine running the tests.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crius_e2e::cri::{self, ImageClient, RuntimeClient};
use crius_e2e::host::processes_below;
use crius_e2e::{NodeDir, Registry, TestImages, connect_unix, crius_binary, node_shape};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ContainerState, RuntimeConfigRequest, VersionRequest};

const SOCKET: &str = "/run/crius/crius.sock";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `program args…`, asserting it succeeded; its stdout.
fn run(program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn main_pid() -> u32 {
    run(
        "systemctl",
        &["show", "crius", "-p", "MainPID", "--value"],
        &[],
    )
    .trim()
    .parse()
    .unwrap()
}

/// Clients of the service once it answers Version, and its main pid then.
async fn connect(not_pid: u32) -> (RuntimeClient, ImageClient, u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pid = main_pid();
        if pid != 0
            && pid != not_pid
            && let Ok(channel) = connect_unix(Path::new(SOCKET)).await
        {
            let mut rt = RuntimeServiceClient::new(channel.clone());
            if rt.version(VersionRequest::default()).await.is_ok() {
                return (rt, ImageServiceClient::new(channel), pid);
            }
        }
        assert!(
            Instant::now() < deadline,
            "crius.service did not answer: {}",
            run("systemctl", &["status", "crius", "--no-pager"], &[])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ticker's shell among them (its `sleep 1` comes and goes).
fn tickers(dir: &Path) -> Vec<u32> {
    processes_below(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.contains("while :"))
        })
        .collect()
}

/// The install this binary's tests make is the node's one: one at a time.
static INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The node's install, for this test alone: `None` (said why) on a node
/// that is not the guest lane's, where installing would touch the machine
/// running the tests; fails if crius is installed already.
async fn the_install() -> Option<tokio::sync::MutexGuard<'static, ()>> {
    if !(node_shape::systemd_booted() && node_shape::cgroup_v2()) {
        eprintln!("no systemd as PID 1 on cgroup v2 here: the guest lane runs the install");
        return None;
    }
    let one = INSTALL.lock().await;
    assert!(
        !Path::new("/usr/local/bin/crius").exists(),
        "a crius is installed on this node already; not replacing it"
    );
    Some(one)
}

/// Takes the installed service away however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("deploy/uninstall.sh"))
            .status();
    }
}

#[tokio::test]
async fn install_sh_runs_crius_as_a_service_whose_restarts_disturb_no_pod() {
    // The unit: containers outlive crius's restarts, crius owns its
    // cgroup subtree.
    let unit = std::fs::read_to_string(repo().join("deploy/crius.service")).unwrap();
    for line in [
        "KillMode=process",
        "Delegate=yes",
        "ExecStart=/usr/local/bin/crius --config /etc/crius/crius.toml",
        "Restart=always",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
    }
    let Some(_one) = the_install().await else {
        return;
    };

    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let bins = crius_binary().unwrap().parent().unwrap().to_path_buf();
    let _installed = Installed;
    run(
        "bash",
        &[repo().join("deploy/install.sh").to_str().unwrap()],
        &[("CRIUS_BIN_DIR", &bins)],
    );
    assert_eq!(
        run("systemctl", &["is-active", "crius"], &[]).trim(),
        "active"
    );
    let (mut rt, mut img, first_pid) = connect(0).await;
    let config = rt
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        config.linux.unwrap().cgroup_driver,
        k8s_cri::v1::CgroupDriver::Systemd as i32,
        "auto picks systemd under systemd"
    );

    // A pod whose container ticks, below a slice of this test's.
    let mut dir = NodeDir::create(false).unwrap();
    dir.set_systemd_cgroups(true);
    cri::pull_image(&mut img, &images.oci.reference)
        .await
        .unwrap();
    let pod = cri::pod_config(&dir, "svc");
    let pod_id = cri::run_pod(&mut rt, &pod, "").await.unwrap();
    let ctr_config = cri::container_config(
        "ticker",
        &images.oci.reference,
        &[
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo tick $i; sleep 1; done",
        ],
    );
    let ctr = cri::create_container(&mut rt, &pod_id, &pod, &ctr_config)
        .await
        .unwrap();
    cri::start_container(&mut rt, &ctr).await.unwrap();
    let tree = PathBuf::from(format!("/sys/fs/cgroup{}", dir.cgroup_tree()));
    // StartContainer returns once the runtime let the init go; under
    // emulation its exec of the shell can take a moment more.
    let mut before = tickers(&tree);
    for _ in 0..100 {
        if !before.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        before = tickers(&tree);
    }
    assert_eq!(before.len(), 1, "the ticker in {}", tree.display());
    let log = Path::new(&pod.log_directory).join("ticker.log");
    let ticks = || cri::read_cri_log(&log).map(|l| l.len()).unwrap_or(0);

    // systemctl restart, then a kill -9 that systemd answers with a start.
    run("systemctl", &["restart", "crius"], &[]);
    let (_, _, second_pid) = connect(first_pid).await;
    run(
        "systemctl",
        &["kill", "--kill-whom=main", "-s", "KILL", "crius"],
        &[],
    );
    let (mut rt, _, third_pid) = connect(second_pid).await;
    assert_ne!(third_pid, first_pid);
    assert_eq!(
        tickers(&tree),
        before,
        "a restart touched the pod's processes"
    );
    let status = cri::container_status(&mut rt, &ctr).await.unwrap();
    assert_eq!(
        status.state,
        ContainerState::ContainerRunning as i32,
        "{status:?}"
    );
    let seen = ticks();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ticks() < seen + 2 {
        assert!(
            Instant::now() < deadline,
            "the container's log stopped at {seen} lines"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The journal has every start's log.
    let journal = run(
        "journalctl",
        &["-u", "crius", "--no-pager", "-o", "cat"],
        &[],
    );
    let starts = journal.matches("serving CRI").count();
    assert!(starts >= 3, "{starts} starts in the journal:\n{journal}");

    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();
    assert_eq!(processes_below(&tree), [] as [u32; 0]);
    drop(rt);
    run(
        "bash",
        &[
            repo().join("deploy/uninstall.sh").to_str().unwrap(),
            "--purge",
        ],
        &[],
    );
    assert!(!Path::new("/usr/local/bin/crius").exists());
    assert!(!Path::new("/etc/systemd/system/crius.service").exists());
    assert!(!Path::new("/var/lib/crius").exists());
    assert_eq!(
        run(
            "systemctl",
            &["show", "crius", "-p", "LoadState", "--value"],
            &[]
        )
        .trim(),
        "not-found"
    );
}

/// The pid `/run/crius.pid` holds, once the crius it names answers.
async fn background_pid(not_pid: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pid = std::fs::read_to_string("/run/crius.pid")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if pid != 0
            && pid != not_pid
            && let Ok(channel) = connect_unix(Path::new(SOCKET)).await
            && RuntimeServiceClient::new(channel)
                .version(VersionRequest::default())
                .await
                .is_ok()
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "the background crius did not answer: {:?}",
            std::fs::read_to_string("/var/log/crius.log")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Without systemd (here: asked for with CRIUS_SERVICE=background),
/// install.sh runs crius in the background, and a second run, or
/// uninstall.sh, stops that crius and no other: a crius running beside it
/// (as the README shows, and as every test runs one) is left alone.
#[tokio::test]
async fn a_background_install_stops_only_the_crius_it_started() {
    let Some(_one) = the_install().await else {
        return;
    };
    let mut beside = crius_e2e::Crius::start(crius_e2e::CriusOptions::without_cni())
        .await
        .unwrap();
    let beside_pid = beside.pid().expect("the crius beside runs");
    let bins = crius_binary().unwrap().parent().unwrap().to_path_buf();
    let background = Path::new("background");
    let _installed = Installed;
    let install = || {
        run(
            "bash",
            &[repo().join("deploy/install.sh").to_str().unwrap()],
            &[("CRIUS_BIN_DIR", &bins), ("CRIUS_SERVICE", background)],
        )
    };
    install();
    let first = background_pid(0).await;
    assert!(
        !Path::new("/etc/systemd/system/crius.service").exists(),
        "CRIUS_SERVICE=background installed the unit"
    );
    // Again: the first goes, a new one serves; the one beside stays.
    install();
    let second = background_pid(first).await;
    assert!(
        !alive(first),
        "the first background crius ({first}) still runs"
    );
    assert!(alive(beside_pid), "install.sh stopped the crius beside it");
    run(
        "bash",
        &[
            repo().join("deploy/uninstall.sh").to_str().unwrap(),
            "--purge",
        ],
        &[],
    );
    assert!(
        !alive(second),
        "uninstall.sh left its crius ({second}); its log:\n{}",
        std::fs::read_to_string("/var/log/crius.log").unwrap_or_default()
    );
    assert!(!Path::new("/run/crius.pid").exists());
    assert!(
        alive(beside_pid),
        "uninstall.sh stopped the crius beside it"
    );
    beside
        .runtime_client()
        .version(VersionRequest::default())
        .await
        .unwrap();
    beside.stop().await.unwrap();
}
