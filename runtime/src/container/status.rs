//! ContainerStatus and ListContainers over the container part's table.

use super::{Container, ContainerFilter, Containers};
use crate::error::Result;

impl Containers {
    /// A container by id or unique id prefix.
    pub(crate) fn get(&self, id: &str) -> Result<Container> {
        Ok(self.objects.find(id)?.get())
    }

    /// The containers matching `filter`, oldest first.
    pub(crate) fn list(&self, filter: &ContainerFilter) -> Vec<Container> {
        let mut out: Vec<Container> = self
            .objects
            .all()
            .iter()
            .map(|e| e.get())
            .filter(|c| filter.matches(c))
            .collect();
        out.sort_by_key(|c| c.created_at);
        out
    }

    /// The ids of a pod's containers.
    pub(crate) fn of_pod(&self, sandbox_id: &str) -> Vec<String> {
        self.objects
            .all()
            .into_iter()
            .filter(|e| e.lock().sandbox_id == sandbox_id)
            .map(|e| e.id().to_string())
            .collect()
    }

    /// A pod's containers, oldest first.
    pub(crate) fn list_of_pod(&self, sandbox_id: &str) -> Vec<Container> {
        let mut out: Vec<Container> = self
            .objects
            .all()
            .iter()
            .map(|e| e.get())
            .filter(|c| c.sandbox_id == sandbox_id)
            .collect();
        out.sort_by_key(|c| c.created_at);
        out
    }
}
