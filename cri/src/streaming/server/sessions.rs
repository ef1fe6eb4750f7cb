//! A session once upgraded: Exec, Attach or PortForward over SPDY or a
//! WebSocket, handed to its backend.

use std::sync::Arc;
use std::time::Duration;

use tokio_tungstenite::WebSocketStream;

use super::inner::{Inner, Pending};
use crate::streaming::backend::{BackendError, BoxFuture, ProcessIo};
use crate::streaming::remotecommand::{self, Mode};
use crate::streaming::spdy::{Incoming, Session};
use crate::streaming::{portforward, websocket};

/// How long a closing session waits for the client to hang up.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// An attach session joins the container's stdio before the upgrade is
/// answered, so that whatever the container writes once the client holds
/// the answer reaches the client.
pub(super) async fn attach_early(pending: &Pending, inner: &Inner) -> Option<Attached> {
    let Pending::Attach(spec) = pending else {
        return None;
    };
    let backend = inner.backends.attach.clone()?;
    Some(backend.attach(spec.clone()).await)
}

/// An attach joined early: the container's stdio, or why not.
pub(super) type Attached = Result<ProcessIo, BackendError>;

pub(super) async fn serve_spdy(
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
fn spdy_gone(session: &Session) -> BoxFuture<'static, ()> {
    let session = session.clone();
    Box::pin(async move { session.closed().await })
}

/// Resolves when the WebSocket connection is over (the client went).
fn websocket_gone(conn: &websocket::Connection) -> BoxFuture<'static, ()> {
    let conn = conn.clone();
    Box::pin(async move { conn.closed().await })
}

pub(super) async fn serve_websocket<T>(
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
