//! A SPDY/3.1 session over one connection: streams opened by either side,
//! their data, half-closes and resets, PING replies, GOAWAY, and flow
//! control windows.
//!
//! One task reads frames, one writes them; streams are handles onto the
//! shared state. Flow control, as the kubelet's peers do it: spdystream
//! (kubectl, crictl, the API server) neither sends WINDOW_UPDATE nor
//! honours one, so the send windows are enforced only once the peer has
//! shown it does flow control (a WINDOW_UPDATE or an INITIAL_WINDOW_SIZE
//! setting); until then data flows as between kubelet and kubectl. On the
//! receiving side crius sends WINDOW_UPDATEs as data is consumed, and
//! bounds what one stream may buffer, and what all streams of the session
//! together may: past either the reading task waits, so a slow consumer
//! slows its sender through TCP rather than growing memory (without the
//! session bound, a peer could fill every one of its streams' buffers in
//! turn).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::frame::{
    Frame, FrameDecoder, FrameEncoder, Headers, MAX_STREAM_ID, goaway, rst, settings,
};

/// The window both ends start with (SPDY/3.1 default), per stream and for
/// the session.
pub const INITIAL_WINDOW: u32 = 64 * 1024;
/// The largest data frame crius sends.
pub const MAX_DATA_FRAME: usize = 32 * 1024;

/// How long queued frames may take to go out once the session is over.
const WRITE_GRACE: Duration = Duration::from_secs(5);

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
enum Role {
    Client,
    Server,
}

impl Role {
    /// Whether `id` (a stream or ping id) was chosen by this side.
    fn owns(self, id: u32) -> bool {
        match self {
            Role::Client => id % 2 == 1,
            Role::Server => id.is_multiple_of(2),
        }
    }
}

enum Out {
    Frame(Frame),
    /// Flush what is queued, end the connection's write side, and stop.
    Shutdown,
}

enum Inbound {
    /// Data, holding its place in the stream's and the session's buffers.
    Data(Bytes, Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>),
    Reset(u32),
}

struct Entry {
    /// Where the peer's data goes; `None` once the peer finished.
    inbound: Option<mpsc::UnboundedSender<Inbound>>,
    /// Bytes the stream may buffer unread.
    buffer: Arc<Semaphore>,
    send_window: i64,
    local_closed: bool,
    remote_closed: bool,
    /// For streams this side opened: the peer's SYN_REPLY or RST_STREAM.
    reply: Option<oneshot::Sender<Result<(), u32>>>,
}

struct State {
    streams: HashMap<u32, Entry>,
    next_id: u32,
    last_peer_id: u32,
    peer_going_away: bool,
    peer_flow_control: bool,
    session_send_window: i64,
    initial_send_window: i64,
}

struct Shared {
    role: Role,
    config: SessionConfig,
    out: mpsc::Sender<Out>,
    state: Mutex<State>,
    window: Notify,
    closed: CancellationToken,
    /// Bumped by the writer on every frame, for the idle timeout.
    written: AtomicU64,
    /// What all streams may hold unread.
    buffered: Arc<Semaphore>,
    /// Held from choosing a stream id to queueing its SYN_STREAM, so ids
    /// go out in increasing order.
    opening: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Updates are plain field writes: a panic elsewhere leaves the
        // state whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, frame: Frame) -> Result<(), StreamError> {
        self.out
            .send(Out::Frame(frame))
            .await
            .map_err(|_| StreamError::SessionClosed)
    }

    fn try_send(&self, frame: Frame) {
        let _ = self.out.try_send(Out::Frame(frame));
    }

    /// Drops a stream once both sides are done with it.
    fn forget_if_done(state: &mut State, id: u32) {
        if state
            .streams
            .get(&id)
            .is_some_and(|e| e.local_closed && e.remote_closed)
        {
            state.streams.remove(&id);
        }
    }
}

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

/// One stream: its headers, and both directions.
#[derive(Debug)]
pub struct Stream {
    headers: Headers,
    recv: RecvHalf,
    send: SendHalf,
}

