//! PodSandboxStats: a pod's CPU, memory, process and network figures and
//! those of its containers. Also the conversion ListPodSandboxStats uses.

use std::sync::Arc;

use crius_runtime::Runtime;
use crius_runtime::stats::PodStats;
use k8s_cri::v1::{self as cri, PodSandboxStatsRequest, PodSandboxStatsResponse};
use tonic::Status;

use super::container_stats::{container_stats, cpu, memory};
use crate::convert;
use crate::error::to_status;

/// The interface kubelet takes for the pod's default network.
const DEFAULT_INTERFACE: &str = "eth0";

/// Handles PodSandboxStats.
pub async fn handle(
    rt: &Arc<Runtime>,
    req: PodSandboxStatsRequest,
) -> Result<PodSandboxStatsResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(Status::invalid_argument("pod_sandbox_id is empty"));
    }
    let s = rt.pod_stats(&req.pod_sandbox_id).await.map_err(to_status)?;
    Ok(PodSandboxStatsResponse {
        stats: Some(pod_stats(&s)),
    })
}

fn value(v: u64) -> cri::UInt64Value {
    cri::UInt64Value { value: v }
}

/// A pod's figures as CRI reports them.
pub(crate) fn pod_stats(s: &PodStats) -> cri::PodSandboxStats {
    let sb = &s.sandbox;
    let interfaces: Vec<cri::NetworkInterfaceUsage> = s
        .interfaces
        .iter()
        .map(|i| cri::NetworkInterfaceUsage {
            name: i.name.clone(),
            rx_bytes: Some(value(i.rx_bytes)),
            rx_errors: Some(value(i.rx_errors)),
            tx_bytes: Some(value(i.tx_bytes)),
            tx_errors: Some(value(i.tx_errors)),
        })
        .collect();
    let network = (!interfaces.is_empty()).then(|| cri::NetworkUsage {
        timestamp: s.usage.timestamp,
        default_interface: interfaces
            .iter()
            .find(|i| i.name == DEFAULT_INTERFACE)
            .or(interfaces.first())
            .cloned(),
        interfaces,
    });
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: sb.id.clone(),
            metadata: Some(convert::pod_metadata(&sb.config)),
            labels: sb.config.labels.clone().into_iter().collect(),
            annotations: sb.config.annotations.clone().into_iter().collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: cpu(&s.usage),
            memory: memory(&s.usage),
            network,
            process: s.usage.processes.map(|n| cri::ProcessUsage {
                timestamp: s.usage.timestamp,
                process_count: Some(value(n)),
            }),
            containers: s.containers.iter().map(container_stats).collect(),
        }),
        windows: None,
    }
}
