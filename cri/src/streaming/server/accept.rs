//! Accepting connections: TLS, the connection cap, and the HTTP/1.1
//! connection with its header timeout and upgrades.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::config::{ServerError, TlsFiles};
use super::inner::Inner;
use super::route::handle;

pub(super) fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
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

pub(super) async fn accept_loop(
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
