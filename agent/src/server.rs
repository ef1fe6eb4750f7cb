//! The CRI socket: bind it (0660), serve both CRI services on it within
//! the `[grpc]` limits, and stop gracefully on SIGTERM/SIGINT.
//!
//! What one client can make the daemon hold is bounded: connections (past
//! the cap the connection idle the longest gives way, or when none has
//! been idle long enough the new one is closed at once: [`crate::places`]),
//! streams per connection (HTTP/2
//! SETTINGS_MAX_CONCURRENT_STREAMS: a client waits for a free one), flow
//! control windows, frame and header list sizes, message sizes, the bytes
//! of a connection's unfinished requests ([`crate::budget`]), and resets a
//! client provokes. A connection must send the HTTP/2 preface within the
//! handshake timeout, and one that stops answering pings is closed. Any
//! `:authority` is accepted ([`crate::authority`]).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crius_cri::streaming::StreamingServer;
use crius_cri::{CriService, MessageLimits};
use crius_runtime::Runtime;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::Connected;

use crate::authority::AnyAuthority;
use crate::budget::{ConnectionBudget, RequestBudgetLayer};
use crate::deadline::DeadlineLayer;
use crate::metrics::{GrpcMetricsLayer, Metrics};
use crate::places::{Activity, CallsLayer, Place, Places, Taken};

/// How long in-flight calls may run on after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a connection must be quiet, once a stop began, to be closed
/// rather than waited for: a responsive client closes on the server's
/// GOAWAY well within it.
const STOP_QUIET: Duration = Duration::from_secs(1);
/// How often the drain looks for connections that went quiet.
const STOP_POLL: Duration = Duration::from_millis(200);
/// Per-stream and per-connection HTTP/2 receive windows: what a client may
/// send ahead of the server reading it (hyper's defaults, set here so that
/// they stay the bound the docs state).
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 1 << 20;
/// The largest HTTP/2 frame a client may send (the protocol's minimum).
const MAX_FRAME: u32 = 16 * 1024;
/// The largest header list (gRPC metadata) of a call; kubelet's are a few
/// hundred bytes.
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Streams a client may make the server reset (malformed frames, bad
/// requests) before its connection is closed: provoked resets cost the
/// server as much as a flood of the client's own. hyper's default; tonic's
/// builder passes None unless told, which lifts the cap.
const MAX_LOCAL_RESETS: usize = 1024;
/// The preface and the first frame's header: what a client must have sent
/// within the handshake timeout.
const HANDSHAKE_BYTES: u64 = 24 + 9;
/// What a connection's unfinished requests may hold beyond the largest
/// request: its gRPC framing and a frame or two.
const BUDGET_SLACK: usize = 64 * 1024;

/// The `[grpc]` limits of the CRI socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Connections at once; past it, one idle at least `yield_after_idle`
    /// gives way to a new one, or the new one is closed as it comes.
    pub max_connections: usize,
    /// How long a connection must have had no call under way to give its
    /// place to a new one at the cap.
    pub yield_after_idle: Duration,
    /// Calls one connection may have under way at once.
    pub max_concurrent_streams: u32,
    /// The largest messages taken and sent.
    pub messages: MessageLimits,
    /// A connection quiet this long is pinged.
    pub keepalive_interval: Duration,
    /// A ping unanswered this long closes the connection.
    pub keepalive_timeout: Duration,
    /// A new connection must have begun HTTP/2 within this.
    pub handshake_timeout: Duration,
}

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process already serves the socket.
    #[error("{0} is in use: another crius is serving it")]
    InUse(String),
    /// Binding or serving failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The socket path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("serving CRI: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What each request learns of its connection: tonic puts it in the
/// request's extensions, where the budget and call-counting layers find
/// their part of it.
#[derive(Debug, Clone)]
pub struct CriConnectInfo {
    /// The connection's request budget.
    budget: ConnectionBudget,
    /// Its calls under way, for its place under the cap.
    activity: Arc<Activity>,
}

