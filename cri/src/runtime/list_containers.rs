//! ListContainers: the containers matching a filter.

use crius_runtime::Runtime;
use crius_runtime::container::ContainerFilter;
use k8s_cri::v1::{ListContainersRequest, ListContainersResponse};
use tonic::Status;

use crate::convert;

/// Handles ListContainers.
pub fn handle(rt: &Runtime, req: ListContainersRequest) -> Result<ListContainersResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let filter = ContainerFilter {
        id: Some(f.id).filter(|id| !id.is_empty()),
        state: f
            .state
            .map(|s| convert::container_state_from_cri(s.state))
            .transpose()?,
        sandbox_id: Some(f.pod_sandbox_id).filter(|id| !id.is_empty()),
        labels: f.label_selector.into_iter().collect(),
    };
    Ok(ListContainersResponse {
        containers: rt
            .list_containers(&filter)
            .iter()
            .map(convert::container_item)
            .collect(),
    })
}
