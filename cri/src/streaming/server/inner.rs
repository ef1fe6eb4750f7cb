//! What the server's tasks share: its config, backends, and the
//! requests waiting behind their tokens.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use super::config::{Backends, StreamingConfig};
use crate::streaming::backend::{AttachSpec, ExecSpec};
use crate::streaming::tokens::TokenCache;

/// A request waiting for its client.
#[derive(Debug, Clone)]
pub(super) enum Pending {
    Exec(ExecSpec),
    Attach(AttachSpec),
    PortForward { sandbox_id: String, ports: Vec<u16> },
}

impl Pending {
    pub(super) fn path(&self) -> &'static str {
        match self {
            Pending::Exec(_) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward { .. } => "portforward",
        }
    }
}

/// What the server's tasks share.
pub(super) struct Inner {
    pub(super) config: StreamingConfig,
    pub(super) base_url: String,
    pub(super) local_addr: SocketAddr,
    pub(super) tokens: TokenCache<Pending>,
    pub(super) backends: Backends,
    pub(super) stop: CancellationToken,
}
