//! The shape of the node the tests run on, read the way crius reads it:
//! which cgroup hierarchy holds the controllers and whether AppArmor is
//! on. The same tests run on a cgroup v1 hybrid host without AppArmor and
//! in the guest lane's node (`e2e/guest/`: systemd, pure cgroup v2,
//! AppArmor); they ask here which files and which outcome are right for
//! the node they are on, and assert that.

use std::path::{Path, PathBuf};

/// Whether `/sys/fs/cgroup` is the cgroup v2 unified hierarchy (a v2-only
/// node), decided as crius's cgroupfs driver decides it: by the file
/// system's magic number.
pub fn cgroup_v2() -> bool {
    nix::sys::statfs::statfs(Path::new("/sys/fs/cgroup"))
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The directory of cgroup `cgroup` (`/crius-e2e-…/pod/ctr`): in the v1
/// hierarchy of `v1_controller` (`/sys/fs/cgroup/memory/…`) or, on a v2
/// node, in the unified one (`/sys/fs/cgroup/…`).
pub fn cgroup_dir(v1_controller: &str, cgroup: &str) -> PathBuf {
    let mut path = PathBuf::from("/sys/fs/cgroup");
    if !cgroup_v2() {
        path.push(v1_controller);
    }
    path.join(cgroup.trim_start_matches('/'))
}

/// Where cgroup `cgroup` keeps `file` (see [`cgroup_dir`]). The file
/// names differ between the two hierarchies (`memory.limit_in_bytes` and
/// `memory.max`), so the caller names the one of this node's.
pub fn cgroup_file(v1_controller: &str, cgroup: &str, file: &str) -> PathBuf {
    cgroup_dir(v1_controller, cgroup).join(file)
}

/// Whether systemd is PID 1 and runs the system manager, as crius checks
/// it to choose the cgroup driver (`sd_booted()`).
pub fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Whether the kernel has AppArmor enabled, as crius checks it before
/// choosing a profile.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mount table agrees: cgroup2 mounted on /sys/fs/cgroup itself.
    #[test]
    fn the_hierarchy_is_the_one_mounted() {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let fstype = mounts
            .lines()
            .filter_map(|l| {
                let fields: Vec<&str> = l.split(' ').collect();
                (fields.get(1) == Some(&"/sys/fs/cgroup")).then(|| fields[2].to_string())
            })
            .next_back()
            .expect("nothing mounted on /sys/fs/cgroup");
        assert_eq!(cgroup_v2(), fstype == "cgroup2", "{fstype}");
    }

    /// The file named for this process's own cgroup lists this process.
    #[test]
    fn a_cgroup_file_is_the_one_of_that_cgroup() {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        // v2: "0::/path"; v1: "N:pids:/path".
        let prefix = if cgroup_v2() { "0::" } else { ":pids:" };
        let cgroup = own
            .lines()
            .find_map(|l| Some(&l[l.find(prefix)? + prefix.len()..]))
            .unwrap_or_else(|| panic!("no {prefix} line in {own}"));
        let procs = std::fs::read_to_string(cgroup_file("pids", cgroup, "cgroup.procs")).unwrap();
        let me = std::process::id().to_string();
        assert!(procs.lines().any(|p| p == me), "{me} not in {procs}");
    }
}
