//! RemoveContainer: the container killed if it still runs, its OCI state,
//! rootfs, bundle and writable layer gone, then its record.

use std::time::Duration;

use super::events::ContainerEventKind;
use super::{Containers, name_key, rootfs, staged};
use crate::crash;
use crate::error::{Error, Result};
use crate::fsutil;

impl Containers {
    /// Removes a container, killing it first if it still runs. Removing a
    /// container that is gone is fine. The layers it held are left to the
    /// node's image garbage collection. Whether it removed one.
    pub(crate) async fn remove(&self, id: &str) -> Result<bool> {
        let entry = match self.objects.find(id) {
            Err(Error::NotFound { .. }) => return Ok(false),
            r => r?,
        };
        let _op = entry.op().await;
        if entry.lock().removed {
            return Ok(false);
        }
        // Hook point: NRI's RemoveContainer will be told here.
        self.stop_entry(&entry, Duration::ZERO).await?;
        let c = entry.get();
        let oci = self.handlers.get(&c.runtime_handler)?;
        oci.delete(&c.id, true).await?;
        crash::point(crash::REMOVE_AFTER_RUNTIME_DELETE);
        let bundle = self.dirs.container_state(&c.id);
        rootfs::unmount_image_volumes(&bundle)?;
        rootfs::unmount_rootfs(&bundle.join("rootfs"))?;
        staged::release(&bundle)?;
        fsutil::remove_trees(&[&bundle, &self.dirs.container_root(&c.id)])?;
        crash::point(crash::REMOVE_AFTER_UNMOUNT);
        entry.update(|r| r.removed = true);
        self.table.delete(&c.id)?;
        self.objects.remove(&c.id);
        self.objects
            .release_name(&name_key(&c.sandbox_id, &c.config), &c.id);
        self.events.emit(
            self.pods.as_ref(),
            &self.objects,
            &entry.get(),
            ContainerEventKind::Deleted,
        );
        tracing::info!(container = %c.id, "container removed");
        Ok(true)
    }
}
