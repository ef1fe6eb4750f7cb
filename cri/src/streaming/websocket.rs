//! WebSocket transport: Kubernetes' channel protocols over one WebSocket
//! (tokio-tungstenite over the upgraded HTTP connection).
//!
//! Every message starts with a channel number: a byte (`channel.k8s.io`,
//! `v4.channel.k8s.io`, `v5.channel.k8s.io`), or an ASCII digit followed
//! by base64 of the data (`base64.channel.k8s.io`, `v4.base64…`). Under
//! `v5.channel.k8s.io` the message `[255, n]` from the client half-closes
//! channel `n` (its stdin EOF). Messages for channels that do not exist,
//! or cannot be read, are dropped, as the kubelet does.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// The binary channel protocol.
pub const CHANNEL: &str = "channel.k8s.io";
/// The base64 channel protocol.
pub const BASE64_CHANNEL: &str = "base64.channel.k8s.io";
/// Binary channels; the error channel carries a JSON status.
pub const V4_CHANNEL: &str = "v4.channel.k8s.io";
/// Base64 channels; the error channel carries a JSON status.
pub const V4_BASE64_CHANNEL: &str = "v4.base64.channel.k8s.io";
/// v4 plus the client's half-close signal.
pub const V5_CHANNEL: &str = "v5.channel.k8s.io";
/// The first byte of a v5 half-close message.
pub const CLOSE_SIGNAL: u8 = 255;

/// Bytes one channel may hold unread before reading the socket waits.
const CHANNEL_BUFFER: usize = 1024 * 1024;
/// How long the peer has to answer our Close.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A subprotocol crius speaks, as negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocol {
    /// Its name ("" when the client asked for none).
    pub name: &'static str,
    /// Data is base64 text rather than binary.
    pub base64: bool,
    /// The client may half-close channels (v5).
    pub close_signal: bool,
    /// The error channel carries a v4 JSON status.
    pub v4_status: bool,
}

impl Protocol {
    /// The protocol called `name`.
    pub fn named(name: &str) -> Option<Protocol> {
        let p = |name, base64, close_signal, v4_status| Protocol {
            name,
            base64,
            close_signal,
            v4_status,
        };
        Some(match name {
            "" => p("", false, false, false),
            CHANNEL => p(CHANNEL, false, false, false),
            BASE64_CHANNEL => p(BASE64_CHANNEL, true, false, false),
            V4_CHANNEL => p(V4_CHANNEL, false, false, true),
            V4_BASE64_CHANNEL => p(V4_BASE64_CHANNEL, true, false, true),
            V5_CHANNEL => p(V5_CHANNEL, false, true, true),
            _ => return None,
        })
    }
}

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket_request(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade && connection_upgrade(headers)
}

/// Whether `Connection` names `upgrade`.
pub fn connection_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Picks the first protocol the client offers that is in `allowed` ("" if
/// it offers none and "" is allowed).
pub fn negotiate(headers: &HeaderMap, allowed: &[&str]) -> Result<Protocol, String> {
    let offered: Vec<&str> = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let wanted: &[&str] = if offered.is_empty() { &[""] } else { &offered };
    wanted
        .iter()
        .find(|p| allowed.contains(p))
        .and_then(|p| Protocol::named(p))
        .ok_or_else(|| {
            format!("requested protocol(s) are not supported: {offered:?}; supports {allowed:?}")
        })
}

/// What a channel is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// Not in use: data either way is dropped.
    Ignore,
    /// Client to server.
    Read,
    /// Server to client.
    Write,
    /// Both ways.
    ReadWrite,
}

impl ChannelKind {
    fn readable(self) -> bool {
        matches!(self, ChannelKind::Read | ChannelKind::ReadWrite)
    }
    fn writable(self) -> bool {
        matches!(self, ChannelKind::Write | ChannelKind::ReadWrite)
    }
}

enum Out {
    Message(Message),
    Close,
}

/// Data the client sent on one channel.
#[derive(Debug)]
pub struct ChannelReader {
    rx: mpsc::UnboundedReceiver<(Bytes, OwnedSemaphorePermit)>,
    buffer: Arc<Semaphore>,
}

impl ChannelReader {
    /// The next data; `None` once the channel was half-closed (v5) or the
    /// connection ended.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await.map(|(data, _permit)| data)
    }
}

impl Drop for ChannelReader {
    fn drop(&mut self) {
        self.buffer.close();
    }
}

/// Sends data to the client on one channel.
#[derive(Debug, Clone)]
pub struct ChannelWriter {
    channel: u8,
    base64: bool,
    out: mpsc::Sender<Out>,
}

