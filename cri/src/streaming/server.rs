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

mod accept;
mod config;
mod inner;
mod route;
mod sessions;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::streaming::backend::{AttachSpec, ExecSpec};
use crate::streaming::tokens::{MAX_IN_FLIGHT, TokenCache};
use accept::{accept_loop, tls_acceptor};
pub use config::{
    ACCEPTED_PROTOCOLS_HEADER, Backends, PROTOCOL_HEADER, SPDY_UPGRADE, ServerError,
    StreamingConfig, TlsFiles, UrlError,
};
use inner::{Inner, Pending};

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
        let listener = crate::listen::bind_tcp(config.addr, "streaming")
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
