//! PullImage: fetch an image from its registry (or a mirror) into the
//! store.

use crius_runtime::Runtime;
use crius_runtime::image::Credentials;
use k8s_cri::v1::{AuthConfig, PullImageRequest, PullImageResponse};
use tonic::Status;

use crate::error::{missing, to_status};

/// The request's credentials, all forms kept (the runtime decides which
/// applies); `None` when none are given.
fn credentials(auth: Option<AuthConfig>) -> Option<Credentials> {
    let a = auth?;
    let c = Credentials {
        username: a.username,
        password: a.password,
        auth: a.auth,
        server_address: a.server_address,
        identity_token: a.identity_token,
        registry_token: a.registry_token,
    };
    (!c.is_empty()).then_some(c)
}

/// Handles PullImage; answers the image's id.
pub async fn handle(rt: &Runtime, req: PullImageRequest) -> Result<PullImageResponse, Status> {
    let reference = req
        .image
        .map(|i| i.image)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| missing("image.image"))?;
    let credentials = credentials(req.auth);
    let image = rt
        .images()
        .pull(&reference, credentials.as_ref())
        .await
        .map_err(to_status)?;
    Ok(PullImageResponse {
        image_ref: image.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_auth_form_is_passed_on() {
        assert_eq!(credentials(None), None);
        assert_eq!(credentials(Some(AuthConfig::default())), None);
        let c = credentials(Some(AuthConfig {
            registry_token: "t".into(),
            server_address: "reg".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(
            (c.registry_token.as_str(), c.server_address.as_str()),
            ("t", "reg")
        );
        let c = credentials(Some(AuthConfig {
            auth: "dTpw".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(c.auth, "dTpw");
    }
}
