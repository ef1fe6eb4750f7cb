//! The pod's cgroup (cgroupfs driver): `<cgroup parent>/<pod id>` in every
//! mounted hierarchy. Its containers are placed below it by the OCI
//! runtime, which makes the directories as needed; crius makes them itself
//! only for the infra process (in a leaf of its own, `infra`, as cgroup v2
//! allows no process beside child cgroups), and removes the pod's cgroup
//! with the pod.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};

/// The leaf under the pod's cgroup that holds the infra process.
pub const INFRA_LEAF: &str = "infra";
/// The file in the pod's state directory naming the pod's cgroup, once
/// crius has made it itself.
pub const RECORD_FILE: &str = "cgroup";

/// The pod cgroup of pod `id` under `parent` (cgroupfs path).
pub fn pod_path(parent: &str, id: &str) -> String {
    format!("{}/{id}", parent.trim_end_matches('/'))
}

/// `path` as the cgroup of pod `id`, if it can only be that: absolute,
/// without empty, `.` or `..` components, and ending in the pod's id (a
/// random 64-hex name no other object has). The only kind of path whose
/// tree [`remove`] takes away; anything else in a record is damage, and
/// removing "below" it could take every cgroup of the host.
pub fn owned_path(path: &str, id: &str) -> Result<String> {
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
pub fn find_by_id(id: &str) -> Result<Vec<String>> {
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
/// (controllers and named ones) and the v2 one.
fn hierarchies() -> Result<Vec<(PathBuf, bool)>> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").context(|| "read /proc/self/mountinfo")?;
    let mut found = Vec::new();
    for line in info.lines() {
        // "… mount-point options … - fstype source super-options"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let fstype = right.split(' ').next().unwrap_or_default();
        let is_cpuset = right
            .split(' ')
            .nth(2)
            .is_some_and(|opts| opts.split(',').any(|o| o == "cpuset"));
        if matches!(fstype, "cgroup" | "cgroup2") {
            found.push((PathBuf::from(point), fstype == "cgroup" && is_cpuset));
        }
    }
    Ok(found)
}

/// Makes `path` (and its parents) in every hierarchy; a v1 cpuset cgroup
/// gets its parent's CPUs and memory nodes, without which no process may
/// join it.
pub fn create(path: &str) -> Result<()> {
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
pub fn has_processes(path: &str) -> Result<bool> {
    let rel = path.trim_start_matches('/');
    for (root, _) in hierarchies()? {
        let top = root.join(rel);
        let mut dirs = vec![top];
        while let Some(dir) = dirs.pop() {
            let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
                continue;
            };
            if !procs.trim().is_empty() {
                return Ok(true);
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
    }
    Ok(false)
}

/// Moves process `pid` into `path` in every hierarchy.
pub fn add_process(path: &str, pid: i32) -> Result<()> {
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
pub fn remove(path: &str, id: &str) -> Result<()> {
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
