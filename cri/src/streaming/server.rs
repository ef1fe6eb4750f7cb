//! The streaming HTTP server: `/exec/{token}`, `/attach/{token}` and
//! `/portforward/{token}` (GET or POST), each upgraded to SPDY/3.1 or to
//! a WebSocket on the same path. Tokens come from the CRI calls and are
//! good once, for a minute; an unknown, used or expired one is a 404.
//! TLS is optional (a certificate and key in PEM files).
//!
//! Anyone on the host can connect, token or not, so what a connection can
//! hold before it shows a token is bounded: at most
//! [`StreamingConfig::max_connections`] at once (one past the cap is
//! closed as it comes), the TLS handshake and the request header must
//! arrive within [`StreamingConfig::header_timeout`], and so must each
//! next request on a kept-alive connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;

use super::backend::{
    AttachBackend, AttachSpec, BackendError, ExecBackend, ExecSpec, PortForwardBackend, ProcessIo,
};
use super::remotecommand::{self, Mode};
use super::spdy::{Incoming, Session, SessionConfig};
use super::tokens::{MAX_IN_FLIGHT, TokenCache, TokenError};
use super::{portforward, websocket};

/// The header that negotiates a SPDY stream protocol.
pub const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";
/// The header listing the protocols the server accepts, on refusal.
pub const ACCEPTED_PROTOCOLS_HEADER: &str = "X-Accepted-Stream-Protocol-Versions";
/// The `Upgrade` value of SPDY.
pub const SPDY_UPGRADE: &str = "SPDY/3.1";

/// How long a closing session waits for the client to hang up.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A TLS certificate and key, in PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// How the streaming server runs.
#[derive(Debug, Clone)]
pub struct StreamingConfig {
    /// Where it listens (port 0: any free port).
    pub addr: SocketAddr,
    /// Serve HTTPS with this certificate; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// Close a session after this long without traffic.
    pub idle_timeout: Duration,
    /// How long a client has to open a session's streams.
    pub stream_creation_timeout: Duration,
    /// How long a URL's token is good.
    pub token_ttl: Duration,
    /// How long a new connection has for its TLS handshake and its
    /// request header; one that has not sent them by then is closed.
    pub header_timeout: Duration,
    /// Connections not yet streaming (before their upgrade) at once; one
    /// past the cap is closed as it is accepted.
    pub max_connections: usize,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            idle_timeout: Duration::from_secs(4 * 3600),
            stream_creation_timeout: Duration::from_secs(30),
            token_ttl: super::tokens::DEFAULT_TTL,
            header_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// What serves each kind of session; a missing one means the kind is not
/// offered (its CRI call answers UNIMPLEMENTED and never hands out a URL).
#[derive(Clone, Default)]
pub struct Backends {
    /// Exec.
    pub exec: Option<Arc<dyn ExecBackend>>,
    /// Attach.
    pub attach: Option<Arc<dyn AttachBackend>>,
    /// PortForward.
    pub port_forward: Option<Arc<dyn PortForwardBackend>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("exec", &self.exec.is_some())
            .field("attach", &self.attach.is_some())
            .field("port_forward", &self.port_forward.is_some())
            .finish()
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the address failed.
    #[error("streaming server: bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS files are unusable.
    #[error("streaming server TLS: {0}")]
    Tls(String),
}

/// Why no URL could be handed out.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// This kind of session is not served.
    #[error("{0} is not implemented by crius")]
    Unsupported(&'static str),
    /// No token could be made.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// A request waiting for its client.
#[derive(Debug, Clone)]
enum Pending {
    Exec(ExecSpec),
    Attach(AttachSpec),
    PortForward { sandbox_id: String, ports: Vec<u16> },
}

impl Pending {
    fn path(&self) -> &'static str {
        match self {
            Pending::Exec(_) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward { .. } => "portforward",
        }
    }
}

struct Inner {
    config: StreamingConfig,
    base_url: String,
    local_addr: SocketAddr,
    tokens: TokenCache<Pending>,
    backends: Backends,
    stop: CancellationToken,
}

/// The running streaming server. Cheap to clone.
#[derive(Clone)]
pub struct StreamingServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StreamingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingServer")
            .field("base_url", &self.inner.base_url)
            .field("backends", &self.inner.backends)
            .finish_non_exhaustive()
    }
}

