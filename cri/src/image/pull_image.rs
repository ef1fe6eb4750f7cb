//! PullImage: fetch an image from its registry into the store.

use crius_runtime::Runtime;
use crius_runtime::image::Credentials;
use k8s_cri::v1::{PullImageRequest, PullImageResponse};
use tonic::Status;

use crate::error::{missing, to_status};

/// Handles PullImage; answers the image's id.
pub async fn handle(rt: &Runtime, req: PullImageRequest) -> Result<PullImageResponse, Status> {
    let reference = req
        .image
        .map(|i| i.image)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| missing("image.image"))?;
    let credentials = req
        .auth
        .filter(|a| !a.username.is_empty())
        .map(|a| Credentials {
            username: a.username,
            password: a.password,
        });
    let image = rt
        .images()
        .pull(&reference, credentials.as_ref())
        .await
        .map_err(to_status)?;
    Ok(PullImageResponse {
        image_ref: image.id,
    })
}
