//! The OCI runtime binary (runc, crun, …) as the daemon uses it.
//!
//! `create` is not run here: the per-container monitor runs it (see
//! [`OciRuntime::create_command`]) so that it becomes the parent of the
//! container's init. Every other verb is a short call run with
//! `tokio::process`, killed when it outlives the configured timeout.

mod exec;
mod lookup;
mod message;

pub use exec::ExecOutput;
pub(crate) use exec::read_pid;

pub(crate) use lookup::find_executable;
pub(crate) use message::{logged_errors, runtime_message};

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde::Deserialize;

use crate::config::RuntimeSettings;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// The configured OCI runtimes (RuntimeClass handlers) by name, with the
/// default one.
#[derive(Debug)]
pub struct Handlers {
    default: String,
    by_name: BTreeMap<String, OciRuntime>,
}

impl Handlers {
    /// The handlers of `settings`, each with its `--root` below `state`
    /// unless it names one; with `systemd_cgroup`, each manages cgroups
    /// through systemd. A handler whose binary is missing is left out
    /// (logged), unless it is the default.
    pub fn open(
        settings: &RuntimeSettings,
        state: &Path,
        systemd_cgroup: bool,
    ) -> Result<Handlers> {
        let timeout = Duration::from_secs(settings.oci_timeout_secs);
        let mut by_name = BTreeMap::new();
        for (name, handler) in &settings.handlers {
            let root = if handler.root.as_os_str().is_empty() {
                state.join("runtime").join(name)
            } else {
                handler.root.clone()
            };
            match OciRuntime::new(name, &handler.path, &root, timeout) {
                Ok(r) => {
                    by_name.insert(name.clone(), r.with_systemd_cgroup(systemd_cgroup));
                }
                Err(e) if *name != settings.default_runtime => {
                    tracing::warn!(handler = %name, error = %e, "runtime handler unavailable");
                }
                Err(e) => return Err(e),
            }
        }
        if !by_name.contains_key(&settings.default_runtime) {
            return Err(Error::InvalidArgument(format!(
                "default runtime {:?} is not among the configured handlers",
                settings.default_runtime
            )));
        }
        Ok(Handlers {
            default: settings.default_runtime.clone(),
            by_name,
        })
    }

    /// The OCI runtime for a handler name ("" means the default).
    pub fn get(&self, handler: &str) -> Result<&OciRuntime> {
        let name = if handler.is_empty() {
            &self.default
        } else {
            handler
        };
        self.by_name.get(name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "runtime handler {name:?} is not configured (have: {})",
                self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Every handler's runtime.
    pub fn all(&self) -> impl Iterator<Item = &OciRuntime> {
        self.by_name.values()
    }

    /// The handler names, the default first.
    pub fn names(&self) -> Vec<String> {
        let mut names = vec![self.default.clone()];
        names.extend(self.by_name.keys().filter(|k| **k != self.default).cloned());
        names
    }
}

/// One OCI runtime binary with its state directory.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    name: String,
    path: PathBuf,
    root: PathBuf,
    timeout: Duration,
    /// `--systemd-cgroup`: cgroups through systemd, `cgroupsPath` being
    /// `slice:prefix:name`.
    systemd_cgroup: bool,
}

/// What `<runtime> state` says about a container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OciState {
    /// `creating`, `created`, `running`, `paused` or `stopped`.
    pub status: String,
    /// The container's init as seen from the host; 0 once stopped.
    #[serde(default)]
    pub pid: i32,
}

