//! What the node's AppArmor can do, for the container spec's profile, and
//! crius's own default profile: what RuntimeDefault (and a container
//! that names no profile) runs under where the kernel has AppArmor. crius
//! loads it with `apparmor_parser` the first time a container needs it
//! and it is not loaded, as containerd and CRI-O load theirs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};

/// The profile RuntimeDefault means.
pub const DEFAULT_PROFILE: &str = "crius-default";

/// What the node's AppArmor is to containers, for Status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppArmorStatus {
    /// The kernel has AppArmor enabled.
    pub enabled: bool,
    /// The profile RuntimeDefault means.
    pub default_profile: &'static str,
    /// It is loaded (crius loads it when a container first needs it).
    pub default_loaded: bool,
}

/// The node's AppArmor now.
pub fn status() -> AppArmorStatus {
    let enabled = enabled();
    AppArmorStatus {
        enabled,
        default_profile: DEFAULT_PROFILE,
        default_loaded: enabled && loaded(DEFAULT_PROFILE),
    }
}

/// Where `apparmor_parser` is looked for (Debian and Ubuntu ship it in
/// /sbin; some distributions in /usr/sbin).
const PARSER_PATHS: &[&str] = &["/sbin/apparmor_parser", "/usr/sbin/apparmor_parser"];
/// How long loading the profile may take (it is compiled in-kernel form
/// first: well under a second on a small node).
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of the parser's error output kept for the error.
const MAX_PARSER_OUTPUT: u64 = 16 * 1024;

/// Whether the kernel has AppArmor enabled.
pub(super) fn enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// Whether an AppArmor profile of that name is loaded.
pub(super) fn loaded(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
        .is_ok_and(|all| all.lines().any(|l| l.split(" (").next() == Some(name)))
}

/// The text of the default profile. `base` includes the distribution's
/// global tunables and base abstraction (where it has them, in
/// `/etc/apparmor.d`; the abstraction needs the tunables' variables).
///
/// What it allows and denies, in the spirit of the defaults every
/// container runtime ships: files, networking and capabilities as the
/// container's own credentials and seccomp allow them; no mounts; no
/// writes to the kernel's knobs in /proc and /sys (sysrq, kcore, sysctls
/// outside `kernel.shm*`, firmware, security); signals and ptrace only
/// among processes under this profile, and signals from the host's
/// unconfined processes (crius, the monitor, the OCI runtime, kubelet).
pub(super) fn default_profile(base: bool) -> String {
    let name = DEFAULT_PROFILE;
    let (tunables, base) = if base {
        (
            "#include <tunables/global>\n",
            "  #include <abstractions/base>\n",
        )
    } else {
        ("", "")
    };
    format!(
        "# crius's default AppArmor profile for containers; crius loads it when a\n\
         # container needs it. Replace it by loading a profile of this name first.\n\
         {tunables}\
         profile {name} flags=(attach_disconnected,mediate_deleted) {{\n\
         {base}\
         \x20 network,\n\
         \x20 capability,\n\
         \x20 file,\n\
         \x20 umount,\n\
         \x20 deny mount,\n\
         \n\
         \x20 signal (receive) peer=unconfined,\n\
         \x20 signal (send,receive) peer={name},\n\
         \x20 ptrace (trace,read,tracedby,readby) peer={name},\n\
         \n\
         \x20 # /proc: no writes to files at its top, nor below anything but a\n\
         \x20 # process's own directory; sysctls only under kernel.shm*.\n\
         \x20 deny /proc/* w,\n\
         \x20 deny /proc/{{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9/]*}}/** w,\n\
         \x20 deny /proc/sys/[^k]** w,\n\
         \x20 deny /proc/sys/kernel/{{?,??,[^s][^h][^m]**}} w,\n\
         \x20 deny /proc/sysrq-trigger rwklx,\n\
         \x20 deny /proc/kcore rwklx,\n\
         \n\
         \x20 # /sys: nothing written outside /sys/fs/cgroup; firmware and the\n\
         \x20 # security filesystems not even read.\n\
         \x20 deny /sys/[^f]*/** wklx,\n\
         \x20 deny /sys/f[^s]*/** wklx,\n\
         \x20 deny /sys/fs/[^c]*/** wklx,\n\
         \x20 deny /sys/fs/c[^g]*/** wklx,\n\
         \x20 deny /sys/fs/cg[^r]*/** wklx,\n\
         \x20 deny /sys/firmware/** rwklx,\n\
         \x20 deny /sys/kernel/security/** rwklx,\n\
         }}\n"
    )
}

