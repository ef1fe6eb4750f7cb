//! One stream's handles: receiving (with WINDOW_UPDATEs as data is
//! consumed) and sending (within the peer's windows once it does flow
//! control), half-close and reset.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};

use super::super::frame::{Frame, Headers, rst};
use super::shared::{INITIAL_WINDOW, Inbound, MAX_DATA_FRAME, Shared, StreamError};

/// One stream: its headers, and both directions.
#[derive(Debug)]
pub struct Stream {
    headers: Headers,
    recv: RecvHalf,
    send: SendHalf,
}

impl Stream {
    pub(super) fn new(
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
