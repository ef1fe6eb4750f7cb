//! ListImages: the images in the store, optionally filtered by reference
//! or by repository.

use crius_runtime::Runtime;
use k8s_cri::v1::{ListImagesRequest, ListImagesResponse};
use tonic::Status;

use crate::convert;
use crate::error::to_status;

/// Handles ListImages.
pub fn handle(rt: &Runtime, req: ListImagesRequest) -> Result<ListImagesResponse, Status> {
    let wanted = req
        .filter
        .and_then(|f| f.image)
        .map(|i| i.image)
        .filter(|i| !i.is_empty());
    let images = match wanted {
        Some(reference) => rt.images().matching(&reference).map_err(to_status)?,
        None => rt.images().list(),
    };
    Ok(ListImagesResponse {
        images: images.iter().map(convert::image).collect(),
    })
}
