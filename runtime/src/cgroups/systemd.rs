//! The systemd driver: where systemd is PID 1 it owns the cgroup tree, and
//! everything crius makes there goes through its D-Bus API, as kubelet's
//! systemd driver, runc's and crun's `--systemd-cgroup`, containerd and
//! CRI-O do.
//!
//! - A pod's cgroup parent is a slice (`kubepods-burstable-pod<uid>.slice`
//!   from kubelet; [`DEFAULT_PARENT`] when a pod names none). The pod's
//!   own cgroup is a slice below it, `<parent stem>-crius_<pod id>.slice`
//!   (systemd nests slices by the dashes of their names).
//! - The pod's infra process is put in a transient scope of its own in
//!   that slice, `crius-infra-<pod id>.scope`, with `StartTransientUnit`;
//!   the slice comes with it (one job: a transient slice of its own made
//!   ahead measured slower in the guest, RunPodSandbox and removal both).
//! - A container's cgroup is `<pod slice>:crius:<container id>`, the
//!   `cgroupsPath` runc and crun take with `--systemd-cgroup`: they make
//!   the scope `crius-<container id>.scope` in the pod slice, and set its
//!   resources as unit properties.
//! - The pod's slice goes with `StopUnit`, which stops whatever scope is
//!   left below it; crius then waits until its cgroup is gone.
//!
//! Figures are read from the cgroup files of the unit's path in the
//! unified hierarchy, as the cgroupfs driver reads them.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zbus::zvariant::{OwnedObjectPath, Value};

use super::stats::{Hierarchies, Sample};
use super::{CgroupDriver, Detail};
use crate::error::{Error, Result};

/// The slice of pods that name no cgroup parent.
pub const DEFAULT_PARENT: &str = "crius.slice";

/// The `prefix` of container scopes (`crius-<id>.scope`).
const SCOPE_PREFIX: &str = "crius";
/// The cgroup crun makes below a container's delegated scope for the
/// container's processes and limits (its `run.oci.systemd.subgroup`
/// default); runc keeps both in the scope itself.
const DELEGATED_LEAF: &str = "container";

/// The most systemd allows in a unit name.
const MAX_UNIT_NAME: usize = 255;