impl Stream {
    fn new(
        id: u32,
        headers: Headers,
        shared: Arc<Shared>,
        rx: mpsc::UnboundedReceiver<Inbound>,
        buffer: Arc<Semaphore>,
    ) -> Stream {
        Stream {
            headers,
            recv: RecvHalf {
                id,
                shared: shared.clone(),
                rx,
                buffer,
                unacked: 0,
                reset: None,
            },
            send: SendHalf {
                id,
                shared,
                finished: false,
            },
        }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.send.id
    }

    /// The headers the opener sent.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Accepts a stream the peer opened (SYN_REPLY, no headers).
    pub async fn reply(&self) -> Result<(), StreamError> {
        self.send
            .shared
            .send(Frame::SynReply {
                stream_id: self.id(),
                fin: false,
                headers: Headers::new(),
            })
            .await
    }

    /// Refuses a stream the peer opened (RST_STREAM REFUSED_STREAM).
    pub async fn refuse(mut self) {
        let _ = self.send.reset(rst::REFUSED_STREAM).await;
    }

    /// The next data from the peer; `None` once it finished or reset.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.recv.recv().await
    }

    /// Sends data.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), StreamError> {
        self.send.send(data).await
    }

    /// Ends this side of the stream (an empty data frame with FIN).
    pub async fn finish(&mut self) -> Result<(), StreamError> {
        self.send.finish().await
    }

    /// Splits the stream so both directions can be used at once.
    pub fn split(self) -> (RecvHalf, SendHalf) {
        (self.recv, self.send)
    }
}

/// The receiving direction of a stream.
#[derive(Debug)]
pub struct RecvHalf {
    id: u32,
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Inbound>,
    buffer: Arc<Semaphore>,
    /// Bytes consumed since the last WINDOW_UPDATE.
    unacked: u32,
    reset: Option<u32>,
}

impl RecvHalf {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next data from the peer; `None` once it finished, reset the
    /// stream or the session ended.
    pub async fn recv(&mut self) -> Option<Bytes> {
        match self.rx.recv().await {
            Some(Inbound::Data(data, permit)) => {
                drop(permit);
                self.unacked = self.unacked.saturating_add(data.len() as u32);
                if self.unacked >= INITIAL_WINDOW / 2 {
                    let delta = std::mem::take(&mut self.unacked);
                    let _ = self
                        .shared
                        .send(Frame::WindowUpdate {
                            stream_id: self.id,
                            delta,
                        })
                        .await;
                }
                Some(data)
            }
            Some(Inbound::Reset(status)) => {
                self.reset = Some(status);
                None
            }
            None => None,
        }
    }

    /// The RST_STREAM status, if the peer reset the stream.
    pub fn reset_status(&self) -> Option<u32> {
        self.reset
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        // Data still arriving is dropped instead of waiting for room.
        self.buffer.close();
    }
}

/// The sending direction of a stream. Dropping it before
/// [`SendHalf::finish`] resets the stream.
#[derive(Debug)]
pub struct SendHalf {
    id: u32,
    shared: Arc<Shared>,
    finished: bool,
}

impl SendHalf {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends `data` in frames of at most [`MAX_DATA_FRAME`] bytes, within
    /// the peer's windows when it does flow control.
    pub async fn send(&mut self, mut data: &[u8]) -> Result<(), StreamError> {
        if self.finished {
            return Err(StreamError::Closed);
        }
        while !data.is_empty() {
            let n = self.reserve(data.len().min(MAX_DATA_FRAME)).await?;
            let (chunk, rest) = data.split_at(n);
            self.shared
                .send(Frame::Data {
                    stream_id: self.id,
                    fin: false,
                    data: Bytes::copy_from_slice(chunk),
                })
                .await?;
            data = rest;
        }
        Ok(())
    }

