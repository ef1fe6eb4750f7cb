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

/// The PIDs in the cgroup directory `dir` and in every cgroup below it,
/// sorted.
pub fn processes_below(dir: &Path) -> Vec<u32> {
    pids_in(std::iter::once(dir.to_path_buf()).chain(cgroup_descendants(dir)))
}

/// The PIDs in cgroup `cgroup` ("/crius-e2e-…/pod/ctr"), in any hierarchy.
pub fn cgroup_processes(cgroup: &str) -> Vec<u32> {
    pids_in(cgroup_dirs(cgroup))
}

/// The PIDs listed in the `cgroup.procs` of `dirs`, sorted, each once.
fn pids_in(dirs: impl IntoIterator<Item = PathBuf>) -> Vec<u32> {
    let mut pids: Vec<u32> = dirs
        .into_iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The lines of the `nat` and `filter` tables (`iptables-save`) that name
/// CNI network `network` (the bridge plugin's masquerade rules and the
/// portmap plugin's DNAT rules carry `name: "<network>"` in a comment,
/// which iptables-save prints with its quotes escaped).
pub fn iptables_rules_of(network: &str) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["nat", "filter"] {
        let Ok(out) = std::process::Command::new("iptables-save")
            .args(["-t", table])
            .output()
        else {
            continue;
        };
        let tag = format!("\\\"{network}\\\"");
        found.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(&tag))
                .map(|l| format!("{table}: {l}")),
        );
    }
    found
}

/// Deletes every iptables rule (nat and filter) whose comment names CNI
/// network `network`, as the bridge and portmap plugins write them, and
/// the chains all of whose rules do: what a failing test's pods left. One
/// `iptables-restore --noflush` transaction per table, fed the saved rules
/// turned into deletions (so that iptables itself parses their quoting).
pub fn remove_iptables_rules_of(network: &str) {
    let tag = format!("\\\"{network}\\\"");
    for table in ["nat", "filter"] {
        let Ok(out) = std::process::Command::new("iptables-save")
            .args(["-t", table])
            .output()
        else {
            return;
        };
        let saved = String::from_utf8_lossy(&out.stdout);
        let mut rules: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for line in saved.lines() {
            if let Some(rule) = line.strip_prefix("-A ")
                && let Some((chain, _)) = rule.split_once(' ')
            {
                rules.entry(chain).or_default().push(line);
            }
        }
        let doomed: Vec<&str> = rules
            .iter()
            .filter(|(chain, lines)| {
                chain.starts_with("CNI-") && lines.iter().all(|l| l.contains(&tag))
            })
            .map(|(chain, _)| *chain)
            .collect();
        let mut script = format!("*{table}\n");
        for (chain, lines) in &rules {
            if doomed.contains(chain) {
                continue;
            }
            for line in lines.iter().filter(|l| l.contains(&tag)) {
                script.push_str(&format!("-D {}\n", &line[3..]));
            }
        }
        for chain in &doomed {
            script.push_str(&format!("-F {chain}\n"));
        }
        for chain in &doomed {
            script.push_str(&format!("-X {chain}\n"));
        }
        if script.lines().count() == 1 {
            continue;
        }
        script.push_str("COMMIT\n");
        let restored = std::process::Command::new("iptables-restore")
            .arg("--noflush")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                if let Some(mut stdin) = child.stdin.take() {
                    stdin.write_all(script.as_bytes())?;
                }
                child.wait_with_output()
            });
        match restored {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "crius-e2e cleanup: iptables-restore ({table}, network {network}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("crius-e2e cleanup: iptables-restore ({table}): {e}"),
        }
    }
}

/// Every path at or below each of `tops` (not following symlinks, but
/// entering mounts: a container's rootfs is one), for [`openable_by`].
pub fn walk(tops: &[&Path]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = tops.iter().map(|p| p.to_path_buf()).collect();
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
        found.push(path);
    }
    found
}

/// The paths among `paths` that user `uid` (group `gid`, no supplementary
/// groups) can open for reading: what a local user could read, or run, of
/// them. Each is opened without following a final symlink, without
/// blocking (FIFOs); directories count as openable when they can be
/// listed.
pub fn openable_by(uid: u32, gid: u32, paths: &[PathBuf]) -> Vec<PathBuf> {
    use std::ffi::CString;
    use std::io::Read;
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;

    let names: Vec<CString> = paths
        .iter()
        .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
        .collect();
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        panic!("pipe2: {}", std::io::Error::last_os_error());
    }
    // SAFETY: the child only makes syscalls (setgroups, setgid, setuid,
    // open, close, write, _exit) on memory prepared before the fork; it
    // allocates nothing and takes no lock.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; every pointer is valid for the child's life.
        unsafe {
            libc::close(fds[0]);
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                libc::_exit(2);
            }
            for (i, name) in names.iter().enumerate() {
                let fd = libc::open(
                    name.as_ptr(),
                    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
                );
                if fd >= 0 {
                    libc::close(fd);
                    let index = (i as u32).to_ne_bytes();
                    libc::write(fds[1], index.as_ptr().cast(), 4);
                }
            }
            libc::_exit(0);
        }
    }
    assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    // SAFETY: the write end is ours to close.
    unsafe { libc::close(fds[1]) };
    // SAFETY: the read end is ours; the File owns and closes it.
    let mut reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    let mut out = Vec::new();
    let _ = reader.read_to_end(&mut out);
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the probe as uid {uid} failed (status {status})"
    );
    out.chunks_exact(4)
        .filter_map(|c| c.try_into().ok().map(u32::from_ne_bytes))
        .filter_map(|i| paths.get(i as usize).cloned())
        .collect()
}

/// The root of every mounted cgroup hierarchy (each v1 one and v2).
pub fn hierarchy_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect();
    if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
        roots.push("/sys/fs/cgroup".into());
    }
    roots
}

/// Empty cgroups a test makes in every hierarchy, standing for what crius
/// must never touch; removed on drop (with a parent of theirs named
/// `…-host`, made for them).
pub struct CgroupSentinels(Vec<PathBuf>);

impl CgroupSentinels {
    /// Makes `cgroups` ("/a/b") in every hierarchy.
    pub fn make(cgroups: &[String]) -> CgroupSentinels {
        let mut made = Vec::new();
        for root in hierarchy_roots() {
            for cgroup in cgroups {
                let dir = root.join(cgroup.trim_start_matches('/'));
                std::fs::create_dir_all(&dir).unwrap();
                made.push(dir);
            }
        }
        assert!(!made.is_empty());
        CgroupSentinels(made)
    }

    /// Panics, with `log`, if any of them is gone.
    pub fn assert_intact(&self, log: &str) {
        for dir in &self.0 {
            assert!(dir.is_dir(), "{} was removed\n{log}", dir.display());
        }
    }
}

impl Drop for CgroupSentinels {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
            // The parents made for the ones outside the test's parent.
            if let Some(parent) = dir.parent()
                && parent
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with("-host"))
            {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_sees_what_nobody_may_open() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let open = dir.path().join("open");
        let closed = dir.path().join("closed");
        std::fs::write(&open, b"x").unwrap();
        std::fs::write(&closed, b"x").unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o600)).unwrap();
        let all = walk(&[dir.path()]);
        assert_eq!(all.len(), 3);
        let mut seen = openable_by(65534, 65534, &all);
        seen.sort();
        assert_eq!(seen, vec![dir.path().to_path_buf(), open]);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mount_field(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
        assert_eq!(unescape_mount_field(r"/plain"), "/plain");
        assert_eq!(unescape_mount_field(r"/trailing\"), r"/trailing\");
    }
}
