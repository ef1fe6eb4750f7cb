//! The monitor with real containers, under runc and crun (needs root).
//!
//! Each test builds a busybox bundle in a temp dir with a unique container
//! id and cgroup parent, and a guard that — even on failure — force-deletes
//! the container, kills a stray monitor and removes the cgroup directories.
//!
//! Both runtimes must be installed, and crun needs a host whose cgroup v2
//! hierarchy holds no controller when v1 is mounted too
//! (`deploy/prepare-node.sh`, which `e2e/run-tests.sh` runs, sees to it);
//! a test fails rather than skips when either is missing.

use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crius_runtime::Error;
use crius_runtime::monitor::{self, ExitStatus, MonitorConfig, Spawned};
use crius_runtime::oci::OciRuntime;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType, Spec};

const MONITOR: &str = env!("CARGO_BIN_EXE_crius-monitor");
const LONG_LINE: usize = 20_000;
const HELPER_ENV: &str = "CRIUS_MONITOR_TEST_HELPER";

/// A name no other test (or test run) uses.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn cgroup_hierarchies() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .map(|e| e.unwrap().path())
        // cpu,cpuacct-style symlinks name a hierarchy twice.
        .filter(|p| !p.is_symlink() && p.is_dir())
        .collect()
}

/// The runtime binary to test with, found on `$PATH`.
fn runtime_binary(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (e2e/run-tests.sh installs it)"))
}

/// A container bundle and everything to clean up after it.
struct Fixture {
    tmp: tempfile::TempDir,
    id: String,
    cgroup_parent: String,
    runtime: OciRuntime,
    bundle: PathBuf,
    /// The per-container state dir given to `spawn`.
    dir: PathBuf,
    spawned: Option<Spawned>,
}

impl Fixture {
    fn new(runtime_name: &str, args: &[&str], pid_namespace: bool) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let bin = runtime_binary(runtime_name);
        let id = unique("crius-mon");
        let cgroup_parent = unique("crius-test");
        let runtime = OciRuntime::new(
            runtime_name,
            &bin,
            &tmp.path().join("runtime-root"),
            Duration::from_secs(60),
        )
        .unwrap();
        let bundle = tmp.path().join("bundle");
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "echo", "sleep", "cat"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let mut long = vec![b'a'; LONG_LINE];
        long.push(b'\n');
        std::fs::write(rootfs.join("long.txt"), long).unwrap();

        let mut spec = Spec::default();
        let process = spec.process_mut().as_mut().unwrap();
        process.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        process.set_terminal(Some(false));
        spec.set_hostname(Some("crius-test".into()));
        let linux = spec.linux_mut().as_mut().unwrap();
        let mut kinds = vec![
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
        ];
        if pid_namespace {
            kinds.push(LinuxNamespaceType::Pid);
        }
        linux.set_namespaces(Some(
            kinds
                .into_iter()
                .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build().unwrap())
                .collect(),
        ));
        linux.set_cgroups_path(Some(PathBuf::from(format!("/{cgroup_parent}/{id}"))));
        spec.save(bundle.join("config.json")).unwrap();

        let dir = tmp.path().join("state").join(&id);
        Fixture {
            tmp,
            id,
            cgroup_parent,
            runtime,
            bundle,
            dir,
            spawned: None,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.tmp.path().join("logs").join("ctr").join("0.log")
    }

    fn config(&self) -> MonitorConfig {
        let pid_file = self.dir.join("container.pid");
        MonitorConfig {
            container_id: self.id.clone(),
            create_command: self
                .runtime
                .create_command(&self.id, &self.bundle, &pid_file),
            bundle: self.bundle.clone(),
            pid_file,
            log_path: Some(self.log_path()),
            exit_file: self.dir.join("exit"),
            control_fifo: None,
            oom_file: None,
            console_socket: None,
            stdin: false,
            stdin_once: false,
            attach_socket: Some(self.dir.join("attach")),
        }
    }

    async fn spawn(&mut self) -> crius_runtime::Result<Spawned> {
        let spawned = monitor::spawn(Path::new(MONITOR), &self.config(), &self.dir).await?;
        self.spawned = Some(spawned);
        Ok(spawned)
    }

    async fn wait(&self) -> ExitStatus {
        let spawned = self.spawned.unwrap();
        monitor::wait_exit(spawned.monitor_pid, &self.config().exit_file)
            .await
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap()
    }

    /// Deletes the container and checks nothing of it is left: no runtime
    /// state, no process, no cgroup.
    async fn delete_and_check_clean(&self) {
        self.runtime.delete(&self.id, false).await.unwrap();
        assert_eq!(self.runtime.state(&self.id).await.unwrap(), None);
        assert!(
            !self.runtime.root().join(&self.id).exists(),
            "runtime state left"
        );
        if let Some(spawned) = self.spawned {
            assert!(
                !is_running_monitor(spawned.monitor_pid, &self.dir),
                "monitor left"
            );
            assert!(
                !self.in_our_cgroup(spawned.container_pid),
                "container process left"
            );
        }
        assert!(monitors_of(&self.dir).is_empty(), "monitor left");
        for h in cgroup_hierarchies() {
            let cg = h.join(&self.cgroup_parent).join(&self.id);
            assert!(!cg.exists(), "cgroup {} left", cg.display());
        }
    }

    fn in_our_cgroup(&self, pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|c| c.contains(&self.cgroup_parent))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Best effort, quietly: on success all of this finds nothing to do.
        let _ = std::process::Command::new(self.runtime.path())
            .arg("--root")
            .arg(self.runtime.root())
            .args(["delete", "--force", &self.id])
            .stderr(std::process::Stdio::null())
            .status();
        for pid in monitors_of(&self.dir) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for h in cgroup_hierarchies() {
            let parent = h.join(&self.cgroup_parent);
            if let Ok(procs) = std::fs::read_to_string(parent.join(&self.id).join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.parse().ok()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            let _ = std::fs::remove_dir(parent.join(&self.id));
            let _ = std::fs::remove_dir(&parent);
        }
    }
}

