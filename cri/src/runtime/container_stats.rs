//! ContainerStats: one container's CPU, memory, swap and writable-layer
//! figures.
//! Also the conversion of container figures that the other stats RPCs use.

use std::sync::Arc;

use crius_runtime::Runtime;
use crius_runtime::stats::{self, Usage};
use k8s_cri::v1::{self as cri, ContainerStatsRequest, ContainerStatsResponse};
use tonic::Status;

use crate::convert;
use crate::error::to_status;

/// Handles ContainerStats.
pub async fn handle(
    rt: &Arc<Runtime>,
    req: ContainerStatsRequest,
) -> Result<ContainerStatsResponse, Status> {
    if req.container_id.is_empty() {
        return Err(Status::invalid_argument("container_id is empty"));
    }
    let s = rt
        .container_stats(&req.container_id)
        .await
        .map_err(to_status)?;
    Ok(ContainerStatsResponse {
        stats: Some(container_stats(&s)),
    })
}

fn value(v: u64) -> cri::UInt64Value {
    cri::UInt64Value { value: v }
}

/// CPU figures as CRI reports them (`None` when the cgroup is gone).
pub(crate) fn cpu(u: &Usage) -> Option<cri::CpuUsage> {
    u.cpu_usage_ns.map(|ns| cri::CpuUsage {
        timestamp: u.timestamp,
        usage_core_nano_seconds: Some(value(ns)),
        usage_nano_cores: u.cpu_nano_cores.map(value),
    })
}

/// Memory figures as CRI reports them.
pub(crate) fn memory(u: &Usage) -> Option<cri::MemoryUsage> {
    u.memory.as_ref().map(|m| cri::MemoryUsage {
        timestamp: u.timestamp,
        working_set_bytes: Some(value(m.working_set_bytes)),
        available_bytes: m.available_bytes().map(value),
        usage_bytes: Some(value(m.usage_bytes)),
        rss_bytes: Some(value(m.rss_bytes)),
        page_faults: Some(value(m.page_faults)),
        major_page_faults: Some(value(m.major_page_faults)),
    })
}

/// Swap figures as CRI reports them: what the cgroup has swapped out and,
/// where its swap is limited, what it may still swap.
pub(crate) fn swap(u: &Usage) -> Option<cri::SwapUsage> {
    u.detail.memory_swap.map(|used| cri::SwapUsage {
        timestamp: u.timestamp,
        swap_usage_bytes: Some(value(used)),
        swap_available_bytes: u.detail.swap_available.map(value),
    })
}

/// A container's figures as CRI reports them.
pub(crate) fn container_stats(s: &stats::ContainerStats) -> cri::ContainerStats {
    let c = &s.container;
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: c.id.clone(),
            metadata: Some(convert::container_metadata(&c.config)),
            labels: c.config.labels.clone().into_iter().collect(),
            annotations: c.config.annotations.clone().into_iter().collect(),
        }),
        cpu: cpu(&s.usage),
        memory: memory(&s.usage),
        writable_layer: s.writable_layer.map(|d| cri::FilesystemUsage {
            timestamp: s.usage.timestamp,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: s.layer_mountpoint.display().to_string(),
            }),
            used_bytes: Some(value(d.bytes)),
            inodes_used: Some(value(d.inodes)),
        }),
        swap: swap(&s.usage),
    }
}
