//! One logical stream of a streaming session, whichever transport carries
//! it: a SPDY stream or a WebSocket channel. The protocols (remote
//! command, port forward) are written once against these.

use bytes::Bytes;

use super::spdy::{RecvHalf, SendHalf};
use super::websocket::{ChannelReader, ChannelWriter};

/// Bytes from the client.
#[derive(Debug)]
pub enum Reader {
    /// A SPDY stream.
    Spdy(RecvHalf),
    /// A WebSocket channel.
    Ws(ChannelReader),
}

impl Reader {
    /// The next data; `None` at the client's end of stream.
    pub async fn recv(&mut self) -> Option<Bytes> {
        match self {
            Reader::Spdy(r) => r.recv().await,
            Reader::Ws(r) => r.recv().await,
        }
    }
}

/// Bytes to the client.
#[derive(Debug)]
pub enum Writer {
    /// A SPDY stream.
    Spdy(SendHalf),
    /// A WebSocket channel.
    Ws(ChannelWriter),
}

/// The client is gone, or reset the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client closed the stream")]
pub struct Gone;

impl Writer {
    /// Sends `data`.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), Gone> {
        match self {
            Writer::Spdy(w) => w.send(data).await.map_err(|_| Gone),
            Writer::Ws(w) => w.send(data).await.map_err(|_| Gone),
        }
    }

    /// Ends the stream (SPDY: FIN; a WebSocket channel has no end of its
    /// own and ends with the connection).
    pub async fn finish(&mut self) {
        if let Writer::Spdy(w) = self {
            let _ = w.finish().await;
        }
    }
}
