//! ImageStatus: one image, or none when it is not in the store; with
//! `verbose`, its config as the registry served it.

use std::collections::HashMap;

use crius_runtime::Runtime;
use crius_runtime::image::Image;
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
    let info = match &image {
        Some(image) if req.verbose => verbose_info(rt, image)?,
        _ => HashMap::new(),
    };
    Ok(ImageStatusResponse {
        image: image.as_ref().map(convert::image),
        info,
    })
}

/// `info["info"]`: a JSON object (as containerd's) with the image config
/// (`imageSpec`), the layers' chain ids and the stored manifests.
fn verbose_info(rt: &Runtime, image: &Image) -> Result<HashMap<String, String>, Status> {
    let info = rt.images().verbose_info(image).map_err(to_status)?;
    Ok(HashMap::from([("info".to_string(), info)]))
}