/// Live (non-zombie) monitors whose config is in `dir`.
fn monitors_of(dir: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| is_running_monitor(pid, dir))
        .collect()
}

fn is_running_monitor(pid: i32, dir: &Path) -> bool {
    let config = dir.join(monitor::CONFIG_FILE);
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        c.split(|&b| b == 0)
            .any(|arg| arg == config.as_os_str().as_encoded_bytes())
    })
}

/// A field of /proc/<pid>/status in KiB (VmRSS, RssAnon, RssFile).
fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The records of one stream in a CRI log: (tag, content).
fn records(log: &str, stream: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(4, ' ');
            let ts = parts.next().unwrap();
            assert!(
                ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "bad timestamp in {line:?}"
            );
            (parts.next().unwrap() == stream).then(|| {
                let tag = parts.next().unwrap().to_string();
                (tag, parts.next().unwrap_or_default().to_string())
            })
        })
        .collect()
}

async fn output_and_exit_code(runtime: &str) {
    let script = "echo hello; echo oops >&2; cat /long.txt; echo -n tail; exit 3";
    let mut f = Fixture::new(runtime, &["sh", "-c", script], true);
    let spawned = f.spawn().await.unwrap();
    assert!(spawned.container_pid > 0 && spawned.monitor_pid > 0);
    let pid_file = std::fs::read_to_string(f.dir.join(monitor::PID_FILE)).unwrap();
    assert_eq!(pid_file.trim(), spawned.monitor_pid.to_string());
    let state = f.runtime.state(&f.id).await.unwrap().unwrap();
    assert_eq!(
        (state.status.as_str(), state.pid),
        ("created", spawned.container_pid)
    );

    f.runtime.start(&f.id).await.unwrap();
    let exit = f.wait().await;
    assert_eq!((exit.exit_code, exit.signal), (3, None));
    assert!(exit.finished_at > 0);

    let log = f.log();
    let a = |n: usize| "a".repeat(n);
    let expected = [
        ("F", "hello".to_string()),
        ("P", a(16 * 1024)),
        ("F", a(LONG_LINE - 16 * 1024)),
        ("F", "tail".to_string()),
    ]
    .map(|(t, c)| (t.to_string(), c));
    assert_eq!(records(&log, "stdout"), expected);
    assert_eq!(
        records(&log, "stderr"),
        [("F".to_string(), "oops".to_string())]
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(f.log_path()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(
        f.runtime.state(&f.id).await.unwrap().unwrap().status,
        "stopped"
    );
    f.delete_and_check_clean().await;
}

async fn sigterm_gives_143(runtime: &str) {
    // Outside a pid namespace: the init of one ignores SIGTERM it has no
    // handler for, even from the host.
    let mut f = Fixture::new(runtime, &["sleep", "1000"], false);
    let spawned = f.spawn().await.unwrap();
    f.runtime.start(&f.id).await.unwrap();
    assert_eq!(
        f.runtime.state(&f.id).await.unwrap().unwrap().status,
        "running"
    );
    let [rss, anon, file] =
        ["VmRSS", "RssAnon", "RssFile"].map(|f| status_kib(spawned.monitor_pid, f));
    println!(
        "monitor VmRSS with a sleeping {runtime} container: {rss} KiB \
         (anonymous {anon} KiB, file-backed {file} KiB)"
    );
    assert!(rss < 8 * 1024, "monitor RSS {rss} KiB");

    f.runtime.kill(&f.id, 15, false).await.unwrap();
    let exit = f.wait().await;
    assert_eq!((exit.exit_code, exit.signal), (143, Some(15)));
    f.delete_and_check_clean().await;
}

async fn bad_create_reports_the_runtime_error(runtime: &str) {
    let mut f = Fixture::new(runtime, &["/bin/nope"], true);
    let err = f.spawn().await.unwrap_err();
    match &err {
        Error::External { what, message } => {
            assert_eq!(what, &format!("create container {}", f.id));
            assert!(message.contains("/bin/nope"), "{message}");
            assert!(!message.contains("level=error"), "{message}");
        }
        e => panic!("unexpected error {e:?}"),
    }
    assert!(
        monitors_of(&f.dir).is_empty(),
        "monitor left after a failed create"
    );
    assert_eq!(f.runtime.state(&f.id).await.unwrap(), None);
    f.runtime.delete(&f.id, true).await.unwrap();
    f.delete_and_check_clean().await;

    // A bundle that is gone fails before the runtime runs, naming it.
    std::fs::remove_dir_all(&f.bundle).unwrap();
    let err = f.spawn().await.unwrap_err().to_string();
    assert!(err.contains(&f.bundle.display().to_string()), "{err}");
    assert!(monitors_of(&f.dir).is_empty());
}

/// Spawns the monitor in a separate process — the "daemon" — in its own
/// process group, SIGTERMs that group, and checks the monitor and the
/// container go on, and that the monitor also shrugs off signals sent to it.
async fn survives_the_daemon(runtime: &str) {
    let script = "echo started; sleep 1000";
    let mut f = Fixture::new(runtime, &["sh", "-c", script], true);
    let config_path = f.tmp.path().join("helper-config.json");
    std::fs::write(&config_path, serde_json::to_vec(&f.config()).unwrap()).unwrap();
    let mut daemon = Helper(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "spawn_helper", "--nocapture", "--test-threads=1"])
            .env(HELPER_ENV, &config_path)
            .env("CRIUS_MONITOR_TEST_DIR", &f.dir)
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(daemon.0.stdout.take().unwrap()).lines();
    let report = loop {
        let line = lines
            .next()
            .expect("helper ended without reporting")
            .unwrap();
        // libtest may have printed "test spawn_helper ... " on this line.
        if let Some((_, r)) = line.split_once("SPAWNED ") {
            break r.to_string();
        }
        if let Some((_, e)) = line.split_once("SPAWN-ERROR ") {
            if e.contains("hybrid mode not supported") {
                eprintln!("SKIP: {runtime} cannot create containers here: {e}");
                return;
            }
            panic!("helper spawn failed: {e}");
        }
    };
    let pids: Vec<i32> = report.split(' ').map(|p| p.parse().unwrap()).collect();
    f.spawned = Some(Spawned {
        container_pid: pids[0],
        monitor_pid: pids[1],
    });
    let monitor_pid = Pid::from_raw(pids[1]);
    assert_eq!(nix::unistd::getsid(Some(monitor_pid)).unwrap(), monitor_pid);

    kill(Pid::from_raw(-(daemon.0.id() as i32)), Signal::SIGTERM).unwrap();
    let status = daemon.0.wait().unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        kill(monitor_pid, signal).unwrap();
    }
    // Were these signals not blocked, they would have ended the monitor by
    // the time the runtime call below returns.
    assert_eq!(
        f.runtime.state(&f.id).await.unwrap().unwrap().status,
        "created"
    );
    assert!(
        is_running_monitor(monitor_pid.as_raw(), &f.dir),
        "monitor died"
    );

    f.runtime.start(&f.id).await.unwrap();
    // Kill only once the output is logged, which proves logging went on.
    let logged = (0..1500).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        std::fs::read_to_string(f.log_path()).is_ok_and(|l| l.contains("started"))
    });
    assert!(logged, "the container's output never reached the log");
    f.runtime.kill(&f.id, 9, false).await.unwrap();
    let exit = f.wait().await;
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));
    assert_eq!(
        records(&f.log(), "stdout"),
        [("F".to_string(), "started".to_string())]
    );
    f.delete_and_check_clean().await;
}

