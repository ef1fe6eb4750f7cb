//! The finer figures cAdvisor reports for a cgroup and kubelet's CRI-only
//! stats path expects from ListPodSandboxMetrics: CFS throttling, CPU
//! user/system split, memory breakdown and failures, threads, file
//! descriptors and sockets, the cgroup's configured limits, block I/O,
//! pressure stall information (cgroup v2's `*.pressure` files).
//!
//! Every figure is optional: a missing or unreadable file leaves it
//! `None` (a controller not mounted, a cgroup gone, no swap accounting).
//! Semantics follow cAdvisor's libcontainer handler.

use std::collections::BTreeMap;
use std::path::Path;

use super::stats::{Hierarchies, read_flat_keyed, read_u64};

/// Clock ticks per second of cpuacct.stat (USER_HZ, 100 on Linux).
const USER_HZ: u64 = 100;

/// v1 limits at or above this mean "no limit".
const V1_UNLIMITED: u64 = 1 << 62;

/// The finer figures of one cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// CFS enforcement periods elapsed.
    pub cfs_periods: Option<u64>,
    /// CFS periods in which the cgroup was throttled.
    pub cfs_throttled_periods: Option<u64>,
    /// Time throttled, nanoseconds.
    pub cfs_throttled_ns: Option<u64>,
    /// CPU time in user mode, nanoseconds.
    pub cpu_user_ns: Option<u64>,
    /// CPU time in kernel mode, nanoseconds.
    pub cpu_system_ns: Option<u64>,
    /// Page cache bytes.
    pub memory_cache: Option<u64>,
    /// Memory-mapped file bytes.
    pub memory_mapped_file: Option<u64>,
    /// Swap used, bytes.
    pub memory_swap: Option<u64>,
    /// Kernel memory charged, bytes.
    pub memory_kernel: Option<u64>,
    /// Times the memory limit was hit.
    pub memory_failcnt: Option<u64>,
    /// Highest memory usage recorded, bytes.
    pub memory_max_usage: Option<u64>,
    /// Page faults of the cgroup itself (`scope="container"`).
    pub pgfault: Option<u64>,
    /// Major page faults of the cgroup itself.
    pub pgmajfault: Option<u64>,
    /// Page faults of the cgroup and its descendants (`scope="hierarchy"`).
    pub pgfault_hierarchy: Option<u64>,
    /// Major page faults of the cgroup and its descendants.
    pub pgmajfault_hierarchy: Option<u64>,
    /// Tasks (threads) in the cgroup.
    pub threads: Option<u64>,
    /// pids.max; 0 when unlimited.
    pub threads_max: Option<u64>,
    /// Open file descriptors of the cgroup's processes.
    pub file_descriptors: Option<u64>,
    /// Of those, sockets.
    pub sockets: Option<u64>,
    /// CFS period, microseconds.
    pub spec_cpu_period: Option<u64>,
    /// CPU shares (v2 weight converted back to shares).
    pub spec_cpu_shares: Option<u64>,
    /// Memory limit, bytes; 0 when unlimited.
    pub spec_memory_limit: Option<u64>,
    /// Memory+swap (v1) or swap (v2) limit, bytes; 0 when unlimited.
    pub spec_memory_swap_limit: Option<u64>,
    /// Swap the cgroup may still use, bytes: v2 `memory.swap.max` less
    /// `memory.swap.current`; `None` when unlimited, and on v1 (whose
    /// memsw limit counts memory and swap together).
    pub swap_available: Option<u64>,
    /// Block I/O per device.
    pub blkio: Vec<BlkioDevice>,
    /// CPU pressure (`cpu.pressure`; v2 with PSI on).
    pub cpu_pressure: Option<Pressure>,
    /// Memory pressure (`memory.pressure`).
    pub memory_pressure: Option<Pressure>,
    /// I/O pressure (`io.pressure`).
    pub io_pressure: Option<Pressure>,
}

/// The cumulative stall times of one resource, as a `*.pressure` file
/// gives them ("some"/"full" lines' `total=`, microseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// Time at least one task of the cgroup was stalled on the resource
    /// (cAdvisor's "waiting").
    pub some_us: u64,
    /// Time all of its non-idle tasks were stalled at once ("stalled");
    /// `None` where the kernel keeps no such line.
    pub full_us: Option<u64>,
}

/// Block I/O of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioDevice {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read operations.
    pub reads: u64,
    /// Write operations.
    pub writes: u64,
}