impl StreamingServer {
    /// Binds `config.addr` and serves until [`StreamingServer::stop`].
    pub async fn start(
        config: StreamingConfig,
        backends: Backends,
    ) -> Result<StreamingServer, ServerError> {
        let tls = match &config.tls {
            Some(files) => Some(tls_acceptor(files)?),
            None => None,
        };
        let listener =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.addr,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let inner = Arc::new(Inner {
            base_url: format!("{scheme}://{local_addr}"),
            local_addr,
            tokens: TokenCache::new(config.token_ttl, MAX_IN_FLIGHT),
            backends,
            stop: CancellationToken::new(),
            config,
        });
        tokio::spawn(accept_loop(listener, tls, inner.clone()));
        Ok(StreamingServer { inner })
    }

    /// `http(s)://host:port` of the server.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Whether Exec sessions are served.
    pub fn serves_exec(&self) -> bool {
        self.inner.backends.exec.is_some()
    }

    /// Whether Attach sessions are served.
    pub fn serves_attach(&self) -> bool {
        self.inner.backends.attach.is_some()
    }

    /// Whether PortForward sessions are served.
    pub fn serves_port_forward(&self) -> bool {
        self.inner.backends.port_forward.is_some()
    }

    fn url(&self, pending: Pending) -> Result<String, UrlError> {
        let path = pending.path();
        let token = self.inner.tokens.insert(pending)?;
        Ok(format!("{}/{path}/{token}", self.inner.base_url))
    }

    /// A one-time URL for an Exec session.
    pub fn exec_url(&self, spec: ExecSpec) -> Result<String, UrlError> {
        if !self.serves_exec() {
            return Err(UrlError::Unsupported("Exec"));
        }
        self.url(Pending::Exec(spec))
    }

    /// A one-time URL for an Attach session.
    pub fn attach_url(&self, spec: AttachSpec) -> Result<String, UrlError> {
        if !self.serves_attach() {
            return Err(UrlError::Unsupported("Attach"));
        }
        self.url(Pending::Attach(spec))
    }

    /// A one-time URL for a PortForward session into `sandbox_id`;
    /// `ports` are what a WebSocket client gets when it names none.
    pub fn port_forward_url(&self, sandbox_id: &str, ports: Vec<u16>) -> Result<String, UrlError> {
        if !self.serves_port_forward() {
            return Err(UrlError::Unsupported("PortForward"));
        }
        self.url(Pending::PortForward {
            sandbox_id: sandbox_id.to_string(),
            ports,
        })
    }

    /// Stops accepting connections (sessions under way run on).
    pub fn stop(&self) {
        self.inner.stop.cancel();
    }
}

fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("certificate {}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "certificate {}: no certificate in it",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| ServerError::Tls(format!("key {}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", files.cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    inner: Arc<Inner>,
) {
    tracing::info!(url = %inner.base_url, "serving streams");
    let places = Arc::new(Semaphore::new(
        inner.config.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let mut refused = Refused::default();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "streaming server accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = inner.stop.cancelled() => return,
        };
        // Past the cap: closed now, not queued.
        let Ok(place) = places.clone().try_acquire_owned() else {
            refused.one(inner.config.max_connections);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let inner = inner.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let header_timeout = inner.config.header_timeout;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection(TokioIo::new(stream), inner).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_connection(TokioIo::new(tcp), inner).await,
            }
            // Held until the connection is served or upgraded: a session
            // then runs on its own, having shown a token.
            drop(place);
        });
    }
}

/// Connections closed for the cap, logged at most every ten seconds.
#[derive(Default)]
struct Refused {
    since_log: u64,
    last_log: Option<std::time::Instant>,
}

impl Refused {
    fn one(&mut self, cap: usize) {
        self.since_log += 1;
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(
                refused = self.since_log,
                max_connections = cap,
                "streaming server at its connection cap; closing new connections"
            );
            self.since_log = 0;
            self.last_log = Some(std::time::Instant::now());
        }
    }
}