impl OciRuntime {
    /// A runtime called `name` (the RuntimeClass handler) whose binary is
    /// `path` — a path, or a bare name looked up on `$PATH` — keeping its
    /// state under `root` (created if missing). Each call is killed after
    /// `timeout`.
    pub fn new(name: &str, path: &Path, root: &Path, timeout: Duration) -> Result<OciRuntime> {
        let resolved = find_executable(path).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "OCI runtime {name:?}: executable {:?} not found{}",
                path.display().to_string(),
                if path.components().count() > 1 {
                    ""
                } else {
                    " on $PATH"
                }
            ))
        })?;
        fsutil::create_dir_all(root)?;
        Ok(OciRuntime {
            name: name.to_string(),
            path: resolved,
            root: root.to_path_buf(),
            timeout,
            systemd_cgroup: false,
        })
    }

    /// The handler name this runtime was configured under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resolved binary.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first line the binary's `--version` prints (asked once per
    /// binary, 2 s at most), or why it is unknown.
    pub async fn version(&self) -> String {
        static VERSIONS: std::sync::Mutex<std::collections::BTreeMap<PathBuf, String>> =
            std::sync::Mutex::new(std::collections::BTreeMap::new());
        let cached = |p: &Path| {
            VERSIONS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(p)
                .cloned()
        };
        if let Some(v) = cached(&self.path) {
            return v;
        }
        let run = tokio::process::Command::new(&self.path)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let v = match tokio::time::timeout(Duration::from_secs(2), run).await {
            Ok(Ok(out)) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
            Ok(Err(e)) => format!("unknown ({e})"),
            Err(_) => return "unknown (--version took over 2 s)".into(),
        };
        VERSIONS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.path.clone(), v.clone());
        v
    }

    /// The runtime's `--root` state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This runtime, managing cgroups through systemd or not.
    pub fn with_systemd_cgroup(mut self, systemd_cgroup: bool) -> OciRuntime {
        self.systemd_cgroup = systemd_cgroup;
        self
    }

    /// The options every command of this runtime takes before its verb:
    /// `--root R`, and `--systemd-cgroup` where systemd owns the cgroups.
    fn global_args(&self) -> Vec<std::ffi::OsString> {
        let mut args = vec!["--root".into(), self.root.clone().into_os_string()];
        if self.systemd_cgroup {
            args.push("--systemd-cgroup".into());
        }
        args
    }

    /// The full argv of `<bin> --root R create --bundle B --pid-file P <id>`,
    /// for the monitor to run. Paths that are not UTF-8 are converted
    /// lossily; crius only builds UTF-8 paths.
    pub fn create_command(&self, id: &str, bundle: &Path, pid_file: &Path) -> Vec<String> {
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let mut argv = vec![s(&self.path)];
        argv.extend(
            self.global_args()
                .iter()
                .map(|a| a.to_string_lossy().into_owned()),
        );
        argv.extend([
            "create".into(),
            "--bundle".into(),
            s(bundle),
            "--pid-file".into(),
            s(pid_file),
            id.into(),
        ]);
        argv
    }

    /// [`create_command`](Self::create_command) for a container with a
    /// terminal: the runtime sends the terminal's master to
    /// `console_socket`.
    pub fn create_command_with_console(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console_socket: &Path,
    ) -> Vec<String> {
        let mut argv = self.create_command(id, bundle, pid_file);
        let id = argv.pop().unwrap_or_default();
        argv.extend([
            "--console-socket".to_string(),
            console_socket.to_string_lossy().into_owned(),
            id,
        ]);
        argv
    }

    /// Starts the user process of a created container.
    pub async fn start(&self, id: &str) -> Result<()> {
        check_id(id)?;
        self.run("start", id, &["start", id]).await.map(drop)
    }

    /// Starts a created container whose init is `init_pid`. runc holds a
    /// created container's init at an `exec.fifo` beside its `state.json`
    /// until something reads it; that read (and removing the fifo) is all
    /// `runc start` does for a container without poststart hooks (crius
    /// sets none), so crius does it itself and saves starting runc's Go
    /// binary (8-14 ms here). Other runtimes (crun's fifo works the other
    /// way round) get `<runtime> start`.
    pub async fn start_created(&self, id: &str, init_pid: i32) -> Result<()> {
        check_id(id)?;
        let dir = self.root.join(id);
        let fifo = dir.join(EXEC_FIFO);
        let runc_layout = dir.join("state.json").is_file()
            && std::fs::symlink_metadata(&fifo)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
        if !runc_layout {
            return self.start(id).await;
        }
        let what = format!("{} start {id}", self.name);
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || read_exec_fifo(&fifo, init_pid, timeout))
            .await
            .map_err(|e| Error::Internal(format!("{what}: {e}")))?
            .map_err(|message| Error::External { what, message })
    }

    /// Sends `signal` to the container's init, or with `all` to every
    /// process of the container.
    pub async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        check_id(id)?;
        let signal = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal.as_str()]);
        self.run("kill", id, &args).await.map(drop)
    }

    /// Deletes the container's runtime state (and with `force` kills it
    /// first). Deleting a container the runtime does not know succeeds.
    pub async fn delete(&self, id: &str, force: bool) -> Result<()> {
        check_id(id)?;
        // Gone already (deleted when it stopped, or never made): no need
        // to run the runtime to be told so.
        if !self.knows(id) {
            return Ok(());
        }
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        match self.run("delete", id, &args).await {
            Err(_) if !self.knows(id) => Ok(()),
            r => r.map(drop),
        }
    }

    /// Applies new cgroup resources to a created or running container
    /// (`<runtime> update --resources -`, the JSON on stdin).
    pub async fn update(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        check_id(id)?;
        let json = serde_json::to_vec(resources)
            .map_err(|e| Error::Internal(format!("encode resources of container {id}: {e}")))?;
        self.run_with_input(
            "update",
            id,
            &["update", "--resources", "-", id],
            Some(json),
        )
        .await
        .map(drop)
    }

    /// The container's state, or `None` when the runtime does not know it.
    pub async fn state(&self, id: &str) -> Result<Option<OciState>> {
        check_id(id)?;
        let out = match self.run("state", id, &["state", id]).await {
            Err(_) if !self.knows(id) => return Ok(None),
            Err(Error::External { message, .. }) if message.contains("does not exist") => {
                return Ok(None);
            }
            r => r?,
        };
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| Error::External {
                what: format!("{} state {id}", self.name),
                message: format!("unreadable state: {e}"),
            })
    }

    /// Whether the runtime keeps state for `id`; runc and crun both keep a
    /// directory `<root>/<id>`.
    fn knows(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    /// Runs `<bin> --root R <args…>`, killing it after the timeout.
    async fn run(&self, verb: &str, id: &str, args: &[&str]) -> Result<Output> {
        self.run_with_input(verb, id, args, None).await
    }

    /// [`run`](Self::run) with `input` written to its stdin.
    async fn run_with_input(
        &self,
        verb: &str,
        id: &str,
        args: &[&str],
        input: Option<Vec<u8>>,
    ) -> Result<Output> {
        let what = format!("{} {verb} {id}", self.name);
        let mut child = tokio::process::Command::new(&self.path)
            .args(self.global_args())
            .args(args.iter().map(OsStr::new))
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context(|| format!("run {what} ({})", self.path.display()))?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            use tokio::io::AsyncWriteExt;
            // A runtime that exits without reading says why on stderr.
            let _ = stdin.write_all(&data).await;
        }
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            // Dropping the future drops the child, which kills it.
            Err(_) => {
                return Err(Error::External {
                    what,
                    message: format!(
                        "timed out after {}",
                        humantime::format_duration(self.timeout)
                    ),
                });
            }
            Ok(r) => r.context(|| format!("wait for {what}"))?,
        };
        if out.status.success() {
            return Ok(out);
        }
        Err(Error::External {
            what,
            message: runtime_message(&out.stderr, &out.stdout)
                .unwrap_or_else(|| format!("{} without a message", out.status)),
        })
    }
}

