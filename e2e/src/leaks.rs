//! What a cleanly stopped daemon must leave behind: nothing but files.

use std::path::Path;

use crate::host::{
    bridge_ports, cgroup_descendants, cgroup_dirs, iptables_rules_of, mounts_under,
    processes_tied_to,
};
use crate::{Crius, NodeDir};

/// Everything tied to `dir` that should be gone once every pod is removed
/// and the daemon stopped: mounts under it, processes referencing it or in
/// its cgroup parent, ports on its bridge, iptables rules of its CNI
/// network, IP reservations, cgroups below its cgroup parent, OCI runtime
/// state. One line per leak.
pub fn find_leaks(dir: &NodeDir) -> Vec<String> {
    let mut leaks = Vec::new();
    for mount in mounts_under(dir.path()) {
        leaks.push(format!("mount {}", mount.display()));
    }
    for process in processes_tied_to(dir.path(), &dir.cgroup_tree()) {
        leaks.push(format!(
            "process {} ({}): {}",
            process.pid, process.why, process.cmdline
        ));
    }
    for port in bridge_ports(&dir.bridge()) {
        leaks.push(format!("interface {port} on bridge {}", dir.bridge()));
    }
    for rule in iptables_rules_of(&dir.network_name()) {
        leaks.push(format!("iptables rule {rule}"));
    }
    for reservation in ip_reservations(&dir.ipam_dir()) {
        leaks.push(format!("IP reservation {reservation}"));
    }
    for parent in cgroup_dirs(&dir.cgroup_tree()) {
        for cgroup in cgroup_descendants(&parent) {
            leaks.push(format!("cgroup {}", cgroup.display()));
        }
    }
    for root in dir.runtime_roots() {
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            leaks.push(format!("OCI runtime state {}", entry.path().display()));
        }
    }
    leaks
}

/// Panics, listing them, if [`find_leaks`] finds anything. Call it after a
/// clean [`Crius::stop`], before the `Crius` is dropped (whose cleanup
/// would hide leaks).
pub fn assert_no_leaks(crius: &Crius) {
    let leaks = find_leaks(crius.dir());
    assert!(
        leaks.is_empty(),
        "crius left behind:\n  {}\n{}",
        leaks.join("\n  "),
        crius.log_tail(40)
    );
}

/// host-local files other than its bookkeeping (`lock`,
/// `last_reserved_ip.*`): one per reserved address.
fn ip_reservations(ipam_dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![ipam_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            } else if name != "lock" && !name.starts_with("last_reserved_ip") {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}
