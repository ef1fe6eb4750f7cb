//! Identity tokens: the OAuth2 refresh tokens `docker login` stores for
//! some registries (Azure, for one) and kubelet passes as
//! `AuthConfig.identity_token`. oci-client sends a bearer token as is but
//! cannot exchange a refresh token, so this does the distribution token
//! protocol's OAuth2 step: ask the registry where its token service is
//! (`GET /v2/`, the `WWW-Authenticate: Bearer realm=…,service=…`
//! challenge), then `POST` the refresh token there for an access token
//! scoped to pulling the repository.
//!
//! The token is never put in a message or log line.

use std::time::Duration;

use http_auth::parser::ChallengeParser;
use serde::Deserialize;

/// The client id sent to token services.
const CLIENT_ID: &str = "crius";

/// Why an exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// The registry or its token service could not be reached.
    Unreachable(String),
    /// The token service refused the token.
    Refused(String),
    /// The registry does not do token authentication, or answered
    /// something else than the protocol says.
    Protocol(String),
}

/// A `Bearer` challenge.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
}

/// The `Bearer` challenge of a `WWW-Authenticate` header value, if any.
fn bearer_challenge(header: &str) -> Option<Challenge> {
    ChallengeParser::new(header).find_map(|c| {
        let c = c.ok()?;
        if !c.scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let param = |name: &str| {
            c.params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_unescaped())
        };
        Some(Challenge {
            realm: param("realm")?,
            service: param("service"),
        })
    })
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    token: String,
}

/// Exchanges `refresh_token` for an access token to pull `repository`
/// from the registry at `base` (`http(s)://host[:port]`), with `http` (a
/// client set up for that registry's TLS).
pub async fn exchange(
    http: &reqwest::Client,
    base: &str,
    repository: &str,
    refresh_token: &str,
    timeout: Duration,
) -> Result<String, ExchangeError> {
    let unreachable = |what: &str, e: reqwest::Error| {
        ExchangeError::Unreachable(format!("{what}: {}", e.without_url()))
    };
    let ping = http
        .get(format!("{base}/v2/"))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| unreachable(&format!("GET {base}/v2/"), e))?;
    let challenge = ping
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(bearer_challenge)
        .ok_or_else(|| {
            ExchangeError::Protocol(format!(
                "{base} does not use token authentication (GET /v2/ answered {} without a \
                 Bearer challenge), so an identity token cannot be used with it",
                ping.status()
            ))
        })?;
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
    let realm = &challenge.realm;
    let response = http
        .post(realm)
        .form(&form)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| unreachable(&format!("POST {realm}"), e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(ExchangeError::Refused(format!(
            "the token service {realm} answered {status}"
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| unreachable(&format!("POST {realm}"), e))?;
    let token: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
        ExchangeError::Protocol(format!("the token service {realm} answered no JSON token"))
    })?;
    let token = if token.access_token.is_empty() {
        token.token
    } else {
        token.access_token
    };
    if token.is_empty() {
        return Err(ExchangeError::Protocol(format!(
            "the token service {realm} answered no token"
        )));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            bearer_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="x""#
            ),
            Some(Challenge {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
            })
        );
        assert_eq!(
            bearer_challenge(r#"Basic realm="x", Bearer realm="http://a/t""#),
            Some(Challenge {
                realm: "http://a/t".into(),
                service: None,
            })
        );
        assert_eq!(bearer_challenge(r#"Basic realm="registry""#), None);
        assert_eq!(bearer_challenge("Bearer service=\"no realm\""), None);
    }
}