/// The fifo runc holds a created container's init at.
const EXEC_FIFO: &str = "exec.fifo";

/// Reads a container's exec fifo as `runc start` does: the init, blocked
/// opening it for writing, writes a byte and goes on to exec the user's
/// process; then the fifo is removed, which marks the container running.
/// Fails if the init dies first, or after `timeout`.
fn read_exec_fifo(fifo: &Path, init_pid: i32, timeout: Duration) -> Result<(), String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking, so a dead init cannot hang us in open().
    let mut file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
        .map_err(|e| format!("open {}: {e}", fifo.display()))?;
    let deadline = std::time::Instant::now() + timeout;
    let mut byte = [0u8; 1];
    loop {
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&file),
            nix::poll::PollFlags::POLLIN,
        )];
        // Wake every 100 ms to see whether the init is still there.
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
        match file.read(&mut byte) {
            Ok(n) if n > 0 => break,
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                return Err(format!("read {}: {e}", fifo.display()));
            }
            _ => {}
        }
        if !process_alive(init_pid) {
            return Err("container process is already dead".into());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "the container's init did not start within {}",
                humantime::format_duration(timeout)
            ));
        }
    }
    std::fs::remove_file(fifo).map_err(|e| format!("remove {}: {e}", fifo.display()))
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name.
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// Container ids become path components and argv words: keep to runc's
/// own rule (`[\w+.-]+`, not `.` or `..`).
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid container id {id:?} for the OCI runtime"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_names_the_missing_binary() {
        let dir = tempfile::tempdir().unwrap();
        let err = OciRuntime::new(
            "fancy",
            Path::new("no-such-runtime-xyz"),
            dir.path(),
            Duration::from_secs(1),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("fancy") && msg.contains("no-such-runtime-xyz"),
            "{msg}"
        );
    }

    #[test]
    fn create_command_is_the_full_argv() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let rt =
            OciRuntime::new("sh", Path::new("/bin/sh"), &root, Duration::from_secs(1)).unwrap();
        assert!(root.is_dir());
        let argv = rt.create_command("abc", Path::new("/b"), Path::new("/b/pid"));
        let root = root.to_string_lossy();
        assert_eq!(
            argv,
            [
                "/bin/sh",
                "--root",
                &root,
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/b/pid",
                "abc"
            ]
        );
    }

    #[test]
    fn ids_that_could_escape_the_root_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "a b"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        for good in ["abc", "0123abcdef", "a_b-c.d+e"] {
            assert!(check_id(good).is_ok(), "{good:?}");
        }
    }

    #[tokio::test]
    async fn failures_carry_the_runtime_message_and_unknown_state_is_none() {
        // A fake runtime: `state` of an unknown container fails like runc.
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("fake-runc");
        std::fs::write(
            &bin,
            "#!/bin/sh\necho 'time=\"t\" level=error msg=\"container does not exist\"' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let rt = OciRuntime::new(
            "runc",
            &bin,
            &dir.path().join("root"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(rt.state("c1").await.unwrap(), None);
        rt.delete("c1", false).await.unwrap();
        match rt.start("c1").await.unwrap_err() {
            Error::External { what, message } => {
                assert_eq!(what, "runc start c1");
                assert_eq!(message, "container does not exist");
            }
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn the_exec_fifo_is_read_like_runc_start_does() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join(EXEC_FIFO);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // The "init": blocks opening for write, writes a byte.
        let path = fifo.clone();
        let init = std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::options().write(true).open(&path).unwrap();
            f.write_all(b"0").unwrap();
        });
        let me = std::process::id() as i32;
        read_exec_fifo(&fifo, me, Duration::from_secs(10)).unwrap();
        init.join().unwrap();
        assert!(!fifo.exists(), "the fifo marks a created container");

        // An init that is gone never writes: an error, not a hang.
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let dead = child.id() as i32;
        child.wait().unwrap();
        let e = read_exec_fifo(&fifo, dead, Duration::from_secs(10)).unwrap_err();
        assert!(e.contains("already dead"), "{e}");
        assert!(process_alive(me));
    }

    #[tokio::test]
    async fn a_hung_call_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("slow-runc");
        std::fs::write(&bin, "#!/bin/sh\nexec sleep 1000\n").unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let rt = OciRuntime::new(
            "runc",
            &bin,
            &dir.path().join("root"),
            Duration::from_millis(100),
        )
        .unwrap();
        let err = rt.kill("c1", 9, true).await.unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
    }
}
