//! Cgroups: the one home of what crius knows about them. Finding the
//! hierarchies (`mountinfo`), the paths of pods and containers, making,
//! filling and removing a pod's cgroup, and reading a cgroup's figures
//! ([`stats`], [`detail`]) are behind [`CgroupDriver`], so that pods,
//! containers and stats never touch cgroupfs themselves. [`Cgroupfs`]
//! (v1, hybrid and v2 hosts) writes the cgroup tree itself; [`Systemd`]
//! (where systemd is PID 1) has systemd make it, over D-Bus.

mod cgroupfs;
pub mod detail;
mod mountinfo;
pub mod stats;
mod systemd;

use std::path::PathBuf;

pub use cgroupfs::Cgroupfs;
pub use detail::Detail;
pub use stats::{Memory, Sample};
pub use systemd::{DEFAULT_PARENT as SYSTEMD_DEFAULT_PARENT, Systemd, booted as systemd_booted};

use crate::config::CgroupDriverChoice;
use crate::error::Result;

/// The driver `choice` names for this host; `auto` is systemd where systemd
/// is PID 1 on cgroup v2 (kubelet's own default there), else cgroupfs.
pub fn driver(choice: CgroupDriverChoice) -> Result<std::sync::Arc<dyn CgroupDriver>> {
    let systemd = match choice {
        CgroupDriverChoice::Auto => systemd::booted() && cgroupfs::is_unified(),
        CgroupDriverChoice::Systemd => true,
        CgroupDriverChoice::Cgroupfs => false,
    };
    Ok(if systemd {
        std::sync::Arc::new(Systemd::detect()?)
    } else {
        std::sync::Arc::new(Cgroupfs::detect())
    })
}

/// How crius places pods and containers in cgroups and reads them back.
/// Paths are what the OCI runtime's `cgroupsPath` takes for the driver.
pub trait CgroupDriver: Send + Sync + std::fmt::Debug {
    /// The driver's name, as kubelet's `cgroupDriver` names it.
    fn name(&self) -> &'static str;

    /// The cgroup parent of pods that name none, when the configuration
    /// names none either.
    fn default_parent(&self) -> &'static str;

    /// Whether `parent` (a pod's `linux.cgroup_parent`; empty means the
    /// configured default) is one this driver can make a pod's cgroup
    /// below; the reason if not.
    fn check_parent(&self, parent: &str) -> Result<(), &'static str>;

    /// The cgroup of pod `pod_id` below `parent`.
    fn pod_cgroup(&self, parent: &str, pod_id: &str) -> String;

    /// The cgroup of container `container_id` in a pod whose containers
    /// go below `pod_cgroup`.
    fn container_cgroup(&self, pod_cgroup: &str, container_id: &str) -> String;

    /// `path` as the cgroup of pod `pod_id`, if it can only be that: the
    /// one kind of path whose tree [`CgroupDriver::remove_pod_cgroup`]
    /// takes away. Anything else in a record is damage.
    fn owned_pod_cgroup(&self, path: &str, pod_id: &str) -> Result<String>;

    /// The cgroups of pod `pod_id` found by its id alone (its record of
    /// them lost); only paths [`CgroupDriver::owned_pod_cgroup`] accepts.
    fn find_pod_cgroups(&self, pod_id: &str) -> Result<Vec<String>>;

    /// Puts the infra process `pid` of pod `pod_id` in a cgroup of its own
    /// in the pod's cgroup `pod_cgroup`, making what is needed.
    fn place_infra(&self, pod_cgroup: &str, pod_id: &str, pid: i32) -> Result<()>;

    /// Whether any process is left in cgroup `path` or below it.
    fn has_processes(&self, path: &str) -> Result<bool>;

    /// Removes the cgroup of pod `pod_id` at `path` and everything below
    /// it; refuses a path [`CgroupDriver::owned_pod_cgroup`] does not
    /// accept. One that is not there is fine.
    fn remove_pod_cgroup(&self, path: &str, pod_id: &str) -> Result<()>;

    /// Whether the controllers live in the unified (v2) hierarchy, where
    /// containers get a cgroup namespace and `unified` resources apply.
    fn unified(&self) -> bool;

    /// Whether the OCI runtime must manage containers' cgroups through
    /// systemd (`--systemd-cgroup`), `cgroupsPath` being `slice:prefix:name`.
    fn systemd(&self) -> bool {
        false
    }

    /// The file counting the OOM kills of cgroup `path`, if there is one.
    fn oom_file(&self, path: &str) -> Option<PathBuf>;

    /// CPU, memory and process figures of cgroup `path` now.
    fn read(&self, path: &str) -> Sample;

    /// The finer figures of cgroup `path` now.
    fn detail(&self, path: &str) -> Detail;

    /// Makes the hugetlb limits of container cgroup `path` those of
    /// `limits` (page size as CRI names it, `2MB`, and bytes) where they
    /// differ: `runc update` leaves them as they were. Sizes must have
    /// passed [`crate::validate::resources`].
    fn set_hugetlb(&self, path: &str, limits: &[(String, u64)]) -> Result<()>;
}
