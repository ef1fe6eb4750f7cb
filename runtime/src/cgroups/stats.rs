//! Reads a cgroup's CPU, memory and process figures from the kernel's
//! files, for cgroup v1 (one hierarchy per controller) and v2 (the unified
//! hierarchy).
//!
//! A small reader of our own rather than a crate: cgroups-rs's
//! `Cgroup::load(…, "/")` silently reads zeros on hybrid hosts (v1
//! controllers, v2 mounted at /sys/fs/cgroup/unified without any), and
//! youki's libcgroups brings its own oci-spec, procfs and systemd client
//! for what is here a dozen files. The figures and their meaning follow
//! containerd and cAdvisor (working set = usage − inactive file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// v1 memory limits at or above this mean "no limit" (the kernel reports
/// the largest page-aligned i64).
const V1_UNLIMITED: u64 = 1 << 62;

/// Where the cgroup controllers this module reads are mounted.
#[derive(Debug, Clone, Default)]
pub struct Hierarchies {
    /// cgroup v1: controller ("cpuacct", "memory", "pids") → mount point.
    v1: BTreeMap<String, PathBuf>,
    /// cgroup v2: the unified mount point, when it holds the controllers
    /// (a v2-only host). A hybrid host's unified hierarchy has none.
    v2: Option<PathBuf>,
}

impl Hierarchies {
    /// Finds the hierarchies from the mount table. On a host with v1
    /// controllers mounted, v1 is used, whatever else is mounted.
    pub fn detect() -> Hierarchies {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|s| Hierarchies::parse(&s, controllers_of_v2))
            .unwrap_or_default()
    }

    /// Parses /proc/self/mountinfo; `v2_controllers` lists the controllers
    /// a cgroup2 mount point offers.
    fn parse(mountinfo: &str, v2_controllers: impl Fn(&Path) -> Vec<String>) -> Hierarchies {
        let mut h = Hierarchies::default();
        let mut unified = None;
        for mount in super::mountinfo::parse(mountinfo) {
            if mount.unified {
                unified = Some(mount.point);
                continue;
            }
            for controller in ["cpu", "cpuacct", "memory", "pids", "blkio", "hugetlb"] {
                if mount.has(controller) {
                    h.v1.insert(controller.to_string(), mount.point.clone());
                }
            }
        }
        if h.v1.is_empty() {
            h.v2 = unified.filter(|p| !v2_controllers(p).is_empty());
        }
        h
    }

    /// The unified mount point when the controllers live there.
    pub(super) fn v2_root(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// The v1 mount point of `controller`, if mounted.
    pub(super) fn v1_root(&self, controller: &str) -> Option<&Path> {
        self.v1.get(controller).map(PathBuf::as_path)
    }

    /// Whether the host's controllers live in the unified hierarchy.
    pub fn is_v2(&self) -> bool {
        self.v2.is_some()
    }

    /// Reads what the kernel reports for the cgroup at `path` (cgroupfs
    /// path, e.g. `/crius/<pod>/<container>`). Figures whose files are
    /// missing (no such cgroup, controller not mounted) are `None`.
    pub fn read(&self, path: &str) -> Sample {
        let rel = path.trim_start_matches('/');
        match &self.v2 {
            Some(root) => read_v2(&root.join(rel)),
            None => self.read_v1(rel),
        }
    }

    fn read_v1(&self, rel: &str) -> Sample {
        let dir = |ctl: &str| self.v1.get(ctl).map(|root| root.join(rel));
        let cpu_usage_ns = dir("cpuacct").and_then(|d| read_u64(&d.join("cpuacct.usage")));
        let memory = dir("memory").and_then(|d| {
            let usage = read_u64(&d.join("memory.usage_in_bytes"))?;
            let stat = read_flat_keyed(&d.join("memory.stat"))?;
            let limit = read_u64(&d.join("memory.limit_in_bytes")).filter(|l| *l < V1_UNLIMITED);
            let get = |k: &str| stat.get(k).copied().unwrap_or(0);
            Some(Memory {
                usage_bytes: usage,
                working_set_bytes: usage.saturating_sub(get("total_inactive_file")),
                rss_bytes: get("total_rss"),
                page_faults: get("total_pgfault"),
                major_page_faults: get("total_pgmajfault"),
                limit_bytes: limit,
            })
        });
        let pids = dir("pids").and_then(|d| read_u64(&d.join("pids.current")));
        Sample {
            cpu_usage_ns,
            memory,
            pids,
        }
    }
}

