//! The cgroupfs driver: a pod's cgroup is `<cgroup parent>/<pod id>` in
//! every mounted hierarchy, its containers' `<pod cgroup>/<container id>`.
//! The OCI runtime places containers, making the directories as needed;
//! crius makes them itself only for the infra process (in a leaf of its
//! own, `infra`, as cgroup v2 allows no process beside child cgroups), and
//! removes the pod's cgroup with the pod.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::stats::{Hierarchies, Sample};
use super::{CgroupDriver, Detail};
use crate::error::{Error, IoContext, Result};

/// The leaf under a pod's cgroup that holds its infra process (cgroup v2
/// allows no process beside child cgroups).
const INFRA_LEAF: &str = "infra";

/// The cgroupfs driver, for v1, hybrid and v2 hosts.
#[derive(Debug)]
pub struct Cgroupfs {
    /// Where the controllers the figures come from are mounted.
    hierarchies: Hierarchies,
    /// /sys/fs/cgroup is the unified hierarchy (a v2-only host).
    unified: bool,
}

impl Cgroupfs {
    /// The driver for this host's hierarchies, as mounted now.
    pub fn detect() -> Cgroupfs {
        Cgroupfs {
            hierarchies: Hierarchies::detect(),
            unified: is_unified(),
        }
    }
}

impl CgroupDriver for Cgroupfs {
    fn name(&self) -> &'static str {
        "cgroupfs"
    }

    fn default_parent(&self) -> &'static str {
        "/crius"
    }

    fn check_parent(&self, parent: &str) -> Result<(), &'static str> {
        if parent.is_empty() {
            return Ok(());
        }
        if !parent.starts_with('/') {
            return Err(
                "must be an absolute cgroupfs path (this node uses the cgroupfs cgroup driver)",
            );
        }
        if parent
            .split('/')
            .any(|c| c == "." || c == ".." || c.contains('\0'))
        {
            return Err("must not hold \".\" or \"..\"");
        }
        Ok(())
    }

    fn pod_cgroup(&self, parent: &str, pod_id: &str) -> String {
        pod_path(parent, pod_id)
    }

    fn container_cgroup(&self, pod_cgroup: &str, container_id: &str) -> String {
        format!("{}/{container_id}", pod_cgroup.trim_end_matches('/'))
    }

    fn owned_pod_cgroup(&self, path: &str, pod_id: &str) -> Result<String> {
        owned_path(path, pod_id)
    }

    fn find_pod_cgroups(&self, pod_id: &str) -> Result<Vec<String>> {
        find_by_id(pod_id)
    }

    fn place_infra(&self, pod_cgroup: &str, _pod_id: &str, pid: i32) -> Result<()> {
        let leaf = format!("{}/{INFRA_LEAF}", pod_cgroup.trim_end_matches('/'));
        create(&leaf)?;
        add_process(&leaf, pid)
    }

    fn has_processes(&self, path: &str) -> Result<bool> {
        has_processes(path)
    }

    fn remove_pod_cgroup(&self, path: &str, pod_id: &str) -> Result<()> {
        remove(path, pod_id)
    }

    fn unified(&self) -> bool {
        self.unified
    }

    fn oom_file(&self, path: &str) -> Option<PathBuf> {
        let rel = path.trim_start_matches('/');
        if self.unified {
            return Some(Path::new("/sys/fs/cgroup").join(rel).join("memory.events"));
        }
        let v1 = Path::new("/sys/fs/cgroup/memory");
        v1.is_dir().then(|| v1.join(rel).join("memory.oom_control"))
    }

    fn read(&self, path: &str) -> Sample {
        self.hierarchies.read(path)
    }

    fn detail(&self, path: &str) -> Detail {
        self.hierarchies.detail(path)
    }

    fn set_hugetlb(&self, path: &str, limits: &[(String, u64)]) -> Result<()> {
        self.hierarchies.set_hugetlb(path, limits)
    }
}