    /// Takes up to `want` bytes of window, waiting while there is none.
    async fn reserve(&self, want: usize) -> Result<usize, StreamError> {
        loop {
            let notified = self.shared.window.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.shared.state();
                if self.shared.closed.is_cancelled() {
                    return Err(StreamError::SessionClosed);
                }
                let enforce = st.peer_flow_control;
                let session = st.session_send_window;
                let Some(entry) = st.streams.get_mut(&self.id) else {
                    return Err(StreamError::Closed);
                };
                if entry.local_closed {
                    return Err(StreamError::Closed);
                }
                if !enforce {
                    return Ok(want);
                }
                let room = entry.send_window.min(session);
                if room > 0 {
                    let n = want.min(usize::try_from(room).unwrap_or(want));
                    entry.send_window -= n as i64;
                    st.session_send_window -= n as i64;
                    return Ok(n);
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = self.shared.closed.cancelled() => return Err(StreamError::SessionClosed),
            }
        }
    }

    /// Ends this side of the stream: an empty data frame with FIN.
    pub async fn finish(&mut self) -> Result<(), StreamError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        {
            let mut st = self.shared.state();
            match st.streams.get_mut(&self.id) {
                Some(e) if !e.local_closed => e.local_closed = true,
                _ => return Err(StreamError::Closed),
            }
            Shared::forget_if_done(&mut st, self.id);
        }
        self.shared
            .send(Frame::Data {
                stream_id: self.id,
                fin: true,
                data: Bytes::new(),
            })
            .await
    }

    /// Ends both directions of the stream with RST_STREAM `status`.
    pub async fn reset(&mut self, status: u32) -> Result<(), StreamError> {
        if !self.mark_reset() {
            return Ok(());
        }
        self.shared
            .send(Frame::RstStream {
                stream_id: self.id,
                status,
            })
            .await
    }

    /// Marks the stream reset here; false if it already was closed.
    fn mark_reset(&mut self) -> bool {
        if self.finished {
            return false;
        }
        self.finished = true;
        let mut st = self.shared.state();
        let Some(e) = st.streams.get_mut(&self.id) else {
            return false;
        };
        e.local_closed = true;
        e.remote_closed = true;
        e.inbound = None;
        st.streams.remove(&self.id);
        true
    }
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        if self.mark_reset() {
            self.shared.try_send(Frame::RstStream {
                stream_id: self.id,
                status: rst::CANCEL,
            });
        }
    }
}

async fn write_frames<W>(
    mut framed: FramedWrite<W, FrameEncoder>,
    mut rx: mpsc::Receiver<Out>,
    shared: Arc<Shared>,
) where
    W: AsyncWrite + Send + Unpin,
{
    let body = async {
        loop {
            let first = tokio::select! {
                biased;
                out = rx.recv() => out,
                _ = shared.closed.cancelled() => None,
            };
            let mut next = match first {
                Some(out) => Some(out),
                None => return Ok(()),
            };
            // Batch what is queued into one flush.
            while let Some(out) = next {
                match out {
                    Out::Frame(frame) => framed.feed(frame).await?,
                    Out::Shutdown => {
                        framed.flush().await?;
                        framed.get_mut().shutdown().await?;
                        return Ok(());
                    }
                }
                shared.written.fetch_add(1, Ordering::Relaxed);
                next = rx.try_recv().ok();
            }
            framed.flush().await?;
        }
    };
    // Once the session is over, what is queued gets a moment to go out
    // (a GOAWAY), not forever: the peer may have stopped reading.
    let result: Result<(), super::frame::FrameError> = tokio::select! {
        r = body => r,
        _ = async {
            shared.closed.cancelled().await;
            tokio::time::sleep(WRITE_GRACE).await;
        } => Ok(()),
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "SPDY session write ended");
        shared.closed.cancel();
    }
}

