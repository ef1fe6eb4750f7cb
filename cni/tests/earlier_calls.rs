//! Plugin calls an earlier client of the same cache left running (a
//! daemon killed mid-call): the first call of the next one waits for them,
//! kills what outlives the plugin timeout, and touches nobody else's
//! processes. Against the fake plugins; root for the other-user case.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A process killed and reaped when dropped, should the test fail first;
/// its process group too when it leads one.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        if nix::unistd::getpgid(Some(pid)) == Ok(pid) {
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process whose environment names `client` as the CNI client that
/// made it: with the test's cache dir, a plugin call a killed daemon left
/// running, as the next daemon's client finds it. `argv` is run directly
/// (a shell that execs would be a new image, its environment briefly
/// unreadable), and this returns once the process's environment shows
/// the variable: `spawn` returns as the exec begins, before the kernel has
/// set up the new image's environment, and a scan in that window would
/// not see the call.
fn call_of(client: &Path, dir: &Path, argv: &[&str]) -> Reaped {
    let child = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .env("CRIUS_CNI_CLIENT", client)
        .spawn()
        .unwrap();
    let mut wanted = b"CRIUS_CNI_CLIENT=".to_vec();
    wanted.extend_from_slice(client.as_os_str().as_encoded_bytes());
    let environ = format!("/proc/{}/environ", child.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read(&environ)
        .unwrap_or_default()
        .split(|&b| b == 0)
        .any(|var| var == wanted)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{argv:?} never showed its environment"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Reaped(child)
}

/// Sets `container` up and checks that the orphan's call (which logs
/// `ADD orphan eth0` as it ends) was over before this client's first call.
async fn set_up_after_the_orphan(env: &Env, container: &str) {
    env.cni.setup(&attachment(container)).await.unwrap();
    assert_eq!(
        env.calls(),
        [
            "ADD orphan eth0",
            "ADD loopback lo",
            "ADD first eth0",
            "ADD second eth0"
        ],
        "the earlier call must be over before this client's first one"
    );
}

#[tokio::test]
async fn first_call_waits_for_calls_an_earlier_client_left_running() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf("10-pods.conflist", two_plugins("pods", "1.0.0"));
    // Another client's call (another cache dir) is none of this one's.
    let mut foreign = call_of(&env.cache.join("other"), &env.bin, &["sleep", "1000"]);
    // A process of another user naming this client is none of its calls
    // either (it could only delay the daemon, or get itself killed).
    let mut stranger = nix::unistd::Uid::effective().is_root().then(|| {
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("sleep")
            .arg("1000")
            .uid(65534)
            .gid(65534)
            .env("CRIUS_CNI_CLIENT", &env.cache)
            .spawn()
            .unwrap();
        Reaped(child)
    });
    let mut orphan = call_of(
        &env.cache,
        &env.bin,
        &["sh", "-c", "sleep 1; echo 'ADD orphan eth0' >> calls.log"],
    );
    set_up_after_the_orphan(&env, "ctr-after-orphan").await;
    orphan.0.wait().unwrap();
    assert_eq!(
        foreign.0.try_wait().unwrap(),
        None,
        "a foreign process was touched"
    );
    if let Some(stranger) = stranger.as_mut() {
        assert_eq!(
            stranger.0.try_wait().unwrap(),
            None,
            "another user's process was touched"
        );
    }
}

/// The calls lock in a cache directory (the client's own file).
fn calls_lock(cache: &Path) -> std::path::PathBuf {
    cache.join(".calls.lock")
}

/// A process holding the calls lock of `cache` shared, as every call of a
/// client does through the descriptor it inherits, but without the
/// client's variable in its environment: a call as the scan of
/// environments cannot see it, between fork and exec or in the middle of
/// an exec. Returns once the lock is held.
fn unmarked_call_of(cache: &Path, dir: &Path, script: &str) -> Reaped {
    std::fs::create_dir_all(cache).unwrap();
    let lock = calls_lock(cache);
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new("flock")
        .process_group(0)
        .arg("--shared")
        .arg(&lock)
        .args(["sh", "-c", script])
        .current_dir(dir)
        .env_remove("CRIUS_CNI_CLIENT")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        // flock creates the file; the probe takes it exclusively if it can.
        if let Ok(file) = std::fs::File::open(&lock) {
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => break,
                Ok(held) => drop(held),
                Err((_, e)) => panic!("probing {}: {e}", lock.display()),
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "flock never took {}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Reaped(child)
}

#[tokio::test]
async fn first_call_waits_for_an_earlier_call_its_environment_does_not_show() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf("10-pods.conflist", two_plugins("pods", "1.0.0"));
    let mut orphan = unmarked_call_of(
        &env.cache,
        &env.bin,
        "sleep 1; echo 'ADD orphan eth0' >> calls.log",
    );
    set_up_after_the_orphan(&env, "ctr-after-unmarked").await;
    orphan.0.wait().unwrap();
    // This client's calls hold the lock in turn, for the next client.
    let lock = calls_lock(&env.cache);
    for plugin in ["loopback", "first", "second"] {
        let fds = std::fs::read_to_string(env.bin.join(format!("{plugin}.ADD.fds"))).unwrap();
        assert!(
            fds.lines().any(|l| Path::new(l) == lock),
            "{plugin} did not inherit {}: {fds}",
            lock.display()
        );
    }
}

#[tokio::test]
async fn an_earlier_call_holding_only_the_lock_is_killed_past_the_plugin_timeout() {
    let env = Env::new(Duration::from_secs(1));
    env.write_conf("10-pods.conflist", two_plugins("pods", "1.0.0"));
    let mut orphan = unmarked_call_of(&env.cache, &env.bin, "sleep 1000");
    let began = std::time::Instant::now();
    env.cni
        .setup(&attachment("ctr-after-hung-unmarked"))
        .await
        .unwrap();
    assert!(began.elapsed() >= Duration::from_secs(1), "did not wait");
    let status = orphan.0.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
}

#[tokio::test]
async fn an_earlier_call_past_the_plugin_timeout_is_killed() {
    let env = Env::new(Duration::from_secs(1));
    env.write_conf("10-pods.conflist", two_plugins("pods", "1.0.0"));
    let mut orphan = call_of(&env.cache, &env.bin, &["sleep", "1000"]);
    let began = std::time::Instant::now();
    env.cni.setup(&attachment("ctr-after-hung")).await.unwrap();
    assert!(began.elapsed() >= Duration::from_secs(1), "did not wait");
    let status = orphan.0.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
}
