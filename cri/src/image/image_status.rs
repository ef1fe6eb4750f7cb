//! ImageStatus: one image, or none when it is not in the store.

use crius_runtime::Runtime;
use k8s_cri::v1::{ImageStatusRequest, ImageStatusResponse};
use tonic::Status;

use crate::convert;
use crate::error::{missing, to_status};

/// Handles ImageStatus. An image not in the store is not an error: the
/// response carries no image, as the CRI requires.
pub fn handle(rt: &Runtime, req: ImageStatusRequest) -> Result<ImageStatusResponse, Status> {
    let reference = req
        .image
        .map(|i| i.image)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| missing("image.image"))?;
    let image = rt.images().get(&reference).map_err(to_status)?;
    Ok(ImageStatusResponse {
        image: image.as_ref().map(convert::image),
        info: Default::default(),
    })
}
