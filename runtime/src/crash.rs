//! Crash injection for tests: the daemon kills itself (SIGKILL, as
//! `kill -9` or a power cut would end it) at a named point of a lifecycle
//! call, so that tests can prove what start-up recovery makes of the
//! leftovers.
//!
//! Inert unless the environment variable [`ENV`] names a point when the
//! daemon starts (it is read once). Compiled into every build: a disabled
//! point costs one load of a static, and the e2e tests then run the very
//! binary that ships.

use std::sync::OnceLock;

/// The environment variable naming the point to crash at.
pub const ENV: &str = "CRIUS_CRASH_AT";

/// Every crash point, in lifecycle order (the e2e tests iterate these).
pub const POINTS: &[&str] = &[
    RUNP_AFTER_NAMESPACES,
    RUNP_DURING_NETWORK,
    RUNP_AFTER_NETWORK,
    RUNP_BEFORE_RECORD,
    CREATE_AFTER_ROOTFS,
    CREATE_AFTER_MONITOR,
    CREATE_BEFORE_RECORD,
    START_BEFORE_RUNTIME,
    START_AFTER_RUNTIME,
    STOP_AFTER_SIGNAL,
    REMOVE_AFTER_RUNTIME_DELETE,
    REMOVE_AFTER_UNMOUNT,
    STOPP_AFTER_NETWORK,
    REMOVEP_AFTER_NETWORK,
    REMOVEP_AFTER_FILES,
    PULL_AFTER_LAYERS,
];

/// RunPodSandbox: the pod's namespaces are pinned and its shm mounted.
pub const RUNP_AFTER_NAMESPACES: &str = "runp-after-namespaces";
/// RunPodSandbox: a plugin of the pod's network (not loopback) has done
/// its ADD; the chain's result is not yet cached.
pub const RUNP_DURING_NETWORK: &str = "runp-during-network";
/// RunPodSandbox: CNI ADD is done (and the infra process started).
pub const RUNP_AFTER_NETWORK: &str = "runp-after-network";
/// RunPodSandbox: everything is made, the record not yet saved.
pub const RUNP_BEFORE_RECORD: &str = "runp-before-record";
/// CreateContainer: the rootfs is mounted.
pub const CREATE_AFTER_ROOTFS: &str = "create-after-rootfs";
/// CreateContainer: the monitor ran the OCI runtime's create.
pub const CREATE_AFTER_MONITOR: &str = "create-after-monitor";
/// CreateContainer: everything is made, the record not yet saved.
pub const CREATE_BEFORE_RECORD: &str = "create-before-record";
/// StartContainer: before the OCI runtime's start.
pub const START_BEFORE_RUNTIME: &str = "start-before-runtime";
/// StartContainer: the OCI runtime started it; not yet recorded.
pub const START_AFTER_RUNTIME: &str = "start-after-runtime";
/// StopContainer: the stop signal is sent, the exit not yet seen.
pub const STOP_AFTER_SIGNAL: &str = "stop-after-signal";
/// RemoveContainer: the OCI runtime deleted it; the rootfs still mounted.
pub const REMOVE_AFTER_RUNTIME_DELETE: &str = "remove-after-runtime-delete";
/// RemoveContainer: the rootfs is unmounted and the directories gone; the
/// record not yet deleted.
pub const REMOVE_AFTER_UNMOUNT: &str = "remove-after-unmount";
/// StopPodSandbox: the network is torn down; not yet recorded.
pub const STOPP_AFTER_NETWORK: &str = "stopp-after-network";
/// RemovePodSandbox: the network is torn down (and recorded).
pub const REMOVEP_AFTER_NETWORK: &str = "removep-after-network";
/// RemovePodSandbox: pins, mounts, cgroup and directories are gone; the
/// record not yet deleted.
pub const REMOVEP_AFTER_FILES: &str = "removep-after-files";
/// PullImage: every layer is unpacked; the image not yet recorded.
pub const PULL_AFTER_LAYERS: &str = "pull-after-layers";

fn armed() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| {
        let at = std::env::var(ENV).ok().filter(|s| !s.is_empty());
        if let Some(at) = &at {
            tracing::warn!(point = %at, "crash injection armed ({ENV}): this daemon will kill itself");
        }
        at
    })
    .as_deref()
}

/// Reads [`ENV`] now (call once at start-up, so that a misspelt point is
/// reported before any request).
pub fn arm() {
    if let Some(at) = armed()
        && !POINTS.contains(&at)
    {
        tracing::error!(point = %at, known = ?POINTS, "unknown crash point in {ENV}");
    }
}

/// Kills the process with SIGKILL if [`ENV`] names `point`.
pub fn point(point: &str) {
    if armed() == Some(point) {
        tracing::warn!(point, "crash point reached: killing the daemon");
        // SIGKILL rather than abort(): no core dump, no unwinding, no
        // destructor runs, exactly as `kill -9`.
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for p in POINTS {
            assert!(seen.insert(*p), "{p} twice");
        }
    }

    #[test]
    fn an_unarmed_point_does_nothing() {
        point("no-such-point");
    }
}
