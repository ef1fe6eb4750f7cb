//! The CRI socket: bind it (0660), serve both CRI services on it, and stop
//! gracefully on SIGTERM/SIGINT.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crius_cri::CriService;
use crius_cri::streaming::StreamingServer;
use crius_runtime::Runtime;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;

use crate::metrics::{GrpcMetricsLayer, Metrics};

/// How long in-flight calls may run on after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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

/// Serves CRI on `socket` (with `streaming` handing out Exec, Attach and
/// PortForward URLs) until a stop signal; in-flight calls get
/// [`SHUTDOWN_GRACE`] to finish. Containers keep running: their monitors
/// do not depend on the daemon.
pub async fn serve(
    socket: &Path,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    streaming: StreamingServer,
) -> Result<(), ServeError> {
    let listener = bind(socket).await?;
    tracing::info!(socket = %socket.display(), "serving CRI");
    let events = Arc::clone(&runtime);
    let cri = CriService::new(runtime).with_streaming(streaming);
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .layer(GrpcMetricsLayer::new(metrics))
        .add_service(cri.runtime_server())
        .add_service(cri.image_server())
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
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
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("calls still in flight after {}s; exiting anyway", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
    };
    let _ = std::fs::remove_file(socket);
    result
}
