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
use serde::Deserialize;

use super::auth::Login;
use super::content::Digest;
use super::manifest::ACCEPTED_MANIFESTS;
use super::oauth;

/// The largest manifest or index accepted.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The largest token-service answer accepted.
pub const MAX_TOKEN_BYTES: u64 = 1 << 20;
/// How much of an error answer is read (for its message).
const MAX_ERROR_BYTES: u64 = 64 << 10;
/// How much of an unstructured error answer a message quotes.
const ERROR_QUOTE_CHARS: usize = 300;

/// Why an exchange with a registry (or its token service) failed. The
/// caller adds which image from which endpoint.
#[derive(Debug)]
pub enum FetchError {
    /// Connecting, sending or reading failed.
    Transport {
        /// What was asked ("manifest v1", "GET /v2/").
        what: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// The exchange was not over within the request timeout.
    TimedOut {
        /// What was asked.
        what: String,
        /// The timeout.
        after: Duration,
    },
    /// The answer was an error status.
    Status {
        /// What was asked.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The distribution error codes of the body (`MANIFEST_UNKNOWN`
        /// …), if it had any.
        codes: Vec<String>,
        /// What the body said, short.
        message: String,
    },
    /// A body larger than it may be.
    TooLarge {
        /// What was asked.
        what: String,
        /// The limit, in words ("the 4 MiB cap on manifests").
        limit: String,
        /// The `Content-Length` it announced, if it announced one.
        announced: Option<u64>,
    },
    /// The token service refused the credentials.
    TokenRefused(String),
    /// The registry or its token service answered something the protocol
    /// does not allow.
    Protocol(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Transport { what, source } => {
                write!(f, "{what}: {}", error_chain(source))
            }
            FetchError::TimedOut { what, after } => write!(
                f,
                "{what}: no complete answer within {} s (request_timeout_secs); cancelled",
                after.as_secs()
            ),
            FetchError::Status {
                what,
                status,
                message,
                ..
            } => {
                write!(f, "{what}: HTTP {status}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            FetchError::TooLarge {
                what,
                limit,
                announced,
            } => {
                write!(f, "{what}: more than {limit}")?;
                if let Some(n) = announced {
                    write!(f, " (it announces {n} bytes)")?;
                }
                f.write_str("; refused")
            }
            FetchError::TokenRefused(m) | FetchError::Protocol(m) => f.write_str(m),
        }
    }
}

/// A byte count for messages: `4 MiB`, `1536 KiB`, `100 bytes`.
pub fn bytes_in_words(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    const KIB: u64 = 1 << 10;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

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

/// A `Bearer` challenge: where the token service is.
#[derive(Debug, PartialEq, Eq)]
pub struct BearerChallenge {
    /// The token service's URL.
    pub realm: String,
    /// The `service` to ask it for, if named.
    pub service: Option<String>,
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
            let r = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|source| FetchError::Transport {
                    what: what.clone(),
                    source,
                })?;
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
            let mut r = request
                .send()
                .await
                .map_err(|source| FetchError::Transport {
                    what: what.clone(),
                    source,
                })?;
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

/// Runs `exchange`, giving up after `timeout`.
pub async fn within<T>(
    timeout: Duration,
    what: &str,
    exchange: impl Future<Output = Result<T, FetchError>>,
) -> Result<T, FetchError> {
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::TimedOut {
            what: what.to_string(),
            after: timeout,
        }),
    }
}

