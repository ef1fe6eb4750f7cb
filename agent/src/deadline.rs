//! A call's deadline, answered as gRPC says: DEADLINE_EXCEEDED.
//!
//! A client sends its deadline as the `grpc-timeout` header. tonic's own
//! handling of it (outside every layer of ours) drops the call when it
//! passes and answers CANCELLED, so a client whose deadline passed on the
//! server first (critest's "public image should timeout if requested"
//! sends 1 ms) was told it had cancelled. [`DeadlineLayer`] runs inside
//! it with the same deadline, taken a moment earlier, so it is the one
//! that answers, with DEADLINE_EXCEEDED naming the method and the timeout.
//! Dropping the call undoes what it began, as with any client that goes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The header a gRPC client sends its deadline in.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// A `grpc-timeout` value: at most 8 digits and a unit (`H`ours,
/// `M`inutes, `S`econds, `m`illis, `u`micros, `n`anos). `None` if it is
/// not one (the call then has no deadline, as tonic treats it).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || !value.is_char_boundary(value.len() - 1) {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Answers a call whose deadline passes with DEADLINE_EXCEEDED.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

/// See [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<S, ReqB> tower::Service<http::Request<ReqB>> for Deadline<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let timeout = req
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let method = req.uri().path().to_string();
        // The timer starts here, before tonic's own (which starts once
        // this returns), so that it passes first.
        let deadline = timeout.map(|t| (t, tokio::time::sleep(t)));
        let call = self.inner.call(req);
        Box::pin(async move {
            let Some((timeout, passed)) = deadline else {
                return call.await;
            };
            tokio::select! {
                biased;
                res = call => res,
                () = passed => Ok(tonic::Status::deadline_exceeded(format!(
                    "{method}: the call's deadline ({timeout:?}) passed"
                ))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_writes_them() {
        assert_eq!(parse_grpc_timeout("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(
            parse_grpc_timeout("99999999S"),
            Some(Duration::from_secs(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "m", "1", "123456789S", "1x", "-1S", "1.5S", "1é", "1 S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