async fn read_frames<R>(
    mut framed: FramedRead<R, FrameDecoder>,
    incoming: mpsc::Sender<Stream>,
    shared: Arc<Shared>,
) where
    R: AsyncRead + Send + Unpin,
{
    let mut session_unacked: u32 = 0;
    let mut seen_writes = 0;
    loop {
        let next = async {
            match shared.config.idle_timeout {
                Some(idle) => tokio::time::timeout(idle, framed.next()).await.ok(),
                None => Some(framed.next().await),
            }
        };
        let frame = tokio::select! {
            f = next => f,
            _ = shared.closed.cancelled() => break,
        };
        let frame = match frame {
            None => {
                // Idle for a whole timeout on the read side; the session
                // is idle only if nothing was written either.
                let written = shared.written.load(Ordering::Relaxed);
                if written == seen_writes {
                    tracing::debug!("SPDY session idle; closing");
                    break;
                }
                seen_writes = written;
                continue;
            }
            Some(None) => break,
            Some(Some(Err(e))) => {
                tracing::debug!(error = %e, "SPDY session read ended");
                let last = shared.state().last_peer_id;
                let status = match e {
                    super::frame::FrameError::Io(_) => None,
                    _ => Some(goaway::PROTOCOL_ERROR),
                };
                if let Some(status) = status {
                    let _ = shared.out.try_send(Out::Frame(Frame::GoAway {
                        last_good_stream_id: last,
                        status,
                    }));
                    let _ = shared.out.try_send(Out::Shutdown);
                }
                break;
            }
            Some(Some(Ok(f))) => f,
        };
        if let Frame::Data { data, .. } = &frame {
            session_unacked = session_unacked.saturating_add(data.len() as u32);
            if session_unacked >= INITIAL_WINDOW / 2 {
                let delta = std::mem::take(&mut session_unacked);
                let _ = shared
                    .send(Frame::WindowUpdate {
                        stream_id: 0,
                        delta,
                    })
                    .await;
            }
        }
        if handle_frame(frame, &incoming, &shared).await.is_err() {
            break;
        }
    }
    shared.closed.cancel();
    // Every stream reads its end; every opener learns the session ended.
    let mut st = shared.state();
    st.streams.clear();
    shared.window.notify_waiters();
}