impl BlkioDevice {
    /// The device's node name ("/dev/sda") from /sys/dev/block, or
    /// "major:minor" when it has none.
    pub fn name(&self) -> String {
        let id = format!("{}:{}", self.major, self.minor);
        std::fs::read_link(format!("/sys/dev/block/{id}"))
            .ok()
            .and_then(|t| {
                t.file_name()
                    .map(|n| format!("/dev/{}", n.to_string_lossy()))
            })
            .unwrap_or(id)
    }
}

impl Hierarchies {
    /// Reads the finer figures of the cgroup at `path`.
    pub fn detail(&self, path: &str) -> Detail {
        let rel = path.trim_start_matches('/');
        match self.v2_root() {
            Some(root) => detail_v2(&root.join(rel)),
            None => {
                let dir = |ctl: &str| self.v1_root(ctl).map(|r| r.join(rel));
                detail_v1(&dir)
            }
        }
    }
}

fn detail_v1(dir: &dyn Fn(&str) -> Option<std::path::PathBuf>) -> Detail {
    let mut d = Detail::default();
    if let Some(cpu) = dir("cpu") {
        if let Some(s) = read_flat_keyed(&cpu.join("cpu.stat")) {
            d.cfs_periods = s.get("nr_periods").copied();
            d.cfs_throttled_periods = s.get("nr_throttled").copied();
            d.cfs_throttled_ns = s.get("throttled_time").copied();
        }
        d.spec_cpu_period = read_u64(&cpu.join("cpu.cfs_period_us"));
        d.spec_cpu_shares = read_u64(&cpu.join("cpu.shares"));
    }
    if let Some(s) = dir("cpuacct").and_then(|c| read_flat_keyed(&c.join("cpuacct.stat"))) {
        let ns = |t: u64| t.saturating_mul(1_000_000_000 / USER_HZ);
        d.cpu_user_ns = s.get("user").copied().map(ns);
        d.cpu_system_ns = s.get("system").copied().map(ns);
    }
    if let Some(mem) = dir("memory") {
        if let Some(s) = read_flat_keyed(&mem.join("memory.stat")) {
            let get = |k: &str| Some(s.get(k).copied().unwrap_or(0));
            d.memory_cache = get("total_cache");
            d.memory_mapped_file = get("total_mapped_file");
            d.memory_swap = get("total_swap");
            d.pgfault = s.get("pgfault").copied();
            d.pgmajfault = s.get("pgmajfault").copied();
            d.pgfault_hierarchy = s.get("total_pgfault").copied();
            d.pgmajfault_hierarchy = s.get("total_pgmajfault").copied();
        }
        d.memory_kernel = read_u64(&mem.join("memory.kmem.usage_in_bytes"));
        d.memory_failcnt = read_u64(&mem.join("memory.failcnt"));
        d.memory_max_usage = read_u64(&mem.join("memory.max_usage_in_bytes"));
        let limit = |f: &str| read_u64(&mem.join(f)).map(|l| if l >= V1_UNLIMITED { 0 } else { l });
        d.spec_memory_limit = limit("memory.limit_in_bytes");
        d.spec_memory_swap_limit = limit("memory.memsw.limit_in_bytes");
    }
    if let Some(pids) = dir("pids") {
        d.threads = count_lines(&pids.join("tasks"));
        d.threads_max = read_max(&pids.join("pids.max"));
        fds(&pids.join("cgroup.procs"), &mut d);
    }
    if let Some(blkio) = dir("blkio") {
        d.blkio = blkio_v1(
            &std::fs::read_to_string(blkio.join("blkio.throttle.io_service_bytes"))
                .unwrap_or_default(),
            &std::fs::read_to_string(blkio.join("blkio.throttle.io_serviced")).unwrap_or_default(),
        );
    }
    d
}

