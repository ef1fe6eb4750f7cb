//! Reading (and, for cleanup, undoing) what a test left on the host: mounts,
//! processes, bridge ports, cgroups. Shared by the leak checker and the
//! [`NodeDir`](crate::NodeDir) cleanup so both see the same things.

use std::path::{Path, PathBuf};

/// Every mount point at or under `dir`, deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount_field(field)))
        .filter(|point| point.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A process tied to a test: by its command line, cwd or root naming the
/// test's directory, or by living in the test's cgroup parent.
pub(crate) struct TiedProcess {
    pub(crate) pid: i32,
    pub(crate) cmdline: String,
    pub(crate) why: &'static str,
}

/// Processes tied to `dir` or to cgroup `cgroup_parent` ("/crius-e2e-…"),
/// other than this one.
pub(crate) fn processes_tied_to(dir: &Path, cgroup_parent: &str) -> Vec<TiedProcess> {
    let me = std::process::id();
    let dir_text = dir.to_string_lossy();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut tied = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let proc_dir = entry.path();
        let cmdline = std::fs::read(proc_dir.join("cmdline"))
            .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
            .unwrap_or_default();
        let link_under = |name: &str| {
            std::fs::read_link(proc_dir.join(name)).is_ok_and(|target| target.starts_with(dir))
        };
        let why = if cmdline.contains(dir_text.as_ref()) {
            "command line"
        } else if link_under("cwd") {
            "cwd"
        } else if link_under("root") {
            "root"
        } else if in_cgroup(&proc_dir, cgroup_parent) {
            "cgroup"
        } else {
            continue;
        };
        tied.push(TiedProcess {
            pid: pid as i32,
            cmdline: cmdline.trim_end().to_string(),
            why,
        });
    }
    tied
}

fn in_cgroup(proc_dir: &Path, cgroup_parent: &str) -> bool {
    let Ok(cgroups) = std::fs::read_to_string(proc_dir.join("cgroup")) else {
        return false;
    };
    cgroups.lines().any(|line| {
        line.splitn(3, ':').nth(2).is_some_and(|path| {
            path.strip_prefix(cgroup_parent)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    })
}

/// Interfaces enslaved to `bridge` (empty if the bridge does not exist).
pub(crate) fn bridge_ports(bridge: &str) -> Vec<String> {
    std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether network interface `name` exists.
pub(crate) fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The directory of cgroup `cgroup_parent` in every mounted hierarchy
/// (each v1 controller, the v1 named ones, and the v2 unified one) where it
/// exists.
pub(crate) fn cgroup_dirs(cgroup_parent: &str) -> Vec<PathBuf> {
    let relative = cgroup_parent.trim_start_matches('/');
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = hierarchies
        .flatten()
        // Symlinks such as cpu -> cpu,cpuacct would name a hierarchy twice.
        .filter(|h| h.file_type().is_ok_and(|t| t.is_dir()))
        .map(|h| h.path().join(relative))
        .filter(|dir| dir.is_dir())
        .collect();
    // A pure v2 host mounts the unified hierarchy at /sys/fs/cgroup itself.
    let root = Path::new("/sys/fs/cgroup").join(relative);
    if root.is_dir() && !dirs.contains(&root) {
        dirs.push(root);
    }
    dirs
}

/// Every cgroup directory below `dir` (not `dir` itself), deepest first.
pub(crate) fn cgroup_descendants(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(entry.path());
                stack.push(entry.path());
            }
        }
    }
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mount_field(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
        assert_eq!(unescape_mount_field(r"/plain"), "/plain");
        assert_eq!(unescape_mount_field(r"/trailing\"), r"/trailing\");
    }
}