/// Whether /sys/fs/cgroup is the cgroup v2 unified hierarchy.
pub(super) fn is_unified() -> bool {
    nix::sys::statfs::statfs(Path::new("/sys/fs/cgroup"))
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The pod cgroup of pod `id` under `parent` (cgroupfs path).
pub(super) fn pod_path(parent: &str, id: &str) -> String {
    format!("{}/{id}", parent.trim_end_matches('/'))
}

/// `path` as the cgroup of pod `id`, if it can only be that: absolute,
/// without empty, `.` or `..` components, and ending in the pod's id (a
/// random 64-hex name no other object has). The only kind of path whose
/// tree [`remove`] takes away; anything else in a record is damage, and
/// removing "below" it could take every cgroup of the host.
pub(super) fn owned_path(path: &str, id: &str) -> Result<String> {
    let bad = |why: &str| {
        Err(Error::Internal(format!(
            "pod {id}: recorded cgroup {path:?} is not the pod's own ({why}); left alone"
        )))
    };
    if !crate::state::is_id(id) {
        return bad("the pod id is not one crius makes");
    }
    let Some(rel) = path.strip_prefix('/') else {
        return bad("not an absolute cgroupfs path");
    };
    let parts: Vec<&str> = rel.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'))
    {
        return bad("empty, \".\" or \"..\" component");
    }
    if parts.last() != Some(&id) {
        return bad("its last component is not the pod's id");
    }
    Ok(path.to_string())
}

/// The cgroups named `id` in the hierarchies (at most `MAX_SEARCH_DEPTH`
/// levels down), as cgroupfs paths: where a pod whose record of its cgroup
/// was lost has it. Only paths that [`owned_path`] accepts are returned.
pub(super) fn find_by_id(id: &str) -> Result<Vec<String>> {
    const MAX_SEARCH_DEPTH: usize = 8;
    let mut found = std::collections::BTreeSet::new();
    if !crate::state::is_id(id) {
        return Ok(Vec::new());
    }
    for (root, _) in hierarchies()? {
        let mut stack = vec![(root.clone(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = entry.path();
                if entry.file_name() == id {
                    if let Ok(rel) = path.strip_prefix(&root) {
                        found.insert(format!("/{}", rel.display()));
                    }
                } else if depth + 1 < MAX_SEARCH_DEPTH {
                    stack.push((path, depth + 1));
                }
            }
        }
    }
    Ok(found
        .into_iter()
        .filter(|p| owned_path(p, id).is_ok())
        .collect())
}

/// The mount points of the cgroup hierarchies: each v1 hierarchy
/// (controllers and named ones) and the v2 one, each with whether it is
/// the v1 cpuset hierarchy.
fn hierarchies() -> Result<Vec<(PathBuf, bool)>> {
    Ok(super::mountinfo::read()?
        .into_iter()
        .map(|m| {
            let cpuset = m.has("cpuset");
            (m.point, cpuset)
        })
        .collect())
}

/// Makes `path` (and its parents) in every hierarchy; a v1 cpuset cgroup
/// gets its parent's CPUs and memory nodes, without which no process may
/// join it.
pub(super) fn create(path: &str) -> Result<()> {
    let rel = path.trim_start_matches('/');
    for (root, cpuset) in hierarchies()? {
        let mut dir = root.clone();
        for part in Path::new(rel).components() {
            dir.push(part);
            match std::fs::create_dir(&dir) {
                Ok(()) if cpuset => inherit_cpuset(&dir)?,
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(format!("create cgroup {}", dir.display()), e)),
            }
        }
    }
    Ok(())
}

fn inherit_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let value = std::fs::read_to_string(parent.join(file))
            .context(|| format!("read {}", parent.join(file).display()))?;
        std::fs::write(dir.join(file), value.trim())
            .context(|| format!("write {}", dir.join(file).display()))?;
    }
    Ok(())
}

/// Whether any process is left in cgroup `path` (or below it), in any
/// hierarchy where it exists.
pub(super) fn has_processes(path: &str) -> Result<bool> {
    let rel = path.trim_start_matches('/');
    Ok(hierarchies()?
        .into_iter()
        .any(|(root, _)| any_process_below(&root.join(rel))))
}

/// Whether cgroup directory `top`, or one below it, holds a process.
pub(super) fn any_process_below(top: &Path) -> bool {
    let mut dirs = vec![top.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
            continue;
        };
        if !procs.trim().is_empty() {
            return true;
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    false
}

/// Moves process `pid` into `path` in every hierarchy.
pub(super) fn add_process(path: &str, pid: i32) -> Result<()> {
    let rel = path.trim_start_matches('/');
    for (root, _) in hierarchies()? {
        let procs = root.join(rel).join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .context(|| format!("move process {pid} into {}", procs.display()))?;
    }
    Ok(())
}

/// Removes the cgroup of pod `id` at `path` and the cgroups below it in
/// every hierarchy; one that is not there is fine. Refuses any path that
/// [`owned_path`] does not accept. A cgroup whose last process just died
/// may stay busy a moment, so EBUSY is retried briefly.
pub(super) fn remove(path: &str, id: &str) -> Result<()> {
    let path = owned_path(path, id)?;
    let rel = path.trim_start_matches('/');
    for (root, _) in hierarchies()? {
        let top = root.join(rel);
        let mut dirs = vec![top.clone()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(entries) = std::fs::read_dir(&dirs[i]) {
                dirs.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
            i += 1;
        }
        for dir in dirs.iter().rev() {
            rmdir(dir)?;
        }
    }
    Ok(())
}

fn rmdir(dir: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(Error::io(format!("remove cgroup {}", dir.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cgroup_sits_below_the_parent() {
        assert_eq!(pod_path("/kubepods/pod1", "abc"), "/kubepods/pod1/abc");
        assert_eq!(pod_path("/crius/", "abc"), "/crius/abc");
    }

    #[test]
    fn only_the_pods_own_cgroup_may_be_removed() {
        let id = "ab".repeat(32);
        owned_path(&format!("/kubepods/pod1/{id}"), &id).unwrap();
        owned_path(&format!("/{id}"), &id).unwrap();
        for bad in [
            String::new(),
            "/".into(),
            "/kubepods".into(),
            format!("kubepods/{id}"),
            format!("/kubepods//{id}"),
            format!("/kubepods/../{id}"),
            format!("/{id}/.."),
            format!("/{id}/x"),
            format!("/other{id}"),
        ] {
            assert!(owned_path(&bad, &id).is_err(), "{bad:?}");
            assert!(remove(&bad, &id).is_err(), "{bad:?}");
        }
        assert!(owned_path("/x/abc", "abc").is_err(), "not an id");
    }

    #[test]
    fn hierarchies_are_found() {
        // Every Linux host running containers mounts at least one.
        assert!(!hierarchies().unwrap().is_empty());
    }
}