impl Hierarchies {
    /// Writes the hugetlb limits of the cgroup at `path` that differ from
    /// `limits` (v2 `hugetlb.<size>.max`, v1 `hugetlb.<size>.limit_in_bytes`).
    pub(super) fn set_hugetlb(
        &self,
        path: &str,
        limits: &[(String, u64)],
    ) -> crate::error::Result<()> {
        if limits.is_empty() {
            return Ok(());
        }
        let rel = path.trim_start_matches('/');
        let (dir, suffix) = match (&self.v2, self.v1_root("hugetlb")) {
            (Some(root), _) => (root.join(rel), "max"),
            (None, Some(root)) => (root.join(rel), "limit_in_bytes"),
            (None, None) => {
                return Err(crate::error::Error::FailedPrecondition(
                    "hugepage limits given, but no hugetlb cgroup controller is mounted".into(),
                ));
            }
        };
        for (size, limit) in limits {
            let file = dir.join(format!("hugetlb.{size}.{suffix}"));
            if read_u64(&file) == Some(*limit) {
                continue;
            }
            std::fs::write(&file, limit.to_string()).map_err(|e| {
                crate::error::Error::FailedPrecondition(format!(
                    "hugepage limit {size} = {limit}: write {}: {e}",
                    file.display()
                ))
            })?;
        }
        Ok(())
    }
}

/// The figures of one cgroup at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// CPU time used by the cgroup's tasks, nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    /// Memory use.
    pub memory: Option<Memory>,
    /// Processes (tasks) in the cgroup.
    pub pids: Option<u64>,
}

/// A cgroup's memory figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// All memory charged (v1 memory.usage_in_bytes, v2 memory.current).
    pub usage_bytes: u64,
    /// Usage less inactive file pages: what kubelet evicts on.
    pub working_set_bytes: u64,
    /// Anonymous memory (v1 total_rss, v2 anon).
    pub rss_bytes: u64,
    /// Page faults.
    pub page_faults: u64,
    /// Major page faults.
    pub major_page_faults: u64,
    /// The memory limit; `None` when unlimited.
    pub limit_bytes: Option<u64>,
}

impl Memory {
    /// Memory left before the limit: limit − working set (`None` when
    /// unlimited), as cAdvisor reports it.
    pub fn available_bytes(&self) -> Option<u64> {
        self.limit_bytes
            .map(|l| l.saturating_sub(self.working_set_bytes))
    }
}

fn read_v2(dir: &Path) -> Sample {
    let cpu_usage_ns = read_flat_keyed(&dir.join("cpu.stat"))
        .and_then(|s| s.get("usage_usec").copied())
        .map(|us| us.saturating_mul(1000));
    let memory = (|| {
        let usage = read_u64(&dir.join("memory.current"))?;
        let stat = read_flat_keyed(&dir.join("memory.stat"))?;
        let get = |k: &str| stat.get(k).copied().unwrap_or(0);
        Some(Memory {
            usage_bytes: usage,
            working_set_bytes: usage.saturating_sub(get("inactive_file")),
            rss_bytes: get("anon"),
            page_faults: get("pgfault"),
            major_page_faults: get("pgmajfault"),
            // "max" does not parse: unlimited.
            limit_bytes: read_u64(&dir.join("memory.max")),
        })
    })();
    let pids = read_u64(&dir.join("pids.current"));
    Sample {
        cpu_usage_ns,
        memory,
        pids,
    }
}