/// Sends `request`; an error status (its message read, briefly) is an
/// error.
async fn send(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<reqwest::Response, FetchError> {
    let mut r = request
        .send()
        .await
        .map_err(|source| FetchError::Transport {
            what: what.to_string(),
            source,
        })?;
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

/// Reads a whole body of at most `cap` bytes; `limit` says what the cap
/// is in errors.
pub async fn read_capped(
    r: &mut reqwest::Response,
    cap: u64,
    what: &str,
    limit: &str,
) -> Result<Vec<u8>, FetchError> {
    let too_large = |announced| FetchError::TooLarge {
        what: what.to_string(),
        limit: limit.to_string(),
        announced,
    };
    let announced = r.content_length();
    if let Some(n) = announced
        && n > cap
    {
        return Err(too_large(Some(n)));
    }
    // Trust an announced length for the allocation only up to the cap.
    let mut body = Vec::with_capacity(usize::try_from(announced.unwrap_or(0)).unwrap_or(0));
    while let Some(chunk) = r.chunk().await.map_err(|source| FetchError::Transport {
        what: what.to_string(),
        source,
    })? {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(too_large(announced));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error codes and a short message of an error answer, from its
/// first [`MAX_ERROR_BYTES`] (the rest is not read).
pub async fn error_message(r: &mut reqwest::Response) -> (Vec<String>, String) {
    let mut body = Vec::new();
    while (body.len() as u64) < MAX_ERROR_BYTES {
        match r.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BYTES as usize);
    describe_error_body(&body)
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The distribution error codes and a message of an error body: the
/// codes and messages of an error envelope, else the start of the text.
fn describe_error_body(body: &[u8]) -> (Vec<String>, String) {
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body)
        && !envelope.errors.is_empty()
    {
        let codes: Vec<String> = envelope.errors.iter().map(|e| e.code.clone()).collect();
        let message = envelope
            .errors
            .iter()
            .map(|e| quote(&format!("{}: {}", e.code, e.message)))
            .collect::<Vec<_>>()
            .join("; ");
        return (codes, message);
    }
    (Vec::new(), quote(String::from_utf8_lossy(body).trim()))
}

/// `s` cut to [`ERROR_QUOTE_CHARS`] characters, control characters made
/// visible (it goes into log lines and gRPC messages).
fn quote(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(ERROR_QUOTE_CHARS)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if s.chars().count() > ERROR_QUOTE_CHARS {
        out.push('…');
    }
    out
}

/// The token of a token-service answer (`token`, else `access_token`);
/// `None` if it holds none.
pub fn token_from_json(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct TokenAnswer {
        #[serde(default)]
        token: String,
        #[serde(default)]
        access_token: String,
    }
    let t: TokenAnswer = serde_json::from_slice(body).ok()?;
    [t.token, t.access_token]
        .into_iter()
        .find(|t| !t.is_empty())
}

/// An error and its causes, `a: b: c` (reqwest's own message hides the
/// cause, e.g. "connection refused"), with the query strings of URLs cut
/// off: a redirect to blob storage carries signed, short-lived credentials
/// there.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    without_url_queries(&s)
}

/// `s` with `?query` cut from every `http(s)://` URL in it.
pub fn without_url_queries(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == ')' || c == '"')
            .unwrap_or(tail.len());
        let url = &tail[..end];
        out.push_str(url.split('?').next().unwrap_or(url));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
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

    #[test]
    fn error_bodies_are_described_briefly() {
        let (codes, m) = describe_error_body(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
        );
        assert_eq!(codes, ["MANIFEST_UNKNOWN"]);
        assert_eq!(m, "MANIFEST_UNKNOWN: manifest unknown");
        let (codes, m) = describe_error_body(&[b'x'; 10_000]);
        assert!(codes.is_empty());
        assert_eq!(m.chars().count(), ERROR_QUOTE_CHARS + 1);
        let (_, m) = describe_error_body(b"line\nbreak\x1b[31m");
        assert_eq!(m, "line\\nbreak\\u{1b}[31m");
    }

    #[test]
    fn tokens_and_sizes() {
        assert_eq!(token_from_json(br#"{"token":"a"}"#).as_deref(), Some("a"));
        assert_eq!(
            token_from_json(br#"{"token":"","access_token":"b"}"#).as_deref(),
            Some("b")
        );
        assert_eq!(token_from_json(br#"{"expires_in":3}"#), None);
        assert_eq!(token_from_json(b"<html>"), None);
        assert_eq!(bytes_in_words(4 << 20), "4 MiB");
        assert_eq!(bytes_in_words(1536 << 10), "1536 KiB");
        assert_eq!(bytes_in_words(1000), "1000 bytes");
    }

    #[test]
    fn url_queries_are_cut_from_errors() {
        assert_eq!(
            without_url_queries(
                "error sending request for url (https://s3.example/blob?X-Amz-Signature=abc&x=1): \
                 connection reset; see http://h/p?q \"x\""
            ),
            "error sending request for url (https://s3.example/blob): connection reset; \
             see http://h/p \"x\""
        );
        assert_eq!(without_url_queries("no urls? none"), "no urls? none");
    }
}