impl CriConnectInfo {
    fn budget_of(ext: &http::Extensions) -> Option<ConnectionBudget> {
        ext.get::<Self>().map(|info| info.budget.clone())
    }

    fn activity_of(ext: &http::Extensions) -> Option<Arc<Activity>> {
        ext.get::<Self>().map(|info| Arc::clone(&info.activity))
    }
}

/// One accepted connection: holds its place under the connection cap
/// until it ends or gives the place away, closes itself if the client does
/// not begin HTTP/2 in time, and lets the client name any `:authority`.
#[derive(Debug)]
struct CriConnection {
    io: AnyAuthority<UnixStream>,
    /// Until the client sent [`HANDSHAKE_BYTES`].
    handshake: Option<Pin<Box<tokio::time::Sleep>>>,
    read: u64,
    budget: ConnectionBudget,
    place: Place,
}

impl CriConnection {
    fn new(stream: UnixStream, place: Place, limits: &GrpcLimits) -> Self {
        CriConnection {
            io: AnyAuthority::new(stream),
            handshake: Some(Box::pin(tokio::time::sleep(limits.handshake_timeout))),
            read: 0,
            budget: ConnectionBudget::new(limits.messages.max_request.saturating_add(BUDGET_SLACK)),
            place,
        }
    }
}

impl Connected for CriConnection {
    type ConnectInfo = CriConnectInfo;

    fn connect_info(&self) -> CriConnectInfo {
        CriConnectInfo {
            budget: self.budget.clone(),
            activity: Arc::clone(self.place.activity()),
        }
    }
}

impl AsyncRead for CriConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.place.activity().poll_closing(cx) {
            // It gave its place to a newer connection: the end of the
            // stream closes it (the client dials again for its next call).
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        this.read += (buf.filled().len() - before) as u64;
        if let Some(deadline) = &mut this.handshake {
            if this.read >= HANDSHAKE_BYTES {
                this.handshake = None;
            } else if polled.is_pending() && deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no HTTP/2 preface within the handshake timeout",
                )));
            }
        }
        polled
    }
}

impl AsyncWrite for CriConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Counts connections closed for the cap, or that gave way at it, for a
/// log line at most once every [`CAP_LOG_EVERY`].
#[derive(Debug, Default)]
struct Tally {
    since_log: AtomicU64,
    last_log: std::sync::Mutex<Option<Instant>>,
}

/// How often the cap's refusals and yields are logged, at most.
const CAP_LOG_EVERY: Duration = Duration::from_secs(10);

impl Tally {
    /// Counts one; the count to log now, if a line is due.
    fn count(&self) -> Option<u64> {
        let n = self.since_log.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < CAP_LOG_EVERY) {
            return None;
        }
        *last = Some(Instant::now());
        self.since_log.fetch_sub(n, Ordering::Relaxed);
        Some(n)
    }
}

/// The accepted connections, each holding a place under the cap; past it
/// the connection idle the longest gives way, or the new one is closed at
/// once (the client sees its connection end).
fn connections(
    listener: UnixListener,
    limits: GrpcLimits,
    places: Arc<Places>,
) -> impl futures_util::Stream<Item = std::io::Result<CriConnection>> {
    let refused = Arc::new(Tally::default());
    let gave_way = Arc::new(Tally::default());
    UnixListenerStream::new(listener).filter_map(move |accepted| {
        let (places, refused, gave_way) = (places.clone(), refused.clone(), gave_way.clone());
        async move {
            let stream = match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "CRI socket accept");
                    // Out of file descriptors: give others a moment.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return None;
                }
            };
            match places.take(Instant::now()) {
                Taken::Free(place) => Some(Ok(CriConnection::new(stream, place, &limits))),
                Taken::GaveWay(place) => {
                    if let Some(n) = gave_way.count() {
                        tracing::info!(
                            closed = n,
                            max_connections = limits.max_connections,
                            yield_after_idle_secs = limits.yield_after_idle.as_secs(),
                            "CRI socket at its connection cap; closed the connection idle the longest for a new one"
                        );
                    }
                    Some(Ok(CriConnection::new(stream, place, &limits)))
                }
                Taken::Refused => {
                    if let Some(n) = refused.count() {
                        tracing::warn!(
                            refused = n,
                            max_connections = limits.max_connections,
                            yield_after_idle_secs = limits.yield_after_idle.as_secs(),
                            "CRI socket at its connection cap, every connection busy or idle only briefly; closing new connections"
                        );
                    }
                    None
                }
            }
        }
    })
}

