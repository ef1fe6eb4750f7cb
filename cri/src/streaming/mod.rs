//! The streaming server: Exec, Attach and PortForward hand out a URL on
//! it, and the client (kubelet's proxy, kubectl, crictl) upgrades an HTTP
//! request on that URL to SPDY/3.1 or WebSocket and streams over it.

pub mod backend;
pub mod channel;
pub mod portforward;
pub mod remotecommand;
pub mod server;
pub mod spdy;
pub mod tokens;
pub mod websocket;

pub use backend::{
    AttachBackend, AttachSpec, BackendError, ExecBackend, ExecSpec, PortForwardBackend, ProcessIo,
    StdioOptions, TerminalSize,
};
pub use server::{Backends, StreamingConfig, StreamingServer, TlsFiles, UrlError};
