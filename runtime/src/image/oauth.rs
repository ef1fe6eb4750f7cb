//! Identity tokens: the OAuth2 refresh tokens `docker login` stores for
//! some registries (Azure, for one) and kubelet passes as
//! `AuthConfig.identity_token`. They are not sent to the registry: the
//! registry's token service (the realm of its `Bearer` challenge, see
//! `distribution`) is `POST`ed the refresh token for an access token
//! scoped to pulling the repository.
//!
//! The token is never put in a message or log line.

use std::time::Duration;

use super::http::{
    BearerChallenge, FetchError, MAX_TOKEN_BYTES, error_message, read_capped, send_request,
    token_from_json, within, without_url_queries,
};

/// The client id sent to token services.
const CLIENT_ID: &str = "crius";

/// Exchanges `refresh_token` for an access token to pull `repository`
/// from the token service of `challenge`, with `http` (a client set up for
/// that registry's TLS), within `timeout`.
pub async fn exchange(
    http: &reqwest::Client,
    challenge: &BearerChallenge,
    repository: &str,
    refresh_token: &str,
    timeout: Duration,
) -> Result<String, FetchError> {
    let scope = format!("repository:{repository}:pull");
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", CLIENT_ID),
        ("scope", scope.as_str()),
    ];
    if let Some(service) = &challenge.service {
        form.push(("service", service));
    }
    let realm = without_url_queries(&challenge.realm);
    let what = format!("POST {realm}");
    let body = within(timeout, &what, async {
        let mut response = send_request(http.post(&challenge.realm).form(&form), &what).await?;
        let status = response.status();
        if !status.is_success() {
            // The message stays out: it may quote what was sent.
            let _ = error_message(&mut response).await;
            return Err(FetchError::TokenRefused(format!(
                "the token service {realm} answered {status}"
            )));
        }
        read_capped(
            &mut response,
            MAX_TOKEN_BYTES,
            &what,
            "the 1 MiB cap on tokens",
        )
        .await
    })
    .await?;
    token_from_json(&body)
        .ok_or_else(|| FetchError::Protocol(format!("the token service {realm} answered no token")))
}
