//! The registry's HTTP API (the OCI distribution spec), as much as a pull
//! needs: the authentication handshake, manifests and blobs.
//!
//! Authentication is Docker's and containerd's: `GET /v2/`; a `Bearer`
//! challenge sends crius to the registry's token service for a token
//! scoped to pulling the repository (with the basic credentials, if any,
//! or through the identity token's OAuth2 exchange, see `oauth`); a
//! `Basic` challenge has the basic credentials go with every request; no
//! challenge, no credentials. A registry token is sent as it is. Redirects
//! are followed (blob storage), never with the credentials to another
//! host.
//!
//! Nothing a registry sends is trusted to be small or quick. A body read
//! whole has a cap, checked against its `Content-Length` before reading
//! and against its bytes as they come: manifests and indexes
//! [`MAX_MANIFEST_BYTES`] (as containerd's `MaxManifestSize` and
//! containers/image's `MaxManifestBodySize`, the most the CNCF registry
//! accepts), tokens 1 MiB (containers/image's `MaxAuthTokenBodySize`);
//! blobs read whole (image configs) no more than their descriptor says.
//! Of an error answer only the first 64 KiB are read. Such an exchange —
//! connecting, the answer's headers and its whole body — must be over
//! within the request timeout, so a registry that trickles a byte a
//! second cannot hold a pull; a streamed blob must have its headers
//! within it, its body being paced by the caller's stall checks.
use std::fmt;
use std::time::Duration;

use http_auth::parser::ChallengeParser;
use oci_client::secrets::RegistryAuth;

use super::auth::Login;
use super::content::Digest;
use super::http::{
    BearerChallenge, FetchError, MAX_TOKEN_BYTES, bytes_in_words, error_message, read_capped,
    send_request, token_from_json, within, without_url_queries,
};
use super::manifest::ACCEPTED_MANIFESTS;
use super::oauth;

/// The largest manifest or index accepted.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// What `GET /v2/` asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    /// A token from this token service.
    Bearer(BearerChallenge),
    /// Basic credentials.
    Basic,
    /// Nothing.
    None,
}

/// The challenge of a `WWW-Authenticate` header value: `Bearer` (with a
/// realm) over `Basic`.
fn parse_challenge(header: &str) -> Challenge {
    let mut basic = false;
    for c in ChallengeParser::new(header).flatten() {
        if c.scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        }
        if !c.scheme.eq_ignore_ascii_case("bearer") {
            continue;
        }
        let param = |name: &str| {
            c.params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_unescaped())
        };
        if let Some(realm) = param("realm") {
            return Challenge::Bearer(BearerChallenge {
                realm,
                service: param("service"),
            });
        }
    }
    if basic {
        Challenge::Basic
    } else {
        Challenge::None
    }
}

/// What goes in the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
enum Authorization {
    None,
    Basic(String, String),
    Bearer(String),
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Authorization::None => "None",
            Authorization::Basic(..) => "Basic(<redacted>)",
            Authorization::Bearer(_) => "Bearer(<redacted>)",
        })
    }
}

/// One repository at one endpoint, authenticated for pulling.
#[derive(Debug)]
pub struct Repository {
    http: reqwest::Client,
    /// `http(s)://host[:port]`.
    base: String,
    /// `library/busybox`.
    name: String,
    /// `?ns=<upstream registry>` for a mirror, else empty.
    ns_query: String,
    authorization: Authorization,
    timeout: Duration,
}

impl Repository {
    /// Does the authentication handshake with the registry at `base`
    /// (`http(s)://host[:port]`) for pulling `name`, logging in as
    /// `login`. `upstream` is the registry a mirror is asked to mirror
    /// (sent as `?ns=`). `timeout` bounds every exchange read whole.
    pub async fn connect(
        http: reqwest::Client,
        base: String,
        name: &str,
        upstream: Option<&str>,
        login: &Login,
        timeout: Duration,
    ) -> Result<Repository, FetchError> {
        let mut repo = Repository {
            http,
            base,
            name: name.to_string(),
            ns_query: upstream.map(|u| format!("?ns={u}")).unwrap_or_default(),
            authorization: Authorization::None,
            timeout,
        };
        repo.authorization = match login {
            Login::Direct(RegistryAuth::Bearer(token)) => Authorization::Bearer(token.clone()),
            Login::Direct(auth) => match repo.ping().await?.1 {
                Challenge::Bearer(c) => Authorization::Bearer(repo.token(&c, auth).await?),
                Challenge::Basic => match auth {
                    RegistryAuth::Basic(u, p) => Authorization::Basic(u.clone(), p.clone()),
                    _ => Authorization::None,
                },
                Challenge::None => Authorization::None,
            },
            Login::IdentityToken(refresh) => match repo.ping().await? {
                (_, Challenge::Bearer(c)) => Authorization::Bearer(
                    oauth::exchange(&repo.http, &c, &repo.name, refresh, timeout).await?,
                ),
                (status, _) => {
                    return Err(FetchError::Protocol(format!(
                        "{} does not use token authentication (GET /v2/ answered {status} \
                         without a Bearer challenge), so an identity token cannot be used \
                         with it",
                        repo.base
                    )));
                }
            },
        };
        Ok(repo)
    }