impl ChannelWriter {
    /// Sends `data` as one message (an empty one too: the kubelet's "ready"
    /// signal).
    pub async fn send(&self, data: &[u8]) -> Result<(), ConnectionClosed> {
        let message = if self.base64 {
            let mut text = String::with_capacity(1 + data.len() * 4 / 3 + 4);
            text.push(char::from(b'0' + self.channel));
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
            Message::text(text)
        } else {
            let mut v = Vec::with_capacity(1 + data.len());
            v.push(self.channel);
            v.extend_from_slice(data);
            Message::binary(v)
        };
        self.out
            .send(Out::Message(message))
            .await
            .map_err(|_| ConnectionClosed)
    }
}

/// The WebSocket is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("websocket closed")]
pub struct ConnectionClosed;

/// One channel's ends, as its kind allows.
#[derive(Debug)]
pub struct Channel {
    /// What the client sends on it.
    pub reader: Option<ChannelReader>,
    /// What the server sends on it.
    pub writer: Option<ChannelWriter>,
}

/// A channel-multiplexed WebSocket connection.
#[derive(Debug, Clone)]
pub struct Connection {
    out: mpsc::Sender<Out>,
    closed: CancellationToken,
}

impl Connection {
    /// Runs the channel protocol over an established WebSocket: `kinds[n]`
    /// says what channel `n` is for.
    pub fn start<T>(
        ws: WebSocketStream<T>,
        protocol: Protocol,
        kinds: &[ChannelKind],
        idle_timeout: Option<Duration>,
    ) -> (Connection, Vec<Channel>)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (out_tx, out_rx) = mpsc::channel(256);
        let closed = CancellationToken::new();
        let mut routes = Vec::new();
        let mut channels = Vec::new();
        for (n, kind) in kinds.iter().enumerate() {
            let num = n as u8;
            let reader = if kind.readable() {
                let (tx, rx) = mpsc::unbounded_channel();
                let buffer = Arc::new(Semaphore::new(CHANNEL_BUFFER));
                routes.push(Some((tx, buffer.clone())));
                Some(ChannelReader { rx, buffer })
            } else {
                routes.push(None);
                None
            };
            let writer = kind.writable().then(|| ChannelWriter {
                channel: num,
                base64: protocol.base64,
                out: out_tx.clone(),
            });
            channels.push(Channel { reader, writer });
        }
        let (sink, stream) = ws.split();
        tokio::spawn(write_messages(sink, out_rx, closed.clone()));
        tokio::spawn(read_messages(
            stream,
            routes,
            protocol,
            idle_timeout,
            closed.clone(),
        ));
        (
            Connection {
                out: out_tx,
                closed,
            },
            channels,
        )
    }

    /// Closes the WebSocket (after what is queued), and waits a moment for
    /// the client's answer.
    pub async fn close(&self) {
        let _ = self.out.send(Out::Close).await;
        if tokio::time::timeout(CLOSE_GRACE, self.closed.cancelled())
            .await
            .is_err()
        {
            self.closed.cancel();
        }
    }

    /// Resolves when the connection is over.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }
}

