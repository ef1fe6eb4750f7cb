//! The end-to-end test harness of crius.
//!
//! Everything a test needs to drive a real `crius` daemon over its CRI socket
//! with real parts around it:
//!
//! - [`Registry`]: Debian's CNCF registry (`docker-registry`) on a free
//!   loopback port;
//! - [`hostile::HostileRegistry`]: a registry that sends endless, huge or
//!   trickled bodies, to prove the daemon's caps and timeouts;
//! - [`TestImages`]: busybox images built here, layer by layer, and pushed
//!   under OCI, Docker and image-index manifests;
//! - [`Crius`]: the daemon in its own temporary [`NodeDir`] with a private CNI
//!   bridge and cgroup parent, and CRI clients over its unix socket;
//! - [`cri`]: request builders and assertions shared by the tests;
//! - [`assert_no_leaks`]: what a clean shutdown must leave behind: nothing;
//! - [`node_shape`]: which cgroup hierarchy and whether AppArmor this node
//!   has, so a test asserts what is right where it runs (this host, or the
//!   guest lane's systemd, cgroup v2 and AppArmor node, `e2e/guest/`).
//!
//! Whatever a test does, dropping a [`Crius`] (or a [`NodeDir`]) kills its
//! processes and removes its mounts, bridge, cgroups and files, so a failed
//! test leaves the host as it found it.
//!
//! # Running
//!
//! ```text
//! cargo build --workspace --bins && cargo test -p crius-e2e
//! ```
//!
//! as root, with `docker-registry`, `busybox-static`, `runc`, `crun` and the
//! CNI plugins (`/usr/lib/cni` or `/opt/cni/bin`) installed. The daemon is
//! taken from the test binary's target dir unless `CRIUS_BIN` names one;
//! tests that need it fail (never skip) when it is missing. Tests run in
//! parallel: every name, port, subnet and directory is unique per test.

pub mod cri;
mod daemon;
pub mod host;
pub mod hostile;
pub mod image;
mod leaks;
pub mod node_shape;
mod nodedir;
pub mod portforward;
pub mod prometheus;
mod registry;
pub mod remotecommand;
pub mod synth;
pub mod token;
pub mod wrapped_runtime;

use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

pub use daemon::{Crius, CriusOptions, connect_unix, crius_binary, installed_cni_plugin};
pub use image::{PushedImage, TestImages};
pub use leaks::{assert_no_leaks, find_leaks};
pub use nodedir::NodeDir;
pub use registry::{REGISTRY_PASSWORD, REGISTRY_USER, Registry, StallingProxy};

/// A harness failure: what went wrong, with the context a test reader needs
/// (daemon log tails included). `Debug` prints the plain message, so that
/// `.unwrap()` in a test shows it readably.
pub struct Error(String);

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// The harness's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Makes a harness error from a message.
pub fn err(message: impl Into<String>) -> Error {
    Error(message.into())
}

/// Adds what was being done to any displayable error.
pub(crate) trait Context<T> {
    /// Wraps the error as "`what`: `error`".
    fn context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {e}", what())))
    }
}

/// `bytes` random bytes as lowercase hex, for unique names.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS random source does not fail on Linux once booted; a zeroed
    // buffer would only cost uniqueness, which callers check anyway.
    let _ = getrandom::fill(&mut buf);
    hex::encode(buf)
}

/// A loopback TCP port that was free a moment ago. Callers retry if it is
/// taken before they bind it.
///
/// It is drawn from below the kernel's ephemeral range, never from it: a
/// port there can be handed to any outgoing connection meanwhile (a test's
/// client sockets among them), and a daemon restarted on the same port
/// (the kill loop's metrics port) then fails to bind it. Below the range
/// only another test drawing the same port can take it.
pub fn free_port() -> Result<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOWEST: u16 = 10000;
    if ephemeral_low > LOWEST + 1000 {
        for _ in 0..200 {
            let mut b = [0u8; 2];
            let _ = getrandom::fill(&mut b);
            let port = LOWEST + u16::from_le_bytes(b) % (ephemeral_low - LOWEST);
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context(|| "bind 127.0.0.1:0")?;
    Ok(listener
        .local_addr()
        .context(|| "local address of 127.0.0.1:0")?
        .port())
}

/// The last `lines` lines of a log file, for failure messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(data) => {
            let text = String::from_utf8_lossy(&data);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            format!(
                "--- last {} lines of {} ---\n{}\n--- end ---",
                all.len() - start,
                path.display(),
                all[start..].join("\n")
            )
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}

/// Sends SIGTERM to `child` and waits up to `grace` for it to exit, then
/// SIGKILLs it. Returns its exit status, or `None` if it had to be killed.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    signal(child.id(), nix::sys::signal::Signal::SIGTERM);
    let status = wait_bounded(child, grace);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// Waits up to `limit` for `child` to exit.
pub(crate) fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// Sends `sig` to process `pid`, ignoring a process already gone.
pub(crate) fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// GETs `path` from `addr` with a bare HTTP/1.0 request; the whole
/// response, status line and headers included.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).context(|| format!("connect {addr}"))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")
        .context(|| format!("GET {path} from {addr}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .context(|| format!("read GET {path} from {addr}"))?;
    Ok(response)
}

/// The value of the Prometheus sample whose name and labels are exactly
/// `series` (`name{label="v",…}`) in a text exposition.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
