//! ListPodSandboxStats: the figures of the pods matching a filter.

use std::sync::Arc;

use crius_runtime::Runtime;
use crius_runtime::sandbox::SandboxFilter;
use k8s_cri::v1::{ListPodSandboxStatsRequest, ListPodSandboxStatsResponse};
use tonic::Status;

use super::pod_sandbox_stats::pod_stats;
use crate::error::to_status;

/// Handles ListPodSandboxStats.
pub async fn handle(
    rt: &Arc<Runtime>,
    req: ListPodSandboxStatsRequest,
) -> Result<ListPodSandboxStatsResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let filter = SandboxFilter {
        id: Some(f.id).filter(|id| !id.is_empty()),
        state: None,
        labels: f.label_selector.into_iter().collect(),
    };
    let all = rt.list_pod_stats(filter).await.map_err(to_status)?;
    Ok(ListPodSandboxStatsResponse {
        stats: all.iter().map(pod_stats).collect(),
    })
}