/// The helper "daemon"; killed with its process group and reaped if a test
/// ends before it does.
struct Helper(std::process::Child);

impl Drop for Helper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = kill(Pid::from_raw(-(self.0.id() as i32)), Signal::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

/// Not a test of its own: the "daemon" process of `*::survives_the_daemon`
/// (run by them with the helper variable set); otherwise does nothing.
#[test]
fn spawn_helper() {
    let Some(config_path) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    // Never outlive the test that started us, whatever happens to it.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).unwrap();
    let dir = PathBuf::from(std::env::var_os("CRIUS_MONITOR_TEST_DIR").unwrap());
    let config: MonitorConfig =
        serde_json::from_slice(&std::fs::read(config_path).unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(monitor::spawn(Path::new(MONITOR), &config, &dir)) {
        Ok(s) => println!("SPAWNED {} {}", s.container_pid, s.monitor_pid),
        Err(e) => {
            println!("SPAWN-ERROR {e}");
            return;
        }
    }
    // Stay alive, as a daemon would, until the test kills our group.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

macro_rules! for_runtimes {
    ($($case:ident),*) => {
        mod runc {
            $(#[tokio::test] async fn $case() { super::$case("runc").await })*
        }
        mod crun {
            $(#[tokio::test] async fn $case() { super::$case("crun").await })*
        }
    };
}

for_runtimes!(
    output_and_exit_code,
    sigterm_gives_143,
    bad_create_reports_the_runtime_error,
    survives_the_daemon
);
