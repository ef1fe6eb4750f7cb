//! RemoveImage and image garbage collection at the node level, where the
//! image store meets the containers: a layer a container still uses stays
//! until the container is removed, even when its image is gone.

use super::Runtime;
use crate::error::Result;
use crate::image::Collected;

impl Runtime {
    /// RemoveImage: removes the image `reference_or_id` names (id, tag or
    /// digest), every tag and digest of it, then the layers and blobs
    /// nothing uses any more: out of sight before this returns, deleted
    /// in the background (no call waits for a large image's files). Removing an image that is not there is not
    /// an error (the CRI asks for idempotence). Once the record is gone the
    /// call succeeds: a failed collection is logged and retried by the
    /// next one (a retried RemoveImage would find nothing to remove).
    pub async fn remove_image(&self, reference_or_id: &str) -> Result<()> {
        if self.images.remove(reference_or_id).await?.is_some() {
            self.collect_image_garbage_or_warn().await;
        }
        Ok(())
    }

    /// Deletes the layers and blobs that no image and no container uses
    /// (nor any pull or container creation under way).
    pub async fn collect_image_garbage(&self) -> Result<Collected> {
        self.images
            .collect_garbage(|| self.containers.layers_in_use())
            .await
    }

    /// Collection whose failure only warrants a warning (after
    /// RemoveImage and RemoveContainer, which are done either way, and at
    /// start-up); the next collection retries.
    pub(crate) async fn collect_image_garbage_or_warn(&self) {
        if let Err(e) = self.collect_image_garbage().await {
            tracing::warn!(error = %e, "image garbage collection failed");
        }
    }
}
