//! PodSandboxStatus and ListPodSandbox over the pod part's table.

use std::sync::Arc;

use super::{Pods, Sandbox, SandboxFilter};
use crate::error::{Error, Result};
use crate::state::Entry;

impl Pods {
    /// A pod's entry by id or unique id prefix, for an operation that
    /// locks it.
    pub(crate) fn find(&self, id: &str) -> Result<Arc<Entry<Sandbox>>> {
        self.objects.find(id)
    }

    /// A pod's entry, or `None` when there is no such pod (Stop and Remove
    /// of a gone pod succeed).
    pub(crate) fn find_if_any(&self, id: &str) -> Result<Option<Arc<Entry<Sandbox>>>> {
        match self.objects.find(id) {
            Err(Error::NotFound { .. }) => Ok(None),
            r => r.map(Some),
        }
    }

    /// A pod by id or unique id prefix.
    pub(crate) fn get(&self, id: &str) -> Result<Sandbox> {
        Ok(self.objects.find(id)?.get())
    }

    /// The pods matching `filter`, oldest first.
    pub(crate) fn list(&self, filter: &SandboxFilter) -> Vec<Sandbox> {
        let mut out: Vec<Sandbox> = self
            .objects
            .all()
            .iter()
            .map(|e| e.get())
            .filter(|sb| filter.matches(sb))
            .collect();
        out.sort_by_key(|sb| sb.created_at);
        out
    }
}