fn detail_v2(dir: &Path) -> Detail {
    let mut d = Detail::default();
    if let Some(s) = read_flat_keyed(&dir.join("cpu.stat")) {
        let ns = |k: &str| s.get(k).map(|us| us.saturating_mul(1000));
        d.cfs_periods = s.get("nr_periods").copied();
        d.cfs_throttled_periods = s.get("nr_throttled").copied();
        d.cfs_throttled_ns = ns("throttled_usec");
        d.cpu_user_ns = ns("user_usec");
        d.cpu_system_ns = ns("system_usec");
    }
    // cpu.max: "<quota|max> <period>".
    d.spec_cpu_period = std::fs::read_to_string(dir.join("cpu.max"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok());
    // cAdvisor's inverse of the runc shares → weight mapping.
    d.spec_cpu_shares = read_u64(&dir.join("cpu.weight"))
        .filter(|w| *w >= 1)
        .map(|w| 2 + (w - 1) * 262_142 / 9_999);
    if let Some(s) = read_flat_keyed(&dir.join("memory.stat")) {
        let get = |k: &str| Some(s.get(k).copied().unwrap_or(0));
        d.memory_cache = get("file");
        d.memory_mapped_file = get("file_mapped");
        d.memory_kernel = s
            .get("kernel")
            .copied()
            .or_else(|| Some(get("kernel_stack")? + get("slab")? + get("sock")?));
        d.pgfault = s.get("pgfault").copied();
        d.pgmajfault = s.get("pgmajfault").copied();
        d.pgfault_hierarchy = d.pgfault;
        d.pgmajfault_hierarchy = d.pgmajfault;
    }
    d.memory_swap = read_u64(&dir.join("memory.swap.current"));
    d.memory_failcnt =
        read_flat_keyed(&dir.join("memory.events")).and_then(|e| e.get("max").copied());
    d.memory_max_usage = read_u64(&dir.join("memory.peak"));
    d.spec_memory_limit = read_max(&dir.join("memory.max"));
    d.spec_memory_swap_limit = read_max(&dir.join("memory.swap.max"));
    d.swap_available = match (d.spec_memory_swap_limit, d.memory_swap) {
        (Some(limit), Some(used)) if limit > 0 => Some(limit.saturating_sub(used)),
        _ => None,
    };
    d.threads = count_lines(&dir.join("cgroup.threads"));
    d.threads_max = read_max(&dir.join("pids.max"));
    fds(&dir.join("cgroup.procs"), &mut d);
    d.blkio = io_stat_v2(&std::fs::read_to_string(dir.join("io.stat")).unwrap_or_default());
    let pressure = |f: &str| parse_pressure(&std::fs::read_to_string(dir.join(f)).ok()?);
    d.cpu_pressure = pressure("cpu.pressure");
    d.memory_pressure = pressure("memory.pressure");
    d.io_pressure = pressure("io.pressure");
    d
}

/// A `*.pressure` file: "some avg10=… avg60=… avg300=… total=N" and, where
/// the kernel keeps it, the same for "full". `None` without a "some" total
/// (PSI off: the file is absent or reading it fails).
fn parse_pressure(text: &str) -> Option<Pressure> {
    let total = |kind: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(kind)?.strip_prefix(' '))?
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("total="))?
            .parse()
            .ok()
    };
    Some(Pressure {
        some_us: total("some")?,
        full_us: total("full"),
    })
}

/// A limit file holding a number or "max" (0).
fn read_max(path: &Path) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    match s.trim() {
        "max" => Some(0),
        n => n.parse().ok(),
    }
}

/// The lines of a file (tasks, cgroup.threads).
fn count_lines(path: &Path) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    Some(s.lines().filter(|l| !l.trim().is_empty()).count() as u64)
}

/// Counts the open file descriptors and sockets of the processes listed
/// in `procs`; processes that exit meanwhile are skipped.
fn fds(procs: &Path, d: &mut Detail) {
    let Ok(list) = std::fs::read_to_string(procs) else {
        return;
    };
    let (mut fds, mut sockets) = (0u64, 0u64);
    for pid in list.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for e in entries.flatten() {
            fds += 1;
            if std::fs::read_link(e.path())
                .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:"))
            {
                sockets += 1;
            }
        }
    }
    d.file_descriptors = Some(fds);
    d.sockets = Some(sockets);
}

/// blkio.throttle.io_service_bytes and io_serviced: "major:minor Op value"
/// lines (and a "Total" line).
fn blkio_v1(bytes: &str, ops: &str) -> Vec<BlkioDevice> {
    let mut devs: BTreeMap<(u64, u64), BlkioDevice> = BTreeMap::new();
    for (text, is_bytes) in [(bytes, true), (ops, false)] {
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(dev), Some(op), Some(v)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let (Some(id), Ok(v)) = (major_minor(dev), v.parse::<u64>()) else {
                continue;
            };
            let e = devs.entry(id).or_insert_with(|| BlkioDevice {
                major: id.0,
                minor: id.1,
                ..BlkioDevice::default()
            });
            match (op, is_bytes) {
                ("Read", true) => e.read_bytes = v,
                ("Write", true) => e.write_bytes = v,
                ("Read", false) => e.reads = v,
                ("Write", false) => e.writes = v,
                _ => {}
            }
        }
    }
    devs.into_values().collect()
}