/// How long a unit's job may take to show in the cgroup tree.
const UNIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long systemd may take to answer one D-Bus call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether systemd is PID 1 here and runs the system manager (what
/// `sd_booted()` checks).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_async = false
)]
trait Manager {
    /// Starts a transient unit (a scope or a slice) with `properties`.
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, &[(&str, Value<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;

    /// Stops a unit (and, for a slice, every unit in it).
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Forgets a unit's failed state, so that it is unloaded.
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
}

/// The systemd driver (cgroup v2 hosts).
#[derive(Debug)]
pub struct Systemd {
    hierarchies: Hierarchies,
    /// The system bus, connected at first use and again after an error.
    bus: Mutex<Option<zbus::blocking::Connection>>,
}

impl Systemd {
    /// The driver for this host, which must run systemd on cgroup v2.
    pub fn detect() -> Result<Systemd> {
        if !booted() {
            return Err(Error::FailedPrecondition(
                "the systemd cgroup driver needs systemd running as PID 1 \
                 (/run/systemd/system is missing)"
                    .into(),
            ));
        }
        if !super::cgroupfs::is_unified() {
            return Err(Error::FailedPrecondition(
                "the systemd cgroup driver needs the unified cgroup v2 hierarchy at \
                 /sys/fs/cgroup; this host mounts cgroup v1 there (use cgroup_driver = \"cgroupfs\")"
                    .into(),
            ));
        }
        Ok(Systemd {
            hierarchies: Hierarchies::detect(),
            bus: Mutex::new(None),
        })
    }

    /// Runs `call` against systemd's manager, [`CALL_TIMEOUT`] at most; the
    /// connection is dropped on an I/O error, so that the next call
    /// connects afresh (systemd or the bus may have restarted).
    fn manager<T>(
        &self,
        what: &str,
        call: impl FnOnce(&ManagerProxy<'_>) -> zbus::Result<T>,
    ) -> Result<T> {
        let mut bus = self.bus.lock().unwrap_or_else(|p| p.into_inner());
        let failed = |e: zbus::Error| Error::Unavailable(format!("systemd: {what}: {e}"));
        let conn = match bus.as_ref() {
            Some(c) => c.clone(),
            None => {
                let c = zbus::blocking::connection::Builder::system()
                    .and_then(|b| b.method_timeout(CALL_TIMEOUT).build())
                    .map_err(failed)?;
                *bus = Some(c.clone());
                c
            }
        };
        drop(bus);
        let result = ManagerProxy::new(&conn).and_then(|m| call(&m));
        if let Err(zbus::Error::InputOutput(_)) = &result {
            *self.bus.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        result.map_err(failed)
    }

    /// The cgroup whose figures and limits are a container's, for `path`
    /// (a slice, or a container's `slice:prefix:name`): the container's
    /// scope, or where crun puts the container's processes and limits
    /// below the scope systemd delegated to it ([`DELEGATED_LEAF`]). Usage
    /// is counted there too: what the scope holds beside it is the
    /// runtime's own set-up.
    fn leaf(&self, path: &str) -> Option<String> {
        let rel = cgroup_path(path)?;
        if path.contains(':') {
            let leaf = format!("{rel}/{DELEGATED_LEAF}");
            if Path::new("/sys/fs/cgroup")
                .join(leaf.trim_start_matches('/'))
                .is_dir()
            {
                return Some(leaf);
            }
        }
        Some(rel)
    }

    /// The cgroup of `path` (a slice, or a container's `slice:prefix:name`)
    /// in the unified hierarchy.
    fn dir(&self, path: &str) -> Option<PathBuf> {
        let rel = cgroup_path(path)?;
        Some(Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/')))
    }
}

impl CgroupDriver for Systemd {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn default_parent(&self) -> &'static str {
        DEFAULT_PARENT
    }

    fn check_parent(&self, parent: &str) -> Result<(), &'static str> {
        if parent.is_empty() {
            return Ok(());
        }
        slice_stem(parent_slice(parent)?)?;
        if pod_slice(parent, &"0".repeat(64)).len() > MAX_UNIT_NAME {
            return Err("is too long for a slice below it");
        }
        Ok(())
    }

    fn pod_cgroup(&self, parent: &str, pod_id: &str) -> String {
        pod_slice(parent, pod_id)
    }

    fn container_cgroup(&self, pod_cgroup: &str, container_id: &str) -> String {
        format!("{pod_cgroup}:{SCOPE_PREFIX}:{container_id}")
    }

    fn owned_pod_cgroup(&self, path: &str, pod_id: &str) -> Result<String> {
        owned_slice(path, pod_id)
    }

    fn find_pod_cgroups(&self, pod_id: &str) -> Result<Vec<String>> {
        if !crate::state::is_id(pod_id) {
            return Ok(Vec::new());
        }
        let name = format!("crius_{pod_id}.slice");
        let suffix = format!("-{name}");
        let mut found = Vec::new();
        // Slices nest by name: a pod slice sits a few levels down at most.
        let mut stack = vec![(PathBuf::from("/sys/fs/cgroup"), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(n) = file_name.to_str() else {
                    continue;
                };
                if !n.ends_with(".slice") || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if (n == name || n.ends_with(&suffix)) && owned_slice(n, pod_id).is_ok() {
                    found.push(n.to_string());
                } else if depth < 8 {
                    stack.push((entry.path(), depth + 1));
                }
            }
        }
        Ok(found)
    }

    fn place_infra(&self, pod_cgroup: &str, pod_id: &str, pid: i32) -> Result<()> {
        let unit = format!("crius-infra-{pod_id}.scope");
        let pid_u32 = u32::try_from(pid)
            .map_err(|_| Error::Internal(format!("infra process id {pid} is not a pid")))?;
        let description = format!("crius pod {pod_id} infra");
        self.manager(&format!("start {unit}"), |m| {
            m.start_transient_unit(
                &unit,
                "fail",
                &[
                    ("Description", Value::from(description.as_str())),
                    ("Slice", Value::from(pod_cgroup)),
                    ("PIDs", Value::from(vec![pid_u32])),
                    ("DefaultDependencies", Value::from(false)),
                    ("CollectMode", Value::from("inactive-or-failed")),
                ],
                &[],
            )
        })?;
        // The job is queued; the process is in the scope once systemd has
        // run it.
        let want = format!("{}/{unit}", cgroup_path(pod_cgroup).unwrap_or_default());
        let began = Instant::now();
        loop {
            match process_cgroup(pid) {
                Some(now) if now == want => return Ok(()),
                None => {
                    return Err(Error::Internal(format!(
                        "infra process {pid} of pod {pod_id} went away while systemd placed it"
                    )));
                }
                Some(_) if began.elapsed() > UNIT_TIMEOUT => {
                    return Err(Error::Unavailable(format!(
                        "systemd did not move infra process {pid} into {unit} within {}s",
                        UNIT_TIMEOUT.as_secs()
                    )));
                }
                Some(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    fn has_processes(&self, path: &str) -> Result<bool> {
        Ok(self
            .dir(path)
            .is_some_and(|dir| super::cgroupfs::any_process_below(&dir)))
    }

    fn remove_pod_cgroup(&self, path: &str, pod_id: &str) -> Result<()> {
        let slice = owned_slice(path, pod_id)?;
        let Some(dir) = self.dir(&slice) else {
            return Ok(());
        };
        if !dir.exists() {
            // Never made (no infra, no container) or gone already; a unit
            // systemd still knows of is unloaded with its failed state.
            let _ = self.manager("reset", |m| m.reset_failed_unit(&slice));
            return Ok(());
        }
        match self.manager(&format!("stop {slice}"), |m| m.stop_unit(&slice, "replace")) {
            Ok(_) => {}
            Err(e) if !dir.exists() => {
                tracing::debug!(slice = %slice, error = %e, "stopping a pod slice already gone");
            }
            Err(e) => return Err(e),
        }
        let began = Instant::now();
        while dir.exists() {
            if began.elapsed() > UNIT_TIMEOUT {
                return Err(Error::Unavailable(format!(
                    "systemd did not remove {slice} ({}) within {}s",
                    dir.display(),
                    UNIT_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn unified(&self) -> bool {
        // Hosts on cgroup v1 are refused at detection.
        true
    }

    fn systemd(&self) -> bool {
        true
    }

    fn oom_file(&self, path: &str) -> Option<PathBuf> {
        Some(self.dir(path)?.join("memory.events"))
    }

    fn read(&self, path: &str) -> Sample {
        self.hierarchies.read(&self.leaf(path).unwrap_or_default())
    }

    fn detail(&self, path: &str) -> Detail {
        self.hierarchies
            .detail(&self.leaf(path).unwrap_or_default())
    }

    fn set_hugetlb(&self, path: &str, limits: &[(String, u64)]) -> Result<()> {
        // systemd has no hugetlb property: the file is the limit.
        let leaf = self.leaf(path).ok_or_else(|| {
            Error::InvalidArgument(format!("{path:?} is not a systemd cgroup path"))
        })?;
        self.hierarchies.set_hugetlb(&leaf, limits)
    }
}

/// The stem of a slice name (`a-b` of `a-b.slice`; empty for the root
/// slice `-.slice`), if `name` is a slice systemd accepts: unit name
/// characters only, no empty component between dashes.
fn slice_stem(name: &str) -> Result<&str, &'static str> {
    if name.starts_with('/') {
        return Err(
            "must be a systemd slice name such as kubepods-burstable-pod<uid>.slice \
             (this node uses the systemd cgroup driver)",
        );
    }
    let Some(stem) = name.strip_suffix(".slice") else {
        return Err("must be a systemd slice name, ending in .slice");
    };
    if name.len() > MAX_UNIT_NAME {
        return Err("is longer than a unit name may be");
    }
    if stem == "-" {
        return Ok("");
    }
    if !stem
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":_.-\\".contains(&b))
    {
        return Err("holds a character systemd unit names may not have");
    }
    if stem.is_empty() || stem.split('-').any(str::is_empty) {
        return Err("has an empty component between dashes");
    }
    Ok(stem)
}

/// The slice a cgroup parent names: a slice name
/// (`kubepods-burstable-pod<uid>.slice`, as kubelet sends it), or that
/// slice's place in the tree (`/kubepods.slice/kubepods-burstable.slice/…`,
/// as critest sends `/test.slice`), which must be where systemd puts it.
/// containerd and CRI-O take the last component of either.
fn parent_slice(parent: &str) -> Result<&str, &'static str> {
    let Some(tree) = parent.strip_prefix('/') else {
        return Ok(parent);
    };
    let last = tree.rsplit('/').next().unwrap_or(tree);
    match slice_dir(last) {
        Some(dir) if dir == parent => Ok(last),
        _ => Err(
            "must be a systemd slice name such as kubepods-burstable-pod<uid>.slice, \
             or that slice's path (/kubepods.slice/kubepods-burstable.slice/…) \
             (this node uses the systemd cgroup driver)",
        ),
    }
}

/// The slice of pod `id` below the slice `parent` (the default one when
/// empty).
fn pod_slice(parent: &str, id: &str) -> String {
    let parent = match parent_slice(parent) {
        Ok("") => DEFAULT_PARENT,
        Ok(slice) => slice,
        Err(_) => "-.slice",
    };
    match slice_stem(parent) {
        Ok("") | Err(_) => format!("crius_{id}.slice"),
        Ok(stem) => format!("{stem}-crius_{id}.slice"),
    }
}

/// `path` as the slice of pod `id`, if it can only be that: a valid slice
/// name ending in `crius_<id>.slice`, for a pod id crius makes. The only
/// kind of unit whose tree [`Systemd::remove_pod_cgroup`] stops.
fn owned_slice(path: &str, id: &str) -> Result<String> {
    let bad = |why: &str| {
        Err(Error::Internal(format!(
            "pod {id}: recorded cgroup {path:?} is not the pod's own slice ({why}); left alone"
        )))
    };
    if !crate::state::is_id(id) {
        return bad("the pod id is not one crius makes");
    }
    let stem = match slice_stem(path) {
        Ok(stem) => stem,
        Err(why) => return bad(why),
    };
    let own = format!("crius_{id}");
    if stem != own && !stem.ends_with(&format!("-{own}")) {
        return bad("it does not end in the pod's crius_<id>.slice");
    }
    Ok(path.to_string())
}

/// The cgroup (below the hierarchy's root) of a slice, of a container's
/// `slice:prefix:name` (its scope `prefix-name.scope` in the slice), or of
/// a scope in a slice given as `slice/unit.scope`.
fn cgroup_path(path: &str) -> Option<String> {
    if let Some((slice, rest)) = path.split_once(':') {
        let (prefix, name) = rest.split_once(':')?;
        if prefix.is_empty() || name.is_empty() || name.contains([':', '/']) {
            return None;
        }
        return Some(format!("{}/{prefix}-{name}.scope", slice_dir(slice)?));
    }
    slice_dir(path)
}

/// The cgroup of a slice: each dash-separated prefix is a slice of its
/// own, `a-b-c.slice` being `/a.slice/a-b.slice/a-b-c.slice`.
fn slice_dir(slice: &str) -> Option<String> {
    let stem = slice_stem(slice).ok()?;
    if stem.is_empty() {
        return Some(String::new());
    }
    let mut dir = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        dir.push('/');
        dir.push_str(&prefix);
        dir.push_str(".slice");
    }
    Some(dir)
}

/// The unified-hierarchy cgroup of process `pid` (`0::<path>`), `None`
/// once it is gone.
fn process_cgroup(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    Some(
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or_default()
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_nest_by_their_dashes() {
        assert_eq!(slice_dir("-.slice").unwrap(), "");
        assert_eq!(slice_dir("crius.slice").unwrap(), "/crius.slice");
        assert_eq!(
            slice_dir("kubepods-burstable-pod1_2.slice").unwrap(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice"
        );
        for bad in [
            "",
            "a",
            ".slice",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            "/kubepods",
            "a b.slice",
            "a/b.slice",
        ] {
            assert!(slice_dir(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn pods_get_a_slice_below_their_parent_and_containers_a_scope_in_it() {
        let id = "ab".repeat(32);
        let pod = pod_slice("kubepods-besteffort-pod9.slice", &id);
        assert_eq!(pod, format!("kubepods-besteffort-pod9-crius_{id}.slice"));
        assert_eq!(pod_slice("", &id), format!("crius-crius_{id}.slice"));
        assert_eq!(pod_slice("-.slice", &id), format!("crius_{id}.slice"));
        assert_eq!(
            pod_slice("/test.slice", &id),
            format!("test-crius_{id}.slice")
        );
        assert_eq!(
            pod_slice("/kubepods.slice/kubepods-pod9.slice", &id),
            format!("kubepods-pod9-crius_{id}.slice")
        );
        assert_eq!(
            cgroup_path(&format!("{pod}:crius:c1")).unwrap(),
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9.slice/\
                 kubepods-besteffort-pod9-crius_{id}.slice/crius-c1.scope"
            )
        );
        for bad in [
            "a.slice:crius",
            "a.slice::c",
            "a.slice:crius:",
            "/x:crius:c",
        ] {
            assert!(cgroup_path(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn only_the_pods_own_slice_may_be_stopped() {
        let id = "cd".repeat(32);
        owned_slice(&format!("kubepods-pod1-crius_{id}.slice"), &id).unwrap();
        owned_slice(&format!("crius_{id}.slice"), &id).unwrap();
        for bad in [
            String::new(),
            "-.slice".into(),
            "kubepods.slice".into(),
            format!("kubepods-pod1-crius_{id}x.slice"),
            format!("kubepods-pod1-xcrius_{id}.slice"),
            format!("/kubepods/crius_{id}"),
            format!("kubepods--crius_{id}.slice"),
            format!("kubepods-crius_{id}.slice:crius:c"),
        ] {
            assert!(owned_slice(&bad, &id).is_err(), "{bad:?}");
        }
        assert!(owned_slice("crius_abc.slice", "abc").is_err(), "not an id");
    }

    #[test]
    fn parents_must_be_slices_with_room_for_a_pod_below() {
        let d = Systemd {
            hierarchies: Hierarchies::detect(),
            bus: Mutex::new(None),
        };
        d.check_parent("").unwrap();
        d.check_parent("kubepods-burstable-pod1_2.slice").unwrap();
        d.check_parent("/test.slice").unwrap();
        d.check_parent("/kubepods.slice/kubepods-burstable.slice")
            .unwrap();
        for bad in [
            "/",
            "/kubepods.slice/",
            "/kubepods.slice/burstable.slice",
            "/kubepods-burstable.slice",
            "//test.slice",
            "/a.slice/../a-b.slice",
        ] {
            assert!(d.check_parent(bad).is_err(), "{bad:?}");
        }
        assert!(d.check_parent("/kubepods/burstable").is_err());
        assert!(d.check_parent("kubepods").is_err());
        assert!(
            d.check_parent(&format!("{}.slice", "a".repeat(200)))
                .is_err()
        );
    }
}
