//! Images as ListImages and ImageStatus report them.

use crius_runtime::image::Image;
use k8s_cri::v1 as cri;

pub(super) fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

/// An image as ListImages and ImageStatus report it. The image's user
/// becomes `uid` when numeric and `username` otherwise, which kubelet uses
/// for runAsNonRoot.
pub fn image(img: &Image) -> cri::Image {
    let user = img.config.user.split(':').next().unwrap_or_default();
    let (uid, username) = match user.parse::<i64>() {
        Ok(uid) => (Some(cri::Int64Value { value: uid }), String::new()),
        Err(_) => (None, user.to_string()),
    };
    cri::Image {
        id: img.id.clone(),
        repo_tags: img.repo_tags.clone(),
        repo_digests: img.repo_digests.clone(),
        size: img.size,
        uid,
        username,
        spec: Some(image_spec(&img.id)),
        pinned: false,
    }
}
