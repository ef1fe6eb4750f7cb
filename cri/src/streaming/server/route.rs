//! One request: its token, then the upgrade to a WebSocket or to SPDY/3.1
//! with the stream protocol negotiated, or the HTTP error why not.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::config::{ACCEPTED_PROTOCOLS_HEADER, PROTOCOL_HEADER, SPDY_UPGRADE};
use super::inner::{Inner, Pending};
use super::sessions::{attach_early, serve_spdy, serve_websocket};
use crate::streaming::spdy::{Session, SessionConfig};
use crate::streaming::{portforward, remotecommand, websocket};

type HttpResponse = Response<Full<Bytes>>;

fn plain(status: StatusCode, text: impl Into<String>) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(text.into() + "\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn not_found() -> HttpResponse {
    plain(StatusCode::NOT_FOUND, "404 page not found")
}

pub(super) async fn handle(mut req: Request<Body>, inner: Arc<Inner>) -> HttpResponse {
    if req.method() != Method::GET && req.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST");
    }
    let segments: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    let [kind, token] = segments[..] else {
        return not_found();
    };
    if !matches!(kind, "exec" | "attach" | "portforward") {
        return not_found();
    }
    // Single use: the token is gone whatever happens next.
    let Some(pending) = inner.tokens.consume(token) else {
        return not_found();
    };
    if pending.path() != kind {
        return not_found();
    }
    let headers = req.headers().clone();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let query = req.uri().query().map(str::to_string);
    if websocket::is_websocket_request(&headers) {
        let allowed: &[&str] = match pending {
            Pending::PortForward { .. } => portforward::WEBSOCKET_PROTOCOLS,
            _ => remotecommand::WEBSOCKET_PROTOCOLS,
        };
        let protocol = match websocket::negotiate(&headers, allowed) {
            Ok(p) => p,
            Err(why) => return plain(StatusCode::BAD_REQUEST, why),
        };
        let ports = match &pending {
            Pending::PortForward { ports, .. } => {
                match portforward::query_ports(query.as_deref()) {
                    Ok(q) if !q.is_empty() => q,
                    Ok(_) if !ports.is_empty() => ports.clone(),
                    Ok(_) => {
                        return plain(
                            StatusCode::BAD_REQUEST,
                            "query parameter \"port\" is required",
                        );
                    }
                    Err(why) => return plain(StatusCode::BAD_REQUEST, why),
                }
            }
            _ => Vec::new(),
        };
        let response = match websocket_accept(&headers, protocol.name) {
            Ok(r) => r,
            Err(why) => return plain(StatusCode::BAD_REQUEST, why),
        };
        let attached = attach_early(&pending, &inner).await;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(websocket_limits()),
                    )
                    .await;
                    serve_websocket(ws, protocol, pending, attached, ports, inner).await;
                }
                Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
            }
        });
        return response;
    }
    let upgrade_to_spdy = websocket::connection_upgrade(&headers)
        && headers
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("spdy/3.1"));
    if !upgrade_to_spdy {
        return plain(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request (want SPDY/3.1 or websocket)",
        );
    }
    let allowed: &[&str] = match pending {
        Pending::PortForward { .. } => &[portforward::SPDY_PROTOCOL],
        _ => remotecommand::SPDY_PROTOCOLS,
    };
    let protocol = match negotiate_spdy(&headers, allowed) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static(SPDY_UPGRADE));
    if let Ok(v) = HeaderValue::from_str(protocol) {
        h.insert(PROTOCOL_HEADER, v);
    }
    let protocol = protocol.to_string();
    let attached = attach_early(&pending, &inner).await;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let (session, incoming) = Session::server(
                    TokioIo::new(upgraded),
                    SessionConfig {
                        idle_timeout: Some(inner.config.idle_timeout),
                        ..Default::default()
                    },
                );
                serve_spdy(session, incoming, &protocol, pending, attached, inner).await;
            }
            Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
        }
    });
    response
}

/// The largest WebSocket message (and frame) a client may send: 16 MiB,
/// what one SPDY data frame can carry (tungstenite's default is 64 MiB).
/// A client writes stdin or forwarded data a buffer at a time.
const MAX_WEBSOCKET_MESSAGE: usize = crate::streaming::spdy::frame::MAX_PAYLOAD;

fn websocket_limits() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_WEBSOCKET_MESSAGE))
        .max_frame_size(Some(MAX_WEBSOCKET_MESSAGE))
}

/// Picks the first protocol the client lists that the server speaks:
/// 400 if it lists none, 403 (with the accepted ones) if none fits.
fn negotiate_spdy(
    headers: &HeaderMap,
    allowed: &'static [&'static str],
) -> Result<&'static str, Box<HttpResponse>> {
    let offered: Vec<&str> = headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            format!("unable to upgrade: {PROTOCOL_HEADER} is required"),
        )));
    }
    if let Some(p) = offered
        .iter()
        .find_map(|o| allowed.iter().find(|a| *a == o))
    {
        return Ok(p);
    }
    let mut r = plain(
        StatusCode::FORBIDDEN,
        format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {allowed:?}"
        ),
    );
    for a in allowed {
        r.headers_mut()
            .append(ACCEPTED_PROTOCOLS_HEADER, HeaderValue::from_static(a));
    }
    Err(Box::new(r))
}

fn websocket_accept(headers: &HeaderMap, protocol: &str) -> Result<HttpResponse, String> {
    let version = headers
        .get(http::header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok());
    if version != Some("13") {
        return Err("websocket: Sec-WebSocket-Version must be 13".into());
    }
    let key = headers
        .get(http::header::SEC_WEBSOCKET_KEY)
        .ok_or("websocket: Sec-WebSocket-Key is required")?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        http::header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(|e| e.to_string())?,
    );
    if !protocol.is_empty() {
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(protocol).map_err(|e| e.to_string())?,
        );
    }
    Ok(r)
}