    /// `GET /v2/`: its status and what it asks for.
    async fn ping(&self) -> Result<(reqwest::StatusCode, Challenge), FetchError> {
        let what = "GET /v2/".to_string();
        let url = format!("{}/v2/", self.base);
        within(self.timeout, &what, async {
            let r = send_request(self.http.get(&url), &what).await?;
            let challenge = r
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(parse_challenge)
                .find(|c| *c != Challenge::None)
                .unwrap_or(Challenge::None);
            // The body is not read: dropping the answer closes its
            // connection, whatever it was going to send.
            Ok((r.status(), challenge))
        })
        .await
    }

    /// A pull token from the token service of `challenge`, asked with the
    /// basic credentials of `auth` if any.
    async fn token(
        &self,
        challenge: &BearerChallenge,
        auth: &RegistryAuth,
    ) -> Result<String, FetchError> {
        let realm = &challenge.realm;
        let what = format!("token from {}", without_url_queries(realm));
        let mut url = reqwest::Url::parse(realm).map_err(|e| {
            FetchError::Protocol(format!(
                "{} sent a token realm that is not a URL ({realm:?}: {e})",
                self.base
            ))
        })?;
        url.query_pairs_mut()
            .append_pair("scope", &format!("repository:{}:pull", self.name));
        if let Some(service) = &challenge.service {
            url.query_pairs_mut().append_pair("service", service);
        }
        let mut request = self.http.get(url);
        if let RegistryAuth::Basic(u, p) = auth {
            request = request.basic_auth(u, Some(p));
        }
        let body = within(self.timeout, &what, async {
            let mut r = send_request(request, &what).await?;
            if !r.status().is_success() {
                let status = r.status();
                let message = error_message(&mut r).await.1;
                return Err(FetchError::TokenRefused(format!(
                    "the token service {} answered {status}{}{message}",
                    without_url_queries(realm),
                    if message.is_empty() { "" } else { ": " },
                )));
            }
            read_capped(&mut r, MAX_TOKEN_BYTES, &what, "the 1 MiB cap on tokens").await
        })
        .await?;
        token_from_json(&body).ok_or_else(|| {
            FetchError::Protocol(format!(
                "the token service {} answered no token",
                without_url_queries(realm)
            ))
        })
    }

    /// A GET of `path` (under `/v2/<name>/`), with the credentials.
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}/v2/{}/{path}{}", self.base, self.name, self.ns_query);
        let request = self.http.get(url);
        match &self.authorization {
            Authorization::None => request,
            Authorization::Basic(u, p) => request.basic_auth(u, Some(p)),
            Authorization::Bearer(t) => request.bearer_auth(t),
        }
    }

    /// The manifest (or index) `reference` (a tag or a digest) names, as
    /// served: at most [`MAX_MANIFEST_BYTES`].
    pub async fn manifest(&self, reference: &str) -> Result<Vec<u8>, FetchError> {
        let what = format!("manifest {reference}");
        let request = self
            .get(&format!("manifests/{reference}"))
            .header(reqwest::header::ACCEPT, ACCEPTED_MANIFESTS.join(", "));
        within(self.timeout, &what, async {
            let mut r = send(request, &what).await?;
            read_capped(
                &mut r,
                MAX_MANIFEST_BYTES,
                &what,
                &format!(
                    "the {} cap on manifests",
                    bytes_in_words(MAX_MANIFEST_BYTES)
                ),
            )
            .await
        })
        .await
    }

    /// A blob read whole (an image config): at most `size` bytes, the size
    /// its descriptor gives. The caller checks size and digest.
    pub async fn blob_bytes(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, FetchError> {
        let what = format!("blob {digest}");
        let request = self.get(&format!("blobs/{digest}"));
        within(self.timeout, &what, async {
            let mut r = send(request, &what).await?;
            read_capped(
                &mut r,
                size,
                &what,
                &format!("the {size} bytes its descriptor announces"),
            )
            .await
        })
        .await
    }

    /// A blob to stream: the answer, its headers in (within the request
    /// timeout), its body not yet read.
    pub async fn blob(&self, digest: &Digest) -> Result<reqwest::Response, FetchError> {
        let what = format!("blob {digest}");
        let request = self.get(&format!("blobs/{digest}"));
        within(self.timeout, &what, send(request, &what)).await
    }
}

/// Sends `request`; an error status (its message read, briefly) is an
/// error.
async fn send(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<reqwest::Response, FetchError> {
    let mut r = send_request(request, what).await?;
    let status = r.status();
    if status == reqwest::StatusCode::OK {
        return Ok(r);
    }
    let (codes, message) = if status.is_success() {
        // 206 to a request without a range, 204 …: not a body to trust.
        (Vec::new(), "expected 200 OK".to_string())
    } else {
        error_message(&mut r).await
    };
    Err(FetchError::Status {
        what: what.to_string(),
        status: status.as_u16(),
        codes,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="x""#
            ),
            Challenge::Bearer(BearerChallenge {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x", Bearer realm="http://a/t""#),
            Challenge::Bearer(BearerChallenge {
                realm: "http://a/t".into(),
                service: None,
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="registry""#),
            Challenge::Basic
        );
        assert_eq!(
            parse_challenge("Bearer service=\"no realm\""),
            Challenge::None
        );
        assert_eq!(parse_challenge("garbage,,,"), Challenge::None);
    }
}