/// Binds the socket, replacing a stale one a crash left behind but never a
/// live one.
async fn bind(path: &Path) -> Result<UnixListener, ServeError> {
    let shown = path.display().to_string();
    let io = |what: &'static str| {
        let shown = shown.clone();
        move |source| ServeError::Io {
            what,
            path: shown,
            source,
        }
    };
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ServeError::InUse(shown));
        }
        std::fs::remove_file(path).map_err(io("remove stale socket"))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create directory of socket"))?;
    }
    let listener = UnixListener::bind(path).map_err(io("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io("set mode of"))?;
    Ok(listener)
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for stop signals; stop crius with SIGKILL");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(
        signal = name,
        "stopping: no new calls, finishing those in flight"
    );
}

/// While the server drains: from [`STOP_QUIET`] after the stop began,
/// closes each connection that has had no call under way for
/// [`STOP_QUIET`]. A client that left its connection open without
/// answering the server's goodbye (a stalled or frozen process) then does
/// not hold the stop for the whole grace, while a call under way still
/// gets all of it.
async fn close_idle_connections(places: &Places) -> std::convert::Infallible {
    tokio::time::sleep(STOP_QUIET).await;
    loop {
        let closed = places.close_idle(Instant::now(), STOP_QUIET);
        if closed > 0 {
            tracing::debug!(
                closed,
                "stopping: closed connections with no call under way"
            );
        }
        tokio::time::sleep(STOP_POLL).await;
    }
}

/// Serves CRI on `socket` (with `streaming` handing out Exec, Attach and
/// PortForward URLs) until a stop signal; in-flight calls get
/// [`SHUTDOWN_GRACE`] to finish. Containers keep running: their monitors
/// do not depend on the daemon.
pub async fn serve(
    socket: &Path,
    limits: GrpcLimits,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    streaming: StreamingServer,
    effective_config: serde_json::Value,
) -> Result<(), ServeError> {
    let listener = bind(socket).await?;
    tracing::info!(socket = %socket.display(), ?limits, "serving CRI");
    let events = Arc::clone(&runtime);
    let cri = CriService::new(runtime)
        .with_effective_config(effective_config)
        .with_streaming(streaming)
        .with_message_limits(limits.messages);
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let places = Arc::new(Places::new(limits.max_connections, limits.yield_after_idle));
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .http2_max_header_list_size(MAX_HEADER_LIST)
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_RESETS))
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .layer(GrpcMetricsLayer::new(metrics))
        .layer(DeadlineLayer)
        .layer(RequestBudgetLayer::new(CriConnectInfo::budget_of))
        .layer(CallsLayer::new(CriConnectInfo::activity_of))
        .add_service(cri.runtime_server())
        .add_service(cri.image_server())
        .serve_with_incoming_shutdown(connections(listener, limits, places.clone()), async move {
            stop_signal().await;
            // Event streams never end by themselves.
            events.close_events();
            let _ = stopping_tx.send(());
        });
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r.map_err(ServeError::from),
        _ = async {
            let _ = stopping_rx.await;
            tokio::select! {
                _ = close_idle_connections(&places) => {}
                _ = tokio::time::sleep(SHUTDOWN_GRACE) => {}
            }
        } => {
            tracing::warn!("calls still in flight after {}s; exiting anyway", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
    };
    let _ = std::fs::remove_file(socket);
    result
}