/// The controllers a cgroup2 mount offers (its cgroup.controllers).
fn controllers_of_v2(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A file holding one number.
pub(super) fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A file of "key value" lines (memory.stat, cpu.stat).
pub(super) fn read_flat_keyed(path: &Path) -> Option<BTreeMap<String, u64>> {
    Some(parse_flat_keyed(&std::fs::read_to_string(path).ok()?))
}

fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
29 25 0:26 / /sys/fs/cgroup/cpuacct rw,nosuid - cgroup cgroup rw,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
32 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn hybrid_hosts_read_v1() {
        let h = Hierarchies::parse(HYBRID, |_| vec!["memory".into()]);
        assert!(!h.is_v2());
        assert_eq!(h.v1["memory"], Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(h.v1["pids"], Path::new("/sys/fs/cgroup/pids"));
        assert!(h.v1.contains_key("cpuacct"));
    }

    #[test]
    fn unified_hosts_read_v2() {
        let info = "26 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let h = Hierarchies::parse(info, |_| vec!["cpu".into(), "memory".into()]);
        assert_eq!(h.v2.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        // A unified hierarchy without controllers reads nothing.
        let h = Hierarchies::parse(info, |_| vec![]);
        assert!(!h.is_v2());
    }

    #[test]
    fn v1_and_v2_files_give_the_same_figures() {
        let dir = tempfile::tempdir().unwrap();
        // v2
        let v2 = dir.path().join("v2/pod/c");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        std::fs::write(v2.join("memory.current"), "10000\n").unwrap();
        std::fs::write(
            v2.join("memory.stat"),
            "anon 4000\ninactive_file 3000\npgfault 7\npgmajfault 2\n",
        )
        .unwrap();
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        std::fs::write(v2.join("pids.current"), "3\n").unwrap();
        let h = Hierarchies {
            v1: BTreeMap::new(),
            v2: Some(dir.path().join("v2")),
        };
        let s2 = h.read("/pod/c");
        assert_eq!(s2.cpu_usage_ns, Some(1_500_000));
        assert_eq!(s2.pids, Some(3));
        let m = s2.memory.clone().unwrap();
        assert_eq!(
            (m.usage_bytes, m.working_set_bytes, m.rss_bytes),
            (10000, 7000, 4000)
        );
        assert_eq!((m.page_faults, m.major_page_faults), (7, 2));
        assert_eq!(m.available_bytes(), None);

        // v1
        let mut v1 = BTreeMap::new();
        for ctl in ["cpuacct", "memory", "pids"] {
            let d = dir.path().join(ctl).join("pod/c");
            std::fs::create_dir_all(&d).unwrap();
            v1.insert(ctl.to_string(), dir.path().join(ctl));
        }
        let d = |ctl: &str| dir.path().join(ctl).join("pod/c");
        std::fs::write(d("cpuacct").join("cpuacct.usage"), "1500000\n").unwrap();
        std::fs::write(d("memory").join("memory.usage_in_bytes"), "10000\n").unwrap();
        std::fs::write(
            d("memory").join("memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        std::fs::write(
            d("memory").join("memory.stat"),
            "rss 1\ntotal_rss 4000\ntotal_inactive_file 3000\ntotal_pgfault 7\ntotal_pgmajfault 2\n",
        )
        .unwrap();
        std::fs::write(d("pids").join("pids.current"), "3\n").unwrap();
        let h = Hierarchies { v1, v2: None };
        assert_eq!(h.read("/pod/c"), s2);

        // A limit makes "available" known.
        std::fs::write(d("memory").join("memory.limit_in_bytes"), "20000\n").unwrap();
        assert_eq!(
            h.read("/pod/c").memory.unwrap().available_bytes(),
            Some(13000)
        );
    }

    #[test]
    fn a_missing_cgroup_reads_nothing() {
        let h = Hierarchies {
            v1: BTreeMap::new(),
            v2: Some(PathBuf::from("/nonexistent")),
        };
        assert_eq!(h.read("/x"), Sample::default());
    }
}
