//! RemoveImage: an image and every name of it; the layers and blobs
//! nothing else uses go too (those a container uses stay until it is
//! removed).

use crius_runtime::Runtime;
use k8s_cri::v1::{RemoveImageRequest, RemoveImageResponse};
use tonic::Status;

use crate::error::{missing, to_status};

/// Handles RemoveImage by id, tag or digest. An image that is not there
/// is not an error.
pub async fn handle(rt: &Runtime, req: RemoveImageRequest) -> Result<RemoveImageResponse, Status> {
    let reference = req
        .image
        .map(|i| i.image)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| missing("image.image"))?;
    rt.remove_image(&reference).await.map_err(to_status)?;
    Ok(RemoveImageResponse {})
}
