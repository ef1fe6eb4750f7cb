//! Resource figures of containers and pods, for the CRI stats RPCs: CPU,
//! memory and processes from their cgroups (read by the cgroup driver,
//! [`crate::cgroups`]), writable-layer
//! use from the container's overlay upper directory, network counters
//! read inside the pod's network namespace.
//!
//! CPU use as nano-cores needs two samples: the previous one of each
//! container and pod is kept (as containerd does), and the first call
//! after a container starts reports none, leaving kubelet to compute it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crius_cni::ifstats::InterfaceStats;

use crate::cgroups::CgroupDriver;
pub use crate::cgroups::Memory;
pub use crate::cgroups::detail::{BlkioDevice, Detail, Pressure};
use crate::records::pod::NamespaceKind;

use crate::fsutil::{self, DiskUsage};
use crate::layout::Dirs;
use crate::records::container::Container;
use crate::records::pod::{Sandbox, SandboxState};
use crate::state::now_nanos;

/// What the kernel reports for one cgroup, with CPU use turned into a rate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// When the figures were read, Unix nanoseconds.
    pub timestamp: i64,
    /// Cumulative CPU time, nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    /// CPU use since the previous sample, in billionths of a core.
    pub cpu_nano_cores: Option<u64>,
    /// Memory figures.
    pub memory: Option<Memory>,
    /// Processes in the cgroup.
    pub processes: Option<u64>,
    /// The finer figures cAdvisor reports.
    pub detail: Detail,
}

/// A container's figures.
#[derive(Debug, Clone)]
pub struct ContainerStats {
    /// The container as recorded when the figures were read.
    pub container: Container,
    /// Its cgroup's figures (all `None` once it has exited).
    pub usage: Usage,
    /// Its writable layer's space and inodes.
    pub writable_layer: Option<DiskUsage>,
    /// The mount point of the filesystem holding writable layers.
    pub layer_mountpoint: PathBuf,
    /// That filesystem's capacity, from statvfs.
    pub layer_fs: Option<FsCapacity>,
}

/// A filesystem's size and inodes (statvfs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsCapacity {
    /// Total bytes.
    pub limit_bytes: u64,
    /// Total inodes.
    pub inodes_total: u64,
    /// Free inodes.
    pub inodes_free: u64,
}

impl FsCapacity {
    /// statvfs of the filesystem holding `path`; `None` when it fails.
    pub fn of(path: &std::path::Path) -> Option<FsCapacity> {
        let s = nix::sys::statvfs::statvfs(path).ok()?;
        Some(FsCapacity {
            limit_bytes: s.blocks().saturating_mul(s.fragment_size()),
            inodes_total: s.files(),
            inodes_free: s.files_free(),
        })
    }
}

/// A pod's figures.
#[derive(Debug, Clone)]
pub struct PodStats {
    /// The pod as recorded when the figures were read.
    pub sandbox: Sandbox,
    /// The pod cgroup's figures (its containers together).
    pub usage: Usage,
    /// Interface counters of the pod's network namespace, loopback left
    /// out; empty for pods on the node's network or no longer ready.
    pub interfaces: Vec<InterfaceStats>,
    /// Its containers' figures.
    pub containers: Vec<ContainerStats>,
}

/// The state the stats code keeps: the cgroup driver that reads the
/// figures and the previous CPU sample of each cgroup.
#[derive(Debug)]
pub(crate) struct StatsState {
    cgroups: Arc<dyn CgroupDriver>,
    dirs: Dirs,
    /// cgroup path → (timestamp, cumulative CPU ns) of the last read.
    previous: Mutex<HashMap<String, (i64, u64)>>,
}

