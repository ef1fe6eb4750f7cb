//! A port forward client, as kubectl and crictl are: the HTTP upgrade to
//! SPDY/3.1 (`portforward.k8s.io`) or to a WebSocket (`v4.channel.k8s.io`)
//! on a URL from PortForward, the error/data stream pairs, the WebSocket
//! channels with their port prefixes. The SPDY framing and sessions are
//! crius-cri's (its frame codec is checked against other implementations'
//! bytes in its own tests, and against crictl by hand).

use std::net::SocketAddr;

use crius_cri::streaming::spdy::{Headers, Session, SessionConfig, Stream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::{Context, Result, err};

/// `host:port` and path of an `http://` streaming URL.
fn split_url(url: &str) -> Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| err(format!("{url}: not an http:// URL")))?;
    let slash = rest
        .find('/')
        .ok_or_else(|| err(format!("{url}: no path")))?;
    let addr = rest[..slash]
        .parse()
        .context(|| format!("{url}: host is not an address"))?;
    Ok((addr, rest[slash..].to_string()))
}

/// Sends `GET path` with `headers` and reads the response head; returns
/// the status code, the head, and the connection after it.
pub async fn request(url: &str, headers: &[(&str, &str)]) -> Result<(u16, String, TcpStream)> {
    let (addr, path) = split_url(url)?;
    let mut tcp = TcpStream::connect(addr)
        .await
        .context(|| format!("connect {addr}"))?;
    // As Go's clients: small frames go out at once.
    tcp.set_nodelay(true).context(|| "set TCP_NODELAY")?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes())
        .await
        .context(|| format!("send request to {url}"))?;
    // Byte by byte: what follows the head belongs to the upgraded protocol.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tcp
            .read(&mut b)
            .await
            .context(|| format!("read response from {url}"))?;
        if n == 0 {
            break;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| err(format!("{url}: bad response {head:?}")))?;
    Ok((code, head, tcp))
}

/// The headers of a SPDY port forward upgrade.
pub const SPDY_UPGRADE: &[(&str, &str)] = &[
    ("Connection", "Upgrade"),
    ("Upgrade", "SPDY/3.1"),
    ("X-Stream-Protocol-Version", "portforward.k8s.io"),
];

/// Upgrades `url` to a SPDY port forward session.
pub async fn spdy_session(url: &str) -> Result<Session> {
    let (code, head, tcp) = request(url, SPDY_UPGRADE).await?;
    if code != 101 {
        return Err(err(format!("{url}: upgrade answered {head:?}")));
    }
    let (session, _incoming) = Session::client(tcp, SessionConfig::default());
    Ok(session)
}

/// What one forwarded connection got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// Bytes the pod sent.
    pub data: Vec<u8>,
    /// What the server wrote on the error stream.
    pub error: String,
}

async fn read_all(s: &mut Stream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(d) = s.recv().await {
        out.extend_from_slice(&d);
    }
    out
}

/// Forwards one connection to `port` over `session`, as kubectl does for
/// each local connection: an error stream (whose sending side it closes
/// at once), then a data stream with the same `requestID`. Sends `send`,
/// ends the data stream, and reads both until the server ends them.
pub async fn forward(
    session: &Session,
    request_id: u32,
    port: u16,
    send: &[u8],
) -> Result<Forwarded> {
    let headers = |kind: &str| {
        Headers::new()
            .with("streamType", kind)
            .with("port", &port.to_string())
            .with("requestID", &request_id.to_string())
    };
    let mut error = session
        .open(headers("error"))
        .await
        .context(|| format!("open the error stream of request {request_id}"))?;
    error
        .finish()
        .await
        .context(|| format!("close our side of error stream {request_id}"))?;
    let mut data = session
        .open(headers("data"))
        .await
        .context(|| format!("open the data stream of request {request_id}"))?;
    data.send(send)
        .await
        .context(|| format!("send on data stream {request_id}"))?;
    data.finish()
        .await
        .context(|| format!("end data stream {request_id}"))?;
    let data = read_all(&mut data).await;
    let error = String::from_utf8_lossy(&read_all(&mut error).await).into_owned();
    Ok(Forwarded { data, error })
}

/// A WebSocket port forward to `port` (named in the query): sends `send`
/// on the data channel and reads until the server closes the socket.
/// Checks the port prefix on both channels.
pub async fn forward_websocket(url: &str, port: u16, send: &[u8]) -> Result<Forwarded> {
    let ws_url = format!("{}?port={port}", url.replacen("http://", "ws://", 1));
    let mut req = ws_url
        .as_str()
        .into_client_request()
        .context(|| format!("websocket request {ws_url}"))?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("v4.channel.k8s.io"),
    );
    let (addr, _) = split_url(url)?;
    let tcp = TcpStream::connect(addr)
        .await
        .context(|| format!("connect {addr}"))?;
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .context(|| format!("websocket upgrade {ws_url}"))?;
    let mut message = vec![0u8];
    message.extend_from_slice(send);
    ws.send(Message::binary(message))
        .await
        .context(|| "send on the data channel")?;
    let mut channels: [Vec<u8>; 2] = Default::default();
    let mut prefixed = [false; 2];
    while let Some(m) = ws.next().await {
        let Message::Binary(b) = m.context(|| "websocket read")? else {
            continue;
        };
        let Some((&ch, rest)) = b.split_first() else {
            continue;
        };
        let ch = usize::from(ch);
        if ch > 1 {
            return Err(err(format!("message on channel {ch}")));
        }
        if !prefixed[ch] {
            if rest != port.to_le_bytes() {
                return Err(err(format!(
                    "channel {ch} began with {rest:?}, not the port"
                )));
            }
            prefixed[ch] = true;
            continue;
        }
        channels[ch].extend_from_slice(rest);
    }
    let [data, error] = channels;
    Ok(Forwarded {
        data,
        error: String::from_utf8_lossy(&error).into_owned(),
    })
}

/// The body of an HTTP/1.0 response (after the blank line).
pub fn http_body(response: &[u8]) -> &[u8] {
    response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |i| &response[i + 4..])
}
