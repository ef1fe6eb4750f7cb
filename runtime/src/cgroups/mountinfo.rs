//! The cgroup hierarchies in the mount table: the one reader of
//! `/proc/self/mountinfo` for them.

use std::path::PathBuf;

use crate::error::{IoContext, Result};

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    /// Where it is mounted.
    pub point: PathBuf,
    /// The cgroup v2 (unified) hierarchy rather than a v1 one.
    pub unified: bool,
    /// The super options: a v1 hierarchy's controllers and name
    /// (`cpu`, `cpuacct`, `name=systemd`, …), `rw` and the like.
    pub options: Vec<String>,
}

impl CgroupMount {
    /// Whether this v1 hierarchy holds `controller`.
    pub fn has(&self, controller: &str) -> bool {
        !self.unified && self.options.iter().any(|o| o == controller)
    }
}

/// The cgroup mounts of this process's mount table.
pub(crate) fn read() -> Result<Vec<CgroupMount>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context(|| "read /proc/self/mountinfo")?;
    Ok(parse(&text))
}

/// The cgroup mounts in `mountinfo` (the format of /proc/self/mountinfo).
pub(crate) fn parse(mountinfo: &str) -> Vec<CgroupMount> {
    let mut found = Vec::new();
    for line in mountinfo.lines() {
        // "… mount-point options … - fstype source super-options"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let unified = match right.next() {
            Some("cgroup") => false,
            Some("cgroup2") => true,
            _ => continue,
        };
        let options = right
            .nth(1)
            .unwrap_or_default()
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect();
        found.push(CgroupMount {
            point: PathBuf::from(point),
            unified,
            options,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v1_and_v2_hierarchies_and_nothing_else() {
        let text = "\
25 1 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
garbage line without a separator
";
        let mounts = parse(text);
        let points: Vec<_> = mounts
            .iter()
            .map(|m| m.point.display().to_string())
            .collect();
        assert_eq!(
            points,
            [
                "/sys/fs/cgroup/unified",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/cpuset"
            ]
        );
        assert!(mounts[0].unified && !mounts[0].has("cpu"));
        assert!(mounts[2].has("cpu") && mounts[2].has("cpuacct") && !mounts[2].has("memory"));
        assert!(mounts[3].has("cpuset"));
        assert!(mounts[1].has("name=systemd"));
    }
}
