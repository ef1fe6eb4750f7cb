//! The session handle: starting a session over a connection, opening
//! streams, and closing it.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::super::frame::{Frame, FrameDecoder, FrameEncoder, Headers, MAX_STREAM_ID, goaway};
use super::io::{read_frames, write_frames};
use super::shared::{Entry, INITIAL_WINDOW, Out, Role, SessionConfig, Shared, State, StreamError};
use super::stream::Stream;

/// A SPDY session: opens streams and closes the session. Cheap to clone.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.shared.role)
            .finish_non_exhaustive()
    }
}

/// The streams the peer opens, in order.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<Stream>,
}

impl Incoming {
    /// The next stream the peer opened; `None` once the session is over.
    /// The stream must be answered with [`Stream::reply`] or
    /// [`Stream::refuse`].
    pub async fn accept(&mut self) -> Option<Stream> {
        self.rx.recv().await
    }
}

impl Session {
    /// The server end of a session over `io` (streams it opens are even).
    pub fn server<T>(io: T, config: SessionConfig) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::start(io, config, Role::Server)
    }

    /// The client end of a session over `io` (streams it opens are odd).
    pub fn client<T>(io: T, config: SessionConfig) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::start(io, config, Role::Client)
    }

    fn start<T>(io: T, config: SessionConfig, role: Role) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let session_buffer = config.session_buffer.clamp(1, Semaphore::MAX_PERMITS);
        let (out_tx, out_rx) = mpsc::channel(256);
        let (in_tx, in_rx) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            role,
            config,
            out: out_tx,
            state: Mutex::new(State {
                streams: HashMap::new(),
                next_id: if role == Role::Client { 1 } else { 2 },
                last_peer_id: 0,
                peer_going_away: false,
                peer_flow_control: false,
                session_send_window: i64::from(INITIAL_WINDOW),
                initial_send_window: i64::from(INITIAL_WINDOW),
            }),
            window: Notify::new(),
            closed: CancellationToken::new(),
            written: AtomicU64::new(0),
            buffered: Arc::new(Semaphore::new(session_buffer)),
            opening: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(write_frames(
            FramedWrite::new(write, FrameEncoder::new()),
            out_rx,
            shared.clone(),
        ));
        tokio::spawn(read_frames(
            FramedRead::new(read, FrameDecoder::new()),
            in_tx,
            shared.clone(),
        ));
        (Session { shared }, Incoming { rx: in_rx })
    }

    /// Opens a stream with `headers` and waits for the peer's SYN_REPLY.
    pub async fn open(&self, headers: Headers) -> Result<Stream, StreamError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let buffer = Arc::new(Semaphore::new(self.shared.config.stream_buffer));
        let opening = self.shared.opening.lock().await;
        let id = {
            let mut st = self.shared.state();
            if self.shared.closed.is_cancelled() {
                return Err(StreamError::SessionClosed);
            }
            if st.peer_going_away {
                return Err(StreamError::GoingAway);
            }
            let id = st.next_id;
            if id > MAX_STREAM_ID {
                return Err(StreamError::Exhausted);
            }
            st.next_id += 2;
            let send_window = st.initial_send_window;
            st.streams.insert(
                id,
                Entry {
                    inbound: Some(tx),
                    buffer: buffer.clone(),
                    send_window,
                    local_closed: false,
                    remote_closed: false,
                    reply: Some(reply_tx),
                },
            );
            id
        };
        let syn = Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: headers.clone(),
        };
        self.shared.send(syn).await?;
        drop(opening);
        let stream = Stream::new(id, headers, self.shared.clone(), rx, buffer);
        match reply_rx.await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(status)) => Err(StreamError::Reset(status)),
            Err(_) => Err(StreamError::SessionClosed),
        }
    }

    /// Ends the session: sends GOAWAY, flushes, and closes the write side
    /// of the connection. The session is over once the peer closes its
    /// side too (or after `grace`).
    pub async fn close(&self, grace: Duration) {
        let last = self.shared.state().last_peer_id;
        let _ = self
            .shared
            .send(Frame::GoAway {
                last_good_stream_id: last,
                status: goaway::OK,
            })
            .await;
        let _ = self.shared.out.send(Out::Shutdown).await;
        if tokio::time::timeout(grace, self.shared.closed.cancelled())
            .await
            .is_err()
        {
            self.shared.closed.cancel();
        }
    }

    /// Ends the session now, without a GOAWAY.
    pub fn abort(&self) {
        self.shared.closed.cancel();
    }

    /// Resolves when the session is over.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Sends a PING (the peer echoes it; crius does not wait for that).
    pub async fn ping(&self, id: u32) -> Result<(), StreamError> {
        self.shared.send(Frame::Ping { id }).await
    }

    /// How many streams are open (not yet closed by both sides).
    pub fn open_streams(&self) -> usize {
        self.shared.state().streams.len()
    }

    /// Bytes from the peer its streams hold unread.
    pub fn buffered(&self) -> usize {
        self.shared
            .config
            .session_buffer
            .clamp(1, Semaphore::MAX_PERMITS)
            .saturating_sub(self.shared.buffered.available_permits())
    }
}
