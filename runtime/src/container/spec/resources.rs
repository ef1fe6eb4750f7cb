//! The cgroup resources of a container, as the OCI spec carries them.

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder,
};

use super::spec_error;
use crate::error::{Error, Result};
use crate::records::container::Resources;

/// The cgroup resources of a container: CPU, memory, hugepages, pids and
/// `unified`. Also what UpdateContainerResources hands the OCI runtime.
/// `unified` is refused on cgroup v1 hosts (`cgroup_v2` false), where the
/// runtime could not apply it.
pub fn linux_resources(r: &Resources, pids_limit: i64, cgroup_v2: bool) -> Result<LinuxResources> {
    let mut cpu = LinuxCpuBuilder::default();
    if r.cpu_shares > 0 {
        cpu = cpu.shares(r.cpu_shares as u64);
    }
    if r.cpu_quota != 0 {
        cpu = cpu.quota(r.cpu_quota);
    }
    if r.cpu_period > 0 {
        cpu = cpu.period(r.cpu_period as u64);
    }
    if !r.cpuset_cpus.is_empty() {
        cpu = cpu.cpus(r.cpuset_cpus.clone());
    }
    if !r.cpuset_mems.is_empty() {
        cpu = cpu.mems(r.cpuset_mems.clone());
    }
    let mut memory = LinuxMemoryBuilder::default();
    if r.memory_limit > 0 {
        memory = memory.limit(r.memory_limit);
    }
    if r.memory_swap_limit > 0 {
        memory = memory.swap(r.memory_swap_limit);
    }
    let mut b = LinuxResourcesBuilder::default()
        .cpu(cpu.build().map_err(spec_error)?)
        .memory(memory.build().map_err(spec_error)?);
    if !r.hugepage_limits.is_empty() {
        let limits = r
            .hugepage_limits
            .iter()
            .map(|(size, limit)| {
                let limit = i64::try_from(*limit).map_err(|_| {
                    Error::InvalidArgument(format!("hugepage limit {limit} is out of range"))
                })?;
                LinuxHugepageLimitBuilder::default()
                    .page_size(size.clone())
                    .limit(limit)
                    .build()
                    .map_err(spec_error)
            })
            .collect::<Result<Vec<_>>>()?;
        b = b.hugepage_limits(limits);
    }
    if pids_limit > 0 {
        b = b.pids(
            LinuxPidsBuilder::default()
                .limit(pids_limit)
                .build()
                .map_err(spec_error)?,
        );
    }
    if !r.unified.is_empty() {
        if !cgroup_v2 {
            return Err(Error::InvalidArgument(format!(
                "unified (cgroup v2) resources {:?} given, but this node runs cgroup v1",
                r.unified.keys().collect::<Vec<_>>()
            )));
        }
        b = b.unified(
            r.unified
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    b.build().map_err(spec_error)
}