async fn serve_connection<I>(io: I, inner: Arc<Inner>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let header_timeout = inner.config.header_timeout;
    let service = service_fn(move |req| {
        let inner = inner.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(req, inner).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Also bounds how long a kept-alive connection may idle before
        // its next request: hyper times each request header from when it
        // starts waiting for it.
        .header_read_timeout(header_timeout)
        .serve_connection(io, service)
        .with_upgrades()
        .await
    {
        tracing::debug!(error = %e, "streaming connection ended");
    }
}

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

async fn handle(mut req: Request<Body>, inner: Arc<Inner>) -> HttpResponse {
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
const MAX_WEBSOCKET_MESSAGE: usize = super::spdy::frame::MAX_PAYLOAD;

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

/// An attach session joins the container's stdio before the upgrade is
/// answered, so that whatever the container writes once the client holds
/// the answer reaches the client.
async fn attach_early(pending: &Pending, inner: &Inner) -> Option<Attached> {
    let Pending::Attach(spec) = pending else {
        return None;
    };
    let backend = inner.backends.attach.clone()?;
    Some(backend.attach(spec.clone()).await)
}

/// An attach joined early: the container's stdio, or why not.
type Attached = Result<ProcessIo, BackendError>;

async fn serve_spdy(
    session: Session,
    mut incoming: Incoming,
    protocol: &str,
    pending: Pending,
    attached: Option<Attached>,
    inner: Arc<Inner>,
) {
    let timeout = inner.config.stream_creation_timeout;
    match pending {
        Pending::PortForward { sandbox_id, .. } => {
            if let Some(backend) = inner.backends.port_forward.clone() {
                tracing::debug!(pod = %sandbox_id, "port forward session");
                portforward::serve_spdy(incoming, backend, sandbox_id, timeout).await;
            }
        }
        Pending::Exec(spec) => {
            let opts = spec.stdio;
            match remotecommand::spdy_streams(&mut incoming, protocol, opts, timeout).await {
                Ok(mut streams) => {
                    remotecommand::refuse_further(incoming);
                    streams.gone = Some(spdy_gone(&session));
                    if let Some(backend) = inner.backends.exec.clone() {
                        let process = backend.exec(spec).await;
                        remotecommand::run(streams, process, Mode::Exec).await;
                    }
                }
                Err(why) => tracing::debug!(container = %spec.container_id, "exec: {why}"),
            }
        }
        Pending::Attach(spec) => {
            let opts = spec.stdio;
            match remotecommand::spdy_streams(&mut incoming, protocol, opts, timeout).await {
                Ok(mut streams) => {
                    remotecommand::refuse_further(incoming);
                    streams.gone = Some(spdy_gone(&session));
                    if let Some(process) = attached {
                        remotecommand::run(streams, process, Mode::Attach).await;
                    }
                }
                Err(why) => tracing::debug!(container = %spec.container_id, "attach: {why}"),
            }
        }
    }
    session.close(CLOSE_GRACE).await;
}

/// Resolves when the SPDY session is over (the client went).
fn spdy_gone(session: &Session) -> super::backend::BoxFuture<'static, ()> {
    let session = session.clone();
    Box::pin(async move { session.closed().await })
}

/// Resolves when the WebSocket connection is over (the client went).
fn websocket_gone(conn: &websocket::Connection) -> super::backend::BoxFuture<'static, ()> {
    let conn = conn.clone();
    Box::pin(async move { conn.closed().await })
}

async fn serve_websocket<T>(
    ws: WebSocketStream<T>,
    protocol: websocket::Protocol,
    pending: Pending,
    attached: Option<Attached>,
    ports: Vec<u16>,
    inner: Arc<Inner>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let idle = Some(inner.config.idle_timeout);
    match pending {
        Pending::PortForward { sandbox_id, .. } => {
            let (conn, channels) = websocket::Connection::start(
                ws,
                protocol,
                &portforward::websocket_channels(&ports),
                idle,
            );
            if let Some(backend) = inner.backends.port_forward.clone() {
                portforward::serve_websocket(channels, ports, backend, sandbox_id).await;
            }
            conn.close().await;
        }
        Pending::Exec(spec) => {
            let opts = spec.stdio;
            let (conn, channels) = websocket::Connection::start(
                ws,
                protocol,
                &remotecommand::websocket_channels(opts),
                idle,
            );
            let mut streams = remotecommand::websocket_streams(channels, protocol, opts).await;
            streams.gone = Some(websocket_gone(&conn));
            if let Some(backend) = inner.backends.exec.clone() {
                let process = backend.exec(spec).await;
                remotecommand::run(streams, process, Mode::Exec).await;
            }
            conn.close().await;
        }
        Pending::Attach(spec) => {
            let opts = spec.stdio;
            let (conn, channels) = websocket::Connection::start(
                ws,
                protocol,
                &remotecommand::websocket_channels(opts),
                idle,
            );
            let mut streams = remotecommand::websocket_streams(channels, protocol, opts).await;
            streams.gone = Some(websocket_gone(&conn));
            if let Some(process) = attached {
                remotecommand::run(streams, process, Mode::Attach).await;
            }
            conn.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::backend::{BackendError, BoxFuture, Duplex, ProcessIo, StdioOptions};
    use crate::streaming::remotecommand::tests::{Sizes, read_all, sh};
    use crate::streaming::spdy::{Headers, Stream};
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    struct ShExec;
    impl ExecBackend for ShExec {
        fn exec(&self, spec: ExecSpec) -> BoxFuture<'_, Result<ProcessIo, BackendError>> {
            Box::pin(async move { sh(&spec.cmd.join(" "), spec.stdio, Sizes::default()) })
        }
    }

    /// Forwards to ports on the host's loopback, for pod "pod-1" only.
    struct Loopback;
    impl PortForwardBackend for Loopback {
        fn connect(
            &self,
            sandbox_id: &str,
            port: u16,
        ) -> BoxFuture<'_, Result<Box<dyn Duplex>, BackendError>> {
            let known = sandbox_id == "pod-1";
            Box::pin(async move {
                if !known {
                    return Err(BackendError::new("pod sandbox not found"));
                }
                let s = TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map_err(|e| BackendError::new(format!("connect to port {port}: {e}")))?;
                Ok(Box::new(s) as Box<dyn Duplex>)
            })
        }
    }

    async fn server(exec: bool, config: StreamingConfig) -> StreamingServer {
        let backends = Backends {
            exec: exec.then(|| Arc::new(ShExec) as Arc<dyn ExecBackend>),
            attach: None,
            port_forward: Some(Arc::new(Loopback)),
        };
        StreamingServer::start(config, backends).await.unwrap()
    }

    /// Sends an upgrade request for `url`; the status code, the response
    /// head, and the connection.
    async fn upgrade(url: &str, extra: &[(&str, &str)]) -> (u16, String, TcpStream) {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut tcp = TcpStream::connect(host).await.unwrap();
        let mut req = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            if tcp.read(&mut b).await.unwrap() == 0 {
                break;
            }
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        (code, head, tcp)
    }

    const SPDY_PF: &[(&str, &str)] = &[
        ("Connection", "Upgrade"),
        ("Upgrade", "SPDY/3.1"),
        ("X-Stream-Protocol-Version", "portforward.k8s.io"),
    ];

    #[tokio::test]
    async fn unknown_used_expired_and_mismatched_tokens_are_404() {
        let s = server(false, StreamingConfig::default()).await;
        let base = s.base_url().to_string();
        let (code, _, _) = upgrade(&format!("{base}/portforward/made-up"), SPDY_PF).await;
        assert_eq!(code, 404);
        let url = s.port_forward_url("pod-1", vec![]).unwrap();
        let (code, _, _) = upgrade(&url, SPDY_PF).await;
        assert_eq!(code, 101);
        let (code, _, _) = upgrade(&url, SPDY_PF).await;
        assert_eq!(code, 404, "a token is good once");
        // A port forward token on the exec path: refused, and spent.
        let url = s.port_forward_url("pod-1", vec![]).unwrap();
        let token = url.rsplit('/').next().unwrap();
        let (code, _, _) = upgrade(&format!("{base}/exec/{token}"), SPDY_PF).await;
        assert_eq!(code, 404);
        let (code, _, _) = upgrade(&url, SPDY_PF).await;
        assert_eq!(code, 404);
        let (code, _, _) = upgrade(&format!("{base}/other/{token}"), SPDY_PF).await;
        assert_eq!(code, 404);

        let expiring = server(
            false,
            StreamingConfig {
                token_ttl: Duration::ZERO,
                ..Default::default()
            },
        )
        .await;
        let url = expiring.port_forward_url("pod-1", vec![]).unwrap();
        let (code, _, _) = upgrade(&url, SPDY_PF).await;
        assert_eq!(code, 404, "an expired token");
    }

    #[tokio::test]
    async fn urls_only_for_what_is_served_and_protocols_are_negotiated() {
        let s = server(false, StreamingConfig::default()).await;
        let spec = ExecSpec {
            container_id: "c".into(),
            cmd: vec!["true".into()],
            stdio: StdioOptions::default(),
        };
        assert!(matches!(
            s.exec_url(spec),
            Err(UrlError::Unsupported("Exec"))
        ));
        let url = s.port_forward_url("pod-1", vec![]).unwrap();
        let (code, head, _) = upgrade(
            &url,
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "SPDY/3.1"),
                ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
            ],
        )
        .await;
        assert_eq!(code, 403, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("x-accepted-stream-protocol-versions: portforward.k8s.io"),
            "{head}"
        );
        let url = s.port_forward_url("pod-1", vec![]).unwrap();
        let (code, _, _) =
            upgrade(&url, &[("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]).await;
        assert_eq!(code, 400);
        let url = s.port_forward_url("pod-1", vec![]).unwrap();
        let (code, _, _) = upgrade(&url, &[]).await;
        assert_eq!(code, 400);
    }

    #[tokio::test]
    async fn exec_over_spdy_through_the_server() {
        let s = server(true, StreamingConfig::default()).await;
        let url = s
            .exec_url(ExecSpec {
                container_id: "c".into(),
                cmd: vec!["read line; echo got $line; exit 5".into()],
                stdio: StdioOptions {
                    stdin: true,
                    stdout: true,
                    stderr: false,
                    tty: false,
                },
            })
            .unwrap();
        let (code, head, tcp) = upgrade(
            &url,
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "SPDY/3.1"),
                ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
                ("X-Stream-Protocol-Version", "v3.channel.k8s.io"),
            ],
        )
        .await;
        assert_eq!(code, 101);
        assert!(head.contains("v4.channel.k8s.io"), "{head}");
        let (client, _ci) = Session::client(tcp, SessionConfig::default());
        let open = |t: &'static str| {
            let c = client.clone();
            async move { c.open(Headers::new().with("streamType", t)).await.unwrap() }
        };
        let mut error = open("error").await;
        let mut stdin = open("stdin").await;
        let mut stdout = open("stdout").await;
        stdin.send(b"hi\n").await.unwrap();
        stdin.finish().await.unwrap();
        assert_eq!(read_all(&mut stdout).await, b"got hi\n");
        let status: serde_json::Value =
            serde_json::from_slice(&read_all(&mut error).await).unwrap();
        assert_eq!(status["details"]["causes"][0]["message"], "5");
        client.closed().await;
    }

    /// A TCP server on the host that answers every connection with its
    /// port and what it read, upper-cased, then closes.
    async fn shouter() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut c, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    c.read_to_end(&mut data).await.unwrap();
                    let reply = format!("{port}:{}", String::from_utf8_lossy(&data).to_uppercase());
                    c.write_all(reply.as_bytes()).await.unwrap();
                });
            }
        });
        port
    }

    /// A TCP server on the host that greets every connection and closes.
    async fn greeter() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut c, _) = l.accept().await.unwrap();
                let _ = c.write_all(b"hello from the pod").await;
            }
        });
        port
    }

    async fn forward_once(
        session: &Session,
        request: u32,
        port: u16,
        body: &str,
    ) -> (String, String) {
        let headers = |t: &str| {
            Headers::new()
                .with("streamType", t)
                .with("port", &port.to_string())
                .with("requestID", &request.to_string())
        };
        let mut error: Stream = session.open(headers("error")).await.unwrap();
        error.finish().await.unwrap();
        let mut data = session.open(headers("data")).await.unwrap();
        data.send(body.as_bytes()).await.unwrap();
        data.finish().await.unwrap();
        let got = String::from_utf8(read_all(&mut data).await).unwrap();
        let err = String::from_utf8(read_all(&mut error).await).unwrap();
        (got, err)
    }

    #[tokio::test]
    async fn port_forward_over_spdy_many_connections_several_ports() {
        let s = server(false, StreamingConfig::default()).await;
        let (p1, p2) = (shouter().await, shouter().await);
        let url = s.port_forward_url("pod-1", vec![]).unwrap();
        let (code, _, tcp) = upgrade(&url, SPDY_PF).await;
        assert_eq!(code, 101);
        let (client, _ci) = Session::client(tcp, SessionConfig::default());
        let mut tasks = Vec::new();
        for i in 0..20u32 {
            let c = client.clone();
            let port = if i % 2 == 0 { p1 } else { p2 };
            tasks.push(tokio::spawn(async move {
                let (got, err) = forward_once(&c, i, port, &format!("request {i}")).await;
                assert_eq!(got, format!("{port}:REQUEST {i}"));
                assert_eq!(err, "");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // A closed port: the reason comes on the error stream.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (got, err) = forward_once(&client, 99, closed, "x").await;
        assert_eq!(got, "");
        assert!(
            err.contains(&format!("error forwarding port {closed} to pod pod-1")),
            "{err}"
        );
        // A stream without a port is refused, the session lives on.
        assert!(
            client
                .open(Headers::new().with("streamType", "data"))
                .await
                .is_err()
        );
        let (got, _) = forward_once(&client, 100, p1, "still").await;
        assert_eq!(got, format!("{p1}:STILL"));
        tokio::task::yield_now().await;
        client.close(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn port_forward_over_websocket() {
        let s = server(false, StreamingConfig::default()).await;
        let p1 = shouter().await;
        let url = s.port_forward_url("pod-1", vec![9]).unwrap();
        let ws_url = format!("{}?port={p1}", url.replacen("http://", "ws://", 1));
        let mut req = ws_url.as_str().into_client_request().unwrap();
        req.headers_mut().insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        let tcp = TcpStream::connect(s.local_addr()).await.unwrap();
        let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
        assert_eq!(
            resp.headers()
                .get(http::header::SEC_WEBSOCKET_PROTOCOL)
                .unwrap(),
            "v4.channel.k8s.io"
        );
        ws.send(Message::binary(b"\x00hello ws".to_vec()))
            .await
            .unwrap();
        let mut data = Vec::new();
        let mut error = Vec::new();
        // The shouter answers once we stop writing: it reads to EOF, which
        // a v4 channel cannot send; so read the port prefixes, then close.
        let mut prefixes = 0;
        while prefixes < 2 {
            let Message::Binary(b) = ws.next().await.unwrap().unwrap() else {
                continue;
            };
            assert_eq!(&b[1..], &p1.to_le_bytes());
            prefixes += 1;
        }
        ws.close(None).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                match b[0] {
                    0 => data.extend_from_slice(&b[1..]),
                    1 => error.extend_from_slice(&b[1..]),
                    _ => {}
                }
            }
        }
        assert!(error.is_empty());
        let _ = data;

        // The request's ports when the query names none; the pod closing
        // ends the session.
        let p3 = greeter().await;
        let url = s.port_forward_url("pod-1", vec![p3]).unwrap();
        let ws_url = url.replacen("http://", "ws://", 1);
        let tcp = TcpStream::connect(s.local_addr()).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(ws_url.as_str(), tcp)
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                seen.push(b.to_vec());
            }
        }
        assert_eq!(seen[0], [&[0u8][..], &p3.to_le_bytes()].concat());
        assert_eq!(seen[1], [&[1u8][..], &p3.to_le_bytes()].concat());
        assert_eq!(seen[2], b"\x00hello from the pod");
        assert_eq!(seen.len(), 3);
    }

    #[tokio::test]
    async fn tls_is_served_with_the_configured_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let openssl = |args: &[&str]| {
            let status = std::process::Command::new("openssl")
                .current_dir(dir.path())
                .args(args)
                .stderr(std::process::Stdio::null())
                .status()
                .expect("openssl (package openssl) is needed to make test certificates");
            assert!(status.success(), "openssl {args:?}");
        };
        // A CA, and a leaf for 127.0.0.1 signed by it.
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-days",
                    "1",
                    "-subj",
                    "/CN=crius-test-ca",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                    "key.pem",
                    "-out",
                    "leaf.csr",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            dir.path().join("ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext",
            "-out",
            "cert.pem",
        ]);
        let s = server(
            false,
            StreamingConfig {
                tls: Some(TlsFiles {
                    cert: cert.clone(),
                    key,
                }),
                ..Default::default()
            },
        )
        .await;
        assert!(s.base_url().starts_with("https://127.0.0.1:"));
        let url = s.port_forward_url("pod-1", vec![]).unwrap();
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in
            rustls::pki_types::CertificateDer::pem_file_iter(dir.path().join("ca.pem")).unwrap()
        {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(s.local_addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let path = url.split_once("127.0.0.1").unwrap().1;
        let path = &path[path.find('/').unwrap()..];
        tls.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = [0u8; 12];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 101");

        let bad = StreamingServer::start(
            StreamingConfig {
                tls: Some(TlsFiles {
                    cert: dir.path().join("missing.pem"),
                    key: dir.path().join("key.pem"),
                }),
                ..Default::default()
            },
            Backends::default(),
        )
        .await
        .unwrap_err();
        assert!(bad.to_string().contains("missing.pem"), "{bad}");
    }
}
