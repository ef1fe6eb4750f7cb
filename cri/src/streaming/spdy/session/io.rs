//! The session's two tasks: one writes queued frames, one reads the peer's
//! and acts on each.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::super::frame::{
    Frame, FrameDecoder, FrameEncoder, FrameError, MAX_STREAM_ID, goaway, rst, settings,
};
use super::shared::{Entry, INITIAL_WINDOW, Inbound, Out, Shared};
use super::stream::Stream;

/// How long queued frames may take to go out once the session is over.
const WRITE_GRACE: Duration = Duration::from_secs(5);

pub(super) async fn write_frames<W>(
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
    let result: Result<(), FrameError> = tokio::select! {
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

pub(super) async fn read_frames<R>(
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
                    FrameError::Io(_) => None,
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
