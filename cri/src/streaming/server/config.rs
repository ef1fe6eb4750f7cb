//! How the streaming server runs, what serves its sessions, its protocol
//! headers, and its errors.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::streaming::backend::{AttachBackend, ExecBackend, PortForwardBackend};
use crate::streaming::tokens::{self, TokenError};

/// The header that negotiates a SPDY stream protocol.
pub const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";
/// The header listing the protocols the server accepts, on refusal.
pub const ACCEPTED_PROTOCOLS_HEADER: &str = "X-Accepted-Stream-Protocol-Versions";
/// The `Upgrade` value of SPDY.
pub const SPDY_UPGRADE: &str = "SPDY/3.1";

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
            token_ttl: tokens::DEFAULT_TTL,
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