/// Acts on one frame from the peer. An error ends the session.
async fn handle_frame(
    frame: Frame,
    incoming: &mpsc::Sender<Stream>,
    shared: &Arc<Shared>,
) -> Result<(), ()> {
    match frame {
        Frame::Data {
            stream_id,
            fin,
            data,
        } => {
            let (tx, buffer) = {
                let st = shared.state();
                match st.streams.get(&stream_id) {
                    Some(e) if !e.remote_closed => (e.inbound.clone(), e.buffer.clone()),
                    // Data on a closed or unknown stream: dropped, as
                    // spdystream does.
                    _ => return Ok(()),
                }
            };
            if !data.is_empty()
                && let Some(tx) = &tx
            {
                let want = data.len().min(shared.config.stream_buffer) as u32;
                let session_want = data.len().min(shared.config.session_buffer.max(1)) as u32;
                // Waits while the stream's reader is behind; fails (and
                // the data is dropped) once the reader is gone. Then
                // waits while the session's streams together are.
                if let Ok(permit) = buffer.acquire_many_owned(want).await
                    && let Ok(session) = shared
                        .buffered
                        .clone()
                        .acquire_many_owned(session_want)
                        .await
                {
                    let _ = tx.send(Inbound::Data(data, Some((permit, session))));
                }
            }
            if fin {
                let mut st = shared.state();
                if let Some(e) = st.streams.get_mut(&stream_id) {
                    e.remote_closed = true;
                    e.inbound = None;
                }
                Shared::forget_if_done(&mut st, stream_id);
            }
        }
        Frame::SynStream {
            stream_id,
            fin,
            headers,
            ..
        } => {
            let (tx, rx) = mpsc::unbounded_channel();
            let buffer = Arc::new(Semaphore::new(shared.config.stream_buffer));
            let refuse = {
                let mut st = shared.state();
                if shared.role.owns(stream_id) || stream_id <= st.last_peer_id {
                    Some(rst::PROTOCOL_ERROR)
                } else if st.streams.len() >= shared.config.max_streams {
                    st.last_peer_id = stream_id;
                    Some(rst::REFUSED_STREAM)
                } else {
                    st.last_peer_id = stream_id;
                    let send_window = st.initial_send_window;
                    st.streams.insert(
                        stream_id,
                        Entry {
                            inbound: if fin { None } else { Some(tx) },
                            buffer: buffer.clone(),
                            send_window,
                            local_closed: false,
                            remote_closed: fin,
                            reply: None,
                        },
                    );
                    None
                }
            };
            if let Some(status) = refuse {
                let _ = shared.send(Frame::RstStream { stream_id, status }).await;
                return Ok(());
            }
            let stream = Stream::new(stream_id, headers, shared.clone(), rx, buffer);
            // Nobody accepting any more: the stream's drop resets it.
            let _ = incoming.send(stream).await;
        }
        Frame::SynReply { stream_id, fin, .. } => {
            let mut st = shared.state();
            if let Some(e) = st.streams.get_mut(&stream_id) {
                if let Some(reply) = e.reply.take() {
                    let _ = reply.send(Ok(()));
                }
                if fin {
                    e.remote_closed = true;
                    e.inbound = None;
                }
            }
            Shared::forget_if_done(&mut st, stream_id);
        }
        Frame::Headers { stream_id, fin, .. } => {
            if fin {
                let mut st = shared.state();
                if let Some(e) = st.streams.get_mut(&stream_id) {
                    e.remote_closed = true;
                    e.inbound = None;
                }
                Shared::forget_if_done(&mut st, stream_id);
            }
        }
        Frame::RstStream { stream_id, status } => {
            let mut st = shared.state();
            if let Some(mut e) = st.streams.remove(&stream_id) {
                if let Some(reply) = e.reply.take() {
                    let _ = reply.send(Err(status));
                }
                if let Some(tx) = e.inbound.take() {
                    let _ = tx.send(Inbound::Reset(status));
                }
            }
            drop(st);
            shared.window.notify_waiters();
        }
        Frame::Settings { entries, .. } => {
            let mut st = shared.state();
            for s in entries {
                if s.id == settings::INITIAL_WINDOW_SIZE {
                    let new = i64::from(s.value & MAX_STREAM_ID);
                    let delta = new - st.initial_send_window;
                    st.initial_send_window = new;
                    st.peer_flow_control = true;
                    for e in st.streams.values_mut() {
                        e.send_window += delta;
                    }
                }
            }
            drop(st);
            shared.window.notify_waiters();
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut st = shared.state();
            st.peer_flow_control = true;
            if stream_id == 0 {
                st.session_send_window += i64::from(delta);
            } else if let Some(e) = st.streams.get_mut(&stream_id) {
                e.send_window += i64::from(delta);
            }
            drop(st);
            shared.window.notify_waiters();
        }
        Frame::Ping { id } => {
            // Echo the peer's pings; ours coming back need nothing.
            if !shared.role.owns(id) {
                shared.send(Frame::Ping { id }).await.map_err(|_| ())?;
            }
        }
        Frame::GoAway { .. } => {
            shared.state().peer_going_away = true;
        }
        Frame::Unknown { frame_type } => {
            tracing::debug!(frame_type, "ignoring unknown SPDY control frame");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> ((Session, Incoming), (Session, Incoming)) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        (
            Session::client(a, SessionConfig::default()),
            Session::server(b, SessionConfig::default()),
        )
    }

    #[tokio::test]
    async fn streams_carry_data_both_ways_and_half_close() {
        let ((client, _ci), (_server, mut si)) = pair();
        let opener = tokio::spawn(async move {
            let mut s = client
                .open(Headers::new().with("streamtype", "data"))
                .await
                .unwrap();
            assert_eq!(s.id(), 1);
            s.send(b"ping").await.unwrap();
            s.finish().await.unwrap();
            let mut got = Vec::new();
            while let Some(d) = s.recv().await {
                got.extend_from_slice(&d);
            }
            (got, client)
        });
        let mut s = si.accept().await.unwrap();
        assert_eq!(s.headers().get("streamType"), Some("data"));
        s.reply().await.unwrap();
        let mut got = Vec::new();
        while let Some(d) = s.recv().await {
            got.extend_from_slice(&d);
        }
        assert_eq!(got, b"ping");
        s.send(b"pong").await.unwrap();
        s.finish().await.unwrap();
        let (echo, client) = opener.await.unwrap();
        assert_eq!(echo, b"pong");
        // Both sides finished: nothing left open.
        tokio::task::yield_now().await;
        assert_eq!(client.open_streams(), 0);
    }

    #[tokio::test]
    async fn a_refused_stream_fails_to_open() {
        let ((client, _ci), (_server, mut si)) = pair();
        let opener = tokio::spawn(async move { client.open(Headers::new()).await });
        si.accept().await.unwrap().refuse().await;
        assert_eq!(
            opener.await.unwrap().unwrap_err(),
            StreamError::Reset(rst::REFUSED_STREAM)
        );
    }

    #[tokio::test]
    async fn large_transfers_are_split_and_flow_controlled() {
        let ((client, _ci), (_server, mut si)) = pair();
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = payload.clone();
        let opener = tokio::spawn(async move {
            let mut s = client.open(Headers::new()).await.unwrap();
            s.send(&payload).await.unwrap();
            s.finish().await.unwrap();
            client
        });
        let mut s = si.accept().await.unwrap();
        s.reply().await.unwrap();
        let mut got = Vec::new();
        while let Some(d) = s.recv().await {
            assert!(d.len() <= MAX_DATA_FRAME);
            got.extend_from_slice(&d);
        }
        assert_eq!(got.len(), expected.len());
        assert!(got == expected);
        opener.await.unwrap();
    }

    #[tokio::test]
    async fn pings_are_echoed_and_goaway_ends_the_session() {
        let ((client, _ci), (server, mut si)) = pair();
        client.ping(1).await.unwrap();
        // The echo arrives on the client, which ignores its own pings;
        // then the server closes the session.
        server.close(Duration::from_secs(5)).await;
        assert!(si.accept().await.is_none());
        client.closed().await;
        assert!(matches!(
            client.open(Headers::new()).await,
            Err(StreamError::SessionClosed | StreamError::GoingAway)
        ));
    }

    #[tokio::test]
    async fn dropping_a_send_half_resets_the_stream() {
        let ((client, _ci), (_server, mut si)) = pair();
        let opener = tokio::spawn(async move {
            let s = client.open(Headers::new()).await.unwrap();
            let (mut r, w) = s.split();
            drop(w);
            (r.recv().await, client)
        });
        let s = si.accept().await.unwrap();
        s.reply().await.unwrap();
        let (mut r, _w) = s.split();
        assert_eq!(r.recv().await, None);
        assert_eq!(r.reset_status(), Some(rst::CANCEL));
        let (got, _client) = opener.await.unwrap();
        assert_eq!(got, None);
    }

    /// Window accounting against a peer that does flow control: the
    /// sender stops at the window and resumes on WINDOW_UPDATE.
    #[tokio::test]
    async fn send_windows_are_honoured_once_the_peer_does_flow_control() {
        use tokio::io::AsyncReadExt;
        let (a, mut raw) = tokio::io::duplex(1024 * 1024);
        let (server, _si) = Session::server(a, SessionConfig::default());
        let mut enc = FrameEncoder::new();
        let mut dec = FrameDecoder::new();
        let mut buf = bytes::BytesMut::new();
        use tokio_util::codec::{Decoder, Encoder};
        // The peer opens stream 1 and announces flow control with a
        // session WINDOW_UPDATE of 1 (session window 64 KiB + 1).
        for f in [
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                slot: 0,
                fin: false,
                unidirectional: false,
                headers: Headers::new(),
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 1,
            },
        ] {
            enc.encode(f, &mut buf).unwrap();
        }
        use tokio::io::AsyncWriteExt;
        raw.write_all(&buf).await.unwrap();
        buf.clear();
        let mut si = _si;
        let s = si.accept().await.unwrap();
        s.reply().await.unwrap();
        let (_r, mut w) = s.split();
        let sender = tokio::spawn(async move {
            w.send(&vec![1u8; 100_000]).await.unwrap();
            w
        });
        // Read until 64 KiB of data arrived; no more may come.
        let mut data = 0usize;
        let mut rbuf = bytes::BytesMut::new();
        while data < INITIAL_WINDOW as usize {
            let n = raw.read_buf(&mut rbuf).await.unwrap();
            assert!(n > 0);
            while let Some(f) = dec.decode(&mut rbuf).unwrap() {
                if let Frame::Data { data: d, .. } = f {
                    data += d.len();
                }
            }
        }
        assert_eq!(data, INITIAL_WINDOW as usize);
        tokio::task::yield_now().await;
        assert!(!sender.is_finished());
        assert_eq!(server.open_streams(), 1);
        // Open the stream and session windows: the rest flows.
        for stream_id in [1, 0] {
            enc.encode(
                Frame::WindowUpdate {
                    stream_id,
                    delta: 100_000,
                },
                &mut buf,
            )
            .unwrap();
        }
        raw.write_all(&buf).await.unwrap();
        while data < 100_000 {
            let n = raw.read_buf(&mut rbuf).await.unwrap();
            assert!(n > 0);
            while let Some(f) = dec.decode(&mut rbuf).unwrap() {
                if let Frame::Data { data: d, .. } = f {
                    data += d.len();
                }
            }
        }
        assert_eq!(data, 100_000);
        sender.await.unwrap();
    }

    #[tokio::test]
    async fn garbage_ends_the_session_with_goaway() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_util::codec::Decoder;
        let (a, mut raw) = tokio::io::duplex(1024);
        let (server, mut si) = Session::server(a, SessionConfig::default());
        raw.write_all(&[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 1, 0])
            .await
            .unwrap();
        assert!(si.accept().await.is_none());
        server.closed().await;
        let mut out = Vec::new();
        raw.read_to_end(&mut out).await.unwrap();
        let mut buf = bytes::BytesMut::from(&out[..]);
        let f = FrameDecoder::new().decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::GoAway {
                last_good_stream_id: 0,
                status: goaway::PROTOCOL_ERROR
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_closes() {
        let (a, _b) = tokio::io::duplex(1024);
        let (server, _si) = Session::server(
            a,
            SessionConfig {
                idle_timeout: Some(Duration::from_secs(60)),
                ..Default::default()
            },
        );
        server.closed().await;
        assert!(server.is_closed());
    }

    #[tokio::test]
    async fn what_all_streams_hold_unread_is_bounded() {
        const EACH: usize = 64 * 1024;
        let (a, b) = tokio::io::duplex(1024 * 1024);
        let (client, _ci) = Session::client(a, SessionConfig::default());
        let (server, mut si) = Session::server(
            b,
            SessionConfig {
                stream_buffer: EACH,
                session_buffer: 100 * 1024,
                ..Default::default()
            },
        );
        // Four streams opened, then sent as much as each one's own buffer
        // takes; the server reads none of it yet.
        let sender = tokio::spawn(async move {
            let mut streams = Vec::new();
            for _ in 0..4 {
                streams.push(client.open(Headers::new()).await.unwrap());
            }
            for s in &mut streams {
                s.send(&[7u8; EACH]).await.unwrap();
                s.finish().await.unwrap();
            }
            (client, streams)
        });
        let mut held = Vec::new();
        for _ in 0..4 {
            let s = si.accept().await.unwrap();
            s.reply().await.unwrap();
            held.push(s);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            server.buffered() <= 100 * 1024,
            "{} bytes held unread",
            server.buffered()
        );
        assert!(server.buffered() >= EACH, "{}", server.buffered());
        // Reading frees room: everything arrives in the end.
        let mut got = 0;
        for s in &mut held {
            while let Some(d) = s.recv().await {
                got += d.len();
            }
        }
        assert_eq!(got, 4 * EACH);
        assert_eq!(server.buffered(), 0);
        let _ = sender.await.unwrap();
    }

    #[tokio::test]
    async fn streams_past_the_limit_are_refused() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (client, _ci) = Session::client(a, SessionConfig::default());
        let (_server, mut si) = Session::server(
            b,
            SessionConfig {
                max_streams: 1,
                ..Default::default()
            },
        );
        let c2 = client.clone();
        let first = tokio::spawn(async move { c2.open(Headers::new()).await });
        let s = si.accept().await.unwrap();
        s.reply().await.unwrap();
        let _first = first.await.unwrap().unwrap();
        assert_eq!(
            client.open(Headers::new()).await.unwrap_err(),
            StreamError::Reset(rst::REFUSED_STREAM)
        );
        drop(s);
    }
}
