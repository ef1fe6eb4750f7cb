//! ListContainerStats: the figures of the containers matching a filter.

use std::sync::Arc;

use crius_runtime::Runtime;
use crius_runtime::container::ContainerFilter;
use k8s_cri::v1::{ListContainerStatsRequest, ListContainerStatsResponse};
use tonic::Status;

use super::container_stats::container_stats;
use crate::error::to_status;

/// Handles ListContainerStats.
pub async fn handle(
    rt: &Arc<Runtime>,
    req: ListContainerStatsRequest,
) -> Result<ListContainerStatsResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let filter = ContainerFilter {
        id: Some(f.id).filter(|id| !id.is_empty()),
        state: None,
        sandbox_id: Some(f.pod_sandbox_id).filter(|id| !id.is_empty()),
        labels: f.label_selector.into_iter().collect(),
    };
    let all = rt.list_container_stats(filter).await.map_err(to_status)?;
    Ok(ListContainerStatsResponse {
        stats: all.iter().map(container_stats).collect(),
    })
}