async fn write_messages<S>(mut sink: S, mut rx: mpsc::Receiver<Out>, closed: CancellationToken)
where
    S: futures_util::Sink<Message> + Unpin,
{
    loop {
        let out = tokio::select! {
            biased;
            out = rx.recv() => out,
            _ = closed.cancelled() => None,
        };
        match out {
            Some(Out::Message(m)) => {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            Some(Out::Close) => {
                // A normal closure with its code: Go's clients (gorilla)
                // report a close without one as an error (1005).
                let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code:
                        tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                let _ = sink.flush().await;
                // The reader ends when the client answers (or the grace
                // in `close` runs out).
                closed.cancelled().await;
                break;
            }
            None => break,
        }
    }
    let _ = sink.close().await;
    closed.cancel();
}

type Route = Option<(
    mpsc::UnboundedSender<(Bytes, OwnedSemaphorePermit)>,
    Arc<Semaphore>,
)>;

async fn read_messages<S, E>(
    mut stream: S,
    mut routes: Vec<Route>,
    protocol: Protocol,
    idle_timeout: Option<Duration>,
    closed: CancellationToken,
) where
    S: futures_util::Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    loop {
        let next = async {
            match idle_timeout {
                Some(t) => tokio::time::timeout(t, stream.next()).await.ok(),
                None => Some(stream.next().await),
            }
        };
        let message = tokio::select! {
            m = next => m,
            _ = closed.cancelled() => break,
        };
        let data: Bytes = match message {
            None => {
                tracing::debug!("websocket idle; closing");
                break;
            }
            Some(None) => break,
            Some(Some(Err(e))) => {
                tracing::debug!(error = %e, "websocket read ended");
                break;
            }
            Some(Some(Ok(Message::Binary(b)))) => b,
            Some(Some(Ok(Message::Text(t)))) => Bytes::copy_from_slice(t.as_bytes()),
            Some(Some(Ok(Message::Close(_)))) => break,
            Some(Some(Ok(_))) => continue, // ping/pong: tungstenite answers
        };
        let Some((&first, rest)) = data.split_first() else {
            continue;
        };
        if protocol.close_signal && first == CLOSE_SIGNAL {
            match rest {
                [n] if (*n as usize) < routes.len() => routes[*n as usize] = None,
                _ => {
                    tracing::debug!("bad websocket close signal; ending the connection");
                    break;
                }
            }
            continue;
        }
        let channel = if protocol.base64 {
            first.wrapping_sub(b'0')
        } else {
            first
        } as usize;
        let Some(Some((tx, buffer))) = routes.get(channel) else {
            continue;
        };
        let payload = if protocol.base64 {
            match base64::engine::general_purpose::STANDARD.decode(rest) {
                Ok(d) => Bytes::from(d),
                Err(e) => {
                    tracing::debug!(channel, error = %e, "dropping bad base64 message");
                    continue;
                }
            }
        } else {
            data.slice(1..)
        };
        if payload.is_empty() {
            continue;
        }
        let want = payload.len().min(CHANNEL_BUFFER) as u32;
        if let Ok(permit) = buffer.clone().acquire_many_owned(want).await {
            let _ = tx.send((payload, permit));
        }
    }
    closed.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::Role;

    #[test]
    fn negotiation_takes_the_first_supported_offer() {
        let mut h = HeaderMap::new();
        let allowed = [V4_CHANNEL, V4_BASE64_CHANNEL, ""];
        assert_eq!(negotiate(&h, &allowed).unwrap().name, "");
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            "base64url.bearer.authorization.k8s.io.abc, v4.base64.channel.k8s.io, v4.channel.k8s.io"
                .parse()
                .unwrap(),
        );
        let p = negotiate(&h, &allowed).unwrap();
        assert_eq!(p.name, V4_BASE64_CHANNEL);
        assert!(p.base64 && p.v4_status && !p.close_signal);
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            "v9.channel.k8s.io".parse().unwrap(),
        );
        assert!(negotiate(&h, &allowed).is_err());
    }

    async fn pair(
        protocol: Protocol,
        kinds: &[ChannelKind],
    ) -> (
        Connection,
        Vec<Channel>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let (conn, channels) = Connection::start(server, protocol, kinds, None);
        (conn, channels, client)
    }

    #[tokio::test]
    async fn binary_channels_route_both_ways_and_v5_half_closes() {
        let kinds = [ChannelKind::Read, ChannelKind::Write, ChannelKind::Ignore];
        let (conn, mut ch, mut client) = pair(Protocol::named(V5_CHANNEL).unwrap(), &kinds).await;
        client
            .send(Message::binary(b"\x00hello".to_vec()))
            .await
            .unwrap();
        client
            .send(Message::binary(b"\x02ignored".to_vec()))
            .await
            .unwrap();
        client
            .send(Message::binary(b"\x09nowhere".to_vec()))
            .await
            .unwrap();
        client.send(Message::binary(vec![255, 0])).await.unwrap();
        let mut stdin = ch[0].reader.take().unwrap();
        assert_eq!(stdin.recv().await.unwrap(), &b"hello"[..]);
        assert_eq!(stdin.recv().await, None);
        ch[1].writer.as_ref().unwrap().send(b"out").await.unwrap();
        let m = client.next().await.unwrap().unwrap();
        assert_eq!(m, Message::binary(b"\x01out".to_vec()));
        conn.close().await;
        // The client sees the close and answers it.
        while let Some(Ok(m)) = client.next().await {
            assert!(m.is_close(), "{m:?}");
        }
        conn.closed().await;
    }

    #[tokio::test]
    async fn base64_channels_are_decoded_and_encoded() {
        let kinds = [ChannelKind::ReadWrite, ChannelKind::Write];
        let (_conn, mut ch, mut client) =
            pair(Protocol::named(V4_BASE64_CHANNEL).unwrap(), &kinds).await;
        client.send(Message::text("0Zm9vCg==")).await.unwrap();
        client.send(Message::text("0!!not base64")).await.unwrap();
        client.send(Message::text("0YmFy")).await.unwrap();
        let mut r = ch[0].reader.take().unwrap();
        assert_eq!(r.recv().await.unwrap(), &b"foo\n"[..]);
        assert_eq!(r.recv().await.unwrap(), &b"bar"[..]);
        ch[1].writer.as_ref().unwrap().send(b"\n").await.unwrap();
        let m = client.next().await.unwrap().unwrap();
        assert_eq!(m, Message::text("1Cg=="));
        // Without v5, a close signal is just data for channel 255.
        client.send(Message::binary(vec![255, 0])).await.unwrap();
        drop(client);
        assert_eq!(r.recv().await, None);
    }
}
