//! Image removal and garbage collection at the runtime level, where the
//! image store meets the containers: a layer a container still uses stays
//! until the container is removed, even when its image is gone.

use std::collections::HashSet;

use crate::Runtime;
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
        self.images.collect_garbage(|| self.layers_in_use()).await
    }

    /// Collection whose failure only warrants a warning (after
    /// RemoveImage and RemoveContainer, which are done either way, and at
    /// start-up); the next collection retries.
    pub(crate) async fn collect_image_garbage_or_warn(&self) {
        if let Err(e) = self.collect_image_garbage().await {
            tracing::warn!(error = %e, "image garbage collection failed");
        }
    }

    /// The chain ids of the layers containers use. A container recorded
    /// before containers kept their layers uses its image's, if the image
    /// is still there (it cannot have been removed before RemoveImage
    /// existed).
    fn layers_in_use(&self) -> HashSet<String> {
        let mut in_use = HashSet::new();
        for entry in self.containers.all() {
            let c = entry.get();
            if c.image_layers.is_empty() {
                if let Ok(Some(image)) = self.images.get(&c.image_id) {
                    in_use.extend(image.layers);
                }
            } else {
                in_use.extend(c.image_layers);
            }
        }
        in_use
    }
}