/// The node's `apparmor_parser`.
fn parser() -> Result<PathBuf> {
    PARSER_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "AppArmor profile {DEFAULT_PROFILE} is not loaded and this node has no \
                 apparmor_parser (looked in {}) to load it: install AppArmor's tools, \
                 or load a profile named {DEFAULT_PROFILE}",
                PARSER_PATHS.join(", ")
            ))
        })
}

/// Serialises loads: two containers created at once load the profile once.
static LOADING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Loads the default profile unless a profile of its name is loaded (an
/// operator's own is left as it is). Only where the kernel has AppArmor.
pub(super) async fn ensure_default() -> Result<()> {
    if loaded(DEFAULT_PROFILE) {
        return Ok(());
    }
    let _one = LOADING.lock().await;
    if loaded(DEFAULT_PROFILE) {
        return Ok(());
    }
    let parser = parser()?;
    let text = default_profile(
        ["tunables/global", "abstractions/base"]
            .iter()
            .all(|f| Path::new("/etc/apparmor.d").join(f).is_file()),
    );
    let failed = |why: String| {
        Error::FailedPrecondition(format!(
            "load AppArmor profile {DEFAULT_PROFILE} with {}: {why}",
            parser.display()
        ))
    };
    // -K: no cache written to the node's AppArmor cache directory; -r:
    // load, replacing a profile of the name loaded meanwhile.
    let mut child = tokio::process::Command::new(&parser)
        .args(["-K", "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("start: {e}")))?;
    let (Some(mut stdin), Some(stderr)) = (child.stdin.take(), child.stderr.take()) else {
        return Err(failed("no pipes to it".into()));
    };
    let run = async {
        stdin.write_all(text.as_bytes()).await?;
        drop(stdin);
        let mut out = Vec::new();
        stderr.take(MAX_PARSER_OUTPUT).read_to_end(&mut out).await?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out))
    };
    let (status, out) = tokio::time::timeout(LOAD_TIMEOUT, run)
        .await
        .map_err(|_| failed(format!("still running after {}s", LOAD_TIMEOUT.as_secs())))?
        .map_err(|e| failed(e.to_string()))?;
    if !status.success() {
        return Err(failed(format!(
            "{status}: {}",
            String::from_utf8_lossy(&out).trim()
        )));
    }
    if !loaded(DEFAULT_PROFILE) {
        return Err(failed(
            "it succeeded, but the kernel lists no such profile".into(),
        ));
    }
    tracing::info!(
        profile = DEFAULT_PROFILE,
        "loaded the default AppArmor profile"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_confines_by_its_own_name() {
        let p = default_profile(true);
        assert!(
            p.contains("profile crius-default flags=(attach_disconnected,mediate_deleted) {\n")
        );
        assert!(p.contains("\n#include <tunables/global>\nprofile crius-default "));
        assert!(p.contains("  #include <abstractions/base>\n"));
        assert!(p.contains("  signal (send,receive) peer=crius-default,\n"));
        assert!(p.contains("  deny mount,\n"));
        assert!(p.contains("  deny /proc/sysrq-trigger rwklx,\n"));
        // Balanced braces: the profile block closes once, at the end.
        assert_eq!(p.matches('{').count(), p.matches('}').count());
        assert!(p.ends_with("}\n"));
        // Every rule line ends with a comma.
        for l in p.lines().map(str::trim) {
            if !(l.is_empty() || l.starts_with('#') || l.ends_with('{') || l == "}") {
                assert!(l.ends_with(','), "{l:?}");
            }
        }
        let p = default_profile(false);
        assert!(!p.contains("#include"), "{p}");
    }
}