/// io.stat: "major:minor rbytes=… wbytes=… rios=… wios=… …" lines.
fn io_stat_v2(text: &str) -> Vec<BlkioDevice> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (major, minor) = major_minor(f.next()?)?;
            let mut d = BlkioDevice {
                major,
                minor,
                ..BlkioDevice::default()
            };
            for kv in f {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let v = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => d.read_bytes = v,
                    "wbytes" => d.write_bytes = v,
                    "rios" => d.reads = v,
                    "wios" => d.writes = v,
                    _ => {}
                }
            }
            Some(d)
        })
        .collect()
}

fn major_minor(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blkio_files() {
        let bytes = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\nTotal 12288\n";
        let ops = "8:0 Read 1\n8:0 Write 2\n8:0 Total 3\nTotal 3\n";
        assert_eq!(
            blkio_v1(bytes, ops),
            vec![BlkioDevice {
                major: 8,
                minor: 0,
                read_bytes: 4096,
                write_bytes: 8192,
                reads: 1,
                writes: 2
            }]
        );
        let v2 = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n";
        assert_eq!(io_stat_v2(v2), blkio_v1(bytes, ops));
        assert!(io_stat_v2("garbage\n").is_empty());
    }

    #[test]
    fn reads_v2_files_and_tolerates_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let w = |f: &str, s: &str| std::fs::write(dir.path().join(f), s).unwrap();
        w(
            "cpu.stat",
            "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 10\nnr_throttled 4\nthrottled_usec 500\n",
        );
        w("cpu.max", "max 100000\n");
        w("cpu.weight", "100\n");
        w("memory.max", "max\n");
        w("pids.max", "4096\n");
        w("cgroup.threads", "1\n2\n3\n");
        let d = detail_v2(dir.path());
        assert_eq!(d.cfs_periods, Some(10));
        assert_eq!(d.cfs_throttled_periods, Some(4));
        assert_eq!(d.cfs_throttled_ns, Some(500_000));
        assert_eq!(
            (d.cpu_user_ns, d.cpu_system_ns),
            (Some(2_000_000), Some(1_000_000))
        );
        assert_eq!(d.spec_cpu_period, Some(100_000));
        // weight 100 is what runc writes for the default 1024 shares.
        assert_eq!(d.spec_cpu_shares, Some(2 + 99 * 262_142 / 9_999));
        assert_eq!(d.spec_memory_limit, Some(0));
        assert_eq!((d.threads, d.threads_max), (Some(3), Some(4096)));
        assert_eq!(d.memory_cache, None);
        assert_eq!(d.file_descriptors, None);
        assert_eq!((d.cpu_pressure, d.swap_available), (None, None));
        assert_eq!(detail_v2(Path::new("/nonexistent")), Detail::default());

        w("memory.swap.max", "1000\n");
        w("memory.swap.current", "300\n");
        w(
            "memory.pressure",
            "some avg10=1.50 avg60=0.20 avg300=0.00 total=2500000\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=1200\n",
        );
        w(
            "cpu.pressure",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n",
        );
        let d = detail_v2(dir.path());
        assert_eq!(d.swap_available, Some(700));
        assert_eq!(
            d.memory_pressure,
            Some(Pressure {
                some_us: 2_500_000,
                full_us: Some(1200)
            })
        );
        assert_eq!(
            d.cpu_pressure,
            Some(Pressure {
                some_us: 7,
                full_us: None
            })
        );
        assert_eq!(d.io_pressure, None);
        w("memory.swap.max", "max\n");
        assert_eq!(detail_v2(dir.path()).swap_available, None);
    }

    #[test]
    fn pressure_files_that_say_nothing_give_nothing() {
        assert_eq!(parse_pressure(""), None);
        assert_eq!(parse_pressure("full avg10=0.00 total=5\n"), None);
        assert_eq!(parse_pressure("some avg10=0.00 total=x\n"), None);
        assert_eq!(parse_pressure("something total=5\n"), None);
    }
}