impl StatsState {
    /// Stats read through `cgroups`.
    pub(crate) fn new(cgroups: Arc<dyn CgroupDriver>, dirs: Dirs) -> StatsState {
        StatsState {
            cgroups,
            dirs,
            previous: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the cgroup at `path` and turns CPU time into a rate against
    /// the previous read of the same cgroup.
    fn usage(&self, path: &str) -> Usage {
        let timestamp = now_nanos();
        let sample = self.cgroups.read(path);
        let cpu_nano_cores = sample.cpu_usage_ns.and_then(|now| {
            let mut prev = self.previous.lock().unwrap_or_else(|p| p.into_inner());
            let before = prev.insert(path.to_string(), (timestamp, now));
            let (t0, u0) = before?;
            nano_cores(t0, u0, timestamp, now)
        });
        Usage {
            timestamp,
            cpu_usage_ns: sample.cpu_usage_ns,
            cpu_nano_cores,
            memory: sample.memory,
            processes: sample.pids,
            detail: self.cgroups.detail(path),
        }
    }

    /// The figures of container `c` of pod `sb`.
    pub(crate) fn read_container(&self, sb: &Sandbox, c: Container) -> ContainerStats {
        let usage = self.usage(&container_cgroup(self.cgroups.as_ref(), sb, &c));
        let upper = self.dirs.container_root(&c.id).join("upper");
        let writable_layer = match fsutil::disk_usage(&upper) {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::debug!(container = %c.id, error = %e, "writable layer usage");
                None
            }
        };
        ContainerStats {
            container: c,
            usage,
            writable_layer,
            layer_fs: FsCapacity::of(&self.dirs.root),
            layer_mountpoint: self.dirs.root.clone(),
        }
    }

    /// The figures of pod `sb` and of `containers`, its containers.
    pub(crate) fn read_pod(&self, sb: Sandbox, containers: Vec<Container>) -> PodStats {
        let usage = self.usage(&sb.cgroup_parent);
        let interfaces = match sb.namespace(NamespaceKind::Net) {
            Some(pin) if sb.state == SandboxState::Ready => {
                match crius_cni::ifstats::interface_stats(pin) {
                    Ok(all) => all.into_iter().filter(|i| i.name != "lo").collect(),
                    Err(e) => {
                        tracing::debug!(pod = %sb.id, error = %e, "pod network counters");
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        };
        let containers = containers
            .into_iter()
            .map(|c| self.read_container(&sb, c))
            .collect();
        PodStats {
            sandbox: sb,
            usage,
            interfaces,
            containers,
        }
    }

    /// Drops the CPU samples of pods and containers that are gone: all
    /// but those of `pods`, each with its containers.
    pub(crate) fn forget_gone(&self, pods: &[(Sandbox, Vec<Container>)]) {
        let mut live = HashSet::new();
        for (sb, containers) in pods {
            for c in containers {
                live.insert(container_cgroup(self.cgroups.as_ref(), sb, c));
            }
            live.insert(sb.cgroup_parent.clone());
        }
        self.retain(&live);
    }

    /// Forgets the samples of cgroups not in `live`.
    fn retain(&self, live: &HashSet<String>) {
        let mut prev = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        prev.retain(|k, _| live.contains(k));
    }
}

/// CPU use between two samples, in billionths of a core; `None` when the
/// clock did not move or the counter went back (a new cgroup by the same
/// path).
fn nano_cores(t0: i64, u0: u64, t1: i64, u1: u64) -> Option<u64> {
    let dt = u128::try_from(t1.checked_sub(t0)?)
        .ok()
        .filter(|d| *d > 0)?;
    let du = u128::from(u1.checked_sub(u0)?);
    u64::try_from(du * 1_000_000_000 / dt).ok()
}

/// The cgroup of a container of `sb`.
fn container_cgroup(cgroups: &dyn CgroupDriver, sb: &Sandbox, c: &Container) -> String {
    cgroups.container_cgroup(&sb.cgroup_parent, &c.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_cores_from_two_samples() {
        // One core busy for a second.
        assert_eq!(
            nano_cores(0, 0, 1_000_000_000, 1_000_000_000),
            Some(1_000_000_000)
        );
        // A quarter core over two seconds.
        assert_eq!(
            nano_cores(0, 100, 2_000_000_000, 500_000_100),
            Some(250_000_000)
        );
        assert_eq!(nano_cores(5, 0, 5, 10), None);
        assert_eq!(nano_cores(0, 10, 1, 5), None);
    }
}
