//! ListPodSandbox: the pods matching a filter.

use crius_runtime::Runtime;
use crius_runtime::sandbox::SandboxFilter;
use k8s_cri::v1::{ListPodSandboxRequest, ListPodSandboxResponse};
use tonic::Status;

use crate::convert;

/// Handles ListPodSandbox.
pub fn handle(rt: &Runtime, req: ListPodSandboxRequest) -> Result<ListPodSandboxResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let filter = SandboxFilter {
        id: Some(f.id).filter(|id| !id.is_empty()),
        state: f
            .state
            .map(|s| convert::sandbox_state_from_cri(s.state))
            .transpose()?,
        labels: f.label_selector.into_iter().collect(),
    };
    Ok(ListPodSandboxResponse {
        items: rt
            .list_pod_sandboxes(&filter)
            .iter()
            .map(convert::sandbox_item)
            .collect(),
    })
}
