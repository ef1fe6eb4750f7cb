//! What every exchange with a registry or its token service shares, below
//! both `distribution` (the registry's API) and `oauth` (the identity
//! token's exchange): the error an exchange ends in, the timeout it runs
//! within, bodies read whole under a cap, error answers described briefly,
//! URLs with their queries cut off for messages, and the token service's
//! challenge and answer.
//!
//! Nothing a registry sends is trusted to be small or quick: see
//! `distribution` for the caps and timeouts these helpers enforce.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

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

/// A `Bearer` challenge: where the token service is.
#[derive(Debug, PartialEq, Eq)]
pub struct BearerChallenge {
    /// The token service's URL.
    pub realm: String,
    /// The `service` to ask it for, if named.
    pub service: Option<String>,
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

/// Sends `request`: its answer (headers in, body not yet read), whatever
/// its status; failing to connect, send or read is a
/// [`FetchError::Transport`] about `what`.
pub async fn send_request(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<reqwest::Response, FetchError> {
    request
        .send()
        .await
        .map_err(|source| FetchError::Transport {
            what: what.to_string(),
            source,
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
