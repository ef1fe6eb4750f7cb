//! What a session's tasks and handles share: its limits, its errors, and
//! the table of its streams with their windows and buffers.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::super::frame::Frame;

/// The window both ends start with (SPDY/3.1 default), per stream and for
/// the session.
pub const INITIAL_WINDOW: u32 = 64 * 1024;
/// The largest data frame crius sends.
pub const MAX_DATA_FRAME: usize = 32 * 1024;

/// Session limits.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Close the session after this long without a frame either way.
    pub idle_timeout: Option<Duration>,
    /// Streams the peer may have open at once; more are refused.
    pub max_streams: usize,
    /// Bytes one stream may hold unread before reading the connection
    /// waits.
    pub stream_buffer: usize,
    /// Bytes all streams together may hold unread before reading the
    /// connection waits.
    pub session_buffer: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_timeout: None,
            max_streams: 1000,
            stream_buffer: 1024 * 1024,
            session_buffer: 16 * 1024 * 1024,
        }
    }
}

/// Why a stream operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The peer reset the stream (RST_STREAM with this status).
    #[error("stream reset by peer (status {0})")]
    Reset(u32),
    /// The stream was already finished or reset on this side.
    #[error("stream already closed")]
    Closed,
    /// The session is over.
    #[error("SPDY session closed")]
    SessionClosed,
    /// The peer sent GOAWAY: no new streams.
    #[error("peer sent GOAWAY")]
    GoingAway,
    /// No stream ids are left.
    #[error("no stream ids left")]
    Exhausted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Client,
    Server,
}

impl Role {
    /// Whether `id` (a stream or ping id) was chosen by this side.
    pub(super) fn owns(self, id: u32) -> bool {
        match self {
            Role::Client => id % 2 == 1,
            Role::Server => id.is_multiple_of(2),
        }
    }
}

pub(super) enum Out {
    Frame(Frame),
    /// Flush what is queued, end the connection's write side, and stop.
    Shutdown,
}

pub(super) enum Inbound {
    /// Data, holding its place in the stream's and the session's buffers.
    Data(Bytes, Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>),
    Reset(u32),
}

pub(super) struct Entry {
    /// Where the peer's data goes; `None` once the peer finished.
    pub(super) inbound: Option<mpsc::UnboundedSender<Inbound>>,
    /// Bytes the stream may buffer unread.
    pub(super) buffer: Arc<Semaphore>,
    pub(super) send_window: i64,
    pub(super) local_closed: bool,
    pub(super) remote_closed: bool,
    /// For streams this side opened: the peer's SYN_REPLY or RST_STREAM.
    pub(super) reply: Option<oneshot::Sender<Result<(), u32>>>,
}

pub(super) struct State {
    pub(super) streams: HashMap<u32, Entry>,
    pub(super) next_id: u32,
    pub(super) last_peer_id: u32,
    pub(super) peer_going_away: bool,
    pub(super) peer_flow_control: bool,
    pub(super) session_send_window: i64,
    pub(super) initial_send_window: i64,
}

pub(super) struct Shared {
    pub(super) role: Role,
    pub(super) config: SessionConfig,
    pub(super) out: mpsc::Sender<Out>,
    pub(super) state: Mutex<State>,
    pub(super) window: Notify,
    pub(super) closed: CancellationToken,
    /// Bumped by the writer on every frame, for the idle timeout.
    pub(super) written: AtomicU64,
    /// What all streams may hold unread.
    pub(super) buffered: Arc<Semaphore>,
    /// Held from choosing a stream id to queueing its SYN_STREAM, so ids
    /// go out in increasing order.
    pub(super) opening: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // Updates are plain field writes: a panic elsewhere leaves the
        // state whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn send(&self, frame: Frame) -> Result<(), StreamError> {
        self.out
            .send(Out::Frame(frame))
            .await
            .map_err(|_| StreamError::SessionClosed)
    }

    pub(super) fn try_send(&self, frame: Frame) {
        let _ = self.out.try_send(Out::Frame(frame));
    }

    /// Drops a stream once both sides are done with it.
    pub(super) fn forget_if_done(state: &mut State, id: u32) {
        if state
            .streams
            .get(&id)
            .is_some_and(|e| e.local_closed && e.remote_closed)
        {
            state.streams.remove(&id);
        }
    }
}
