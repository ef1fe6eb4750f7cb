//! An exec / attach client, as kubectl and crictl are: the HTTP upgrade to
//! SPDY/3.1 with `v4.channel.k8s.io` (one stream per `streamType`: error,
//! stdin, stdout, stderr, resize) or to a WebSocket with
//! `v4.channel.k8s.io` / `v5.channel.k8s.io` (channels 0 stdin, 1 stdout,
//! 2 stderr, 3 error, 4 resize; v5 half-closes stdin with `[255, 0]`).
//! The SPDY framing and sessions are crius-cri's.

use std::time::Duration;

use crius_cri::streaming::spdy::{Headers, Session, SessionConfig, Stream};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::portforward::request;
use crate::{Context, Result, err};

/// The streams a session asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stdio {
    /// Send stdin.
    pub stdin: bool,
    /// Read stdout.
    pub stdout: bool,
    /// Read stderr.
    pub stderr: bool,
    /// With a terminal (a resize stream).
    pub tty: bool,
}

/// Which transport and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// SPDY/3.1 with `v4.channel.k8s.io`.
    Spdy,
    /// WebSocket with `v4.channel.k8s.io`.
    WebSocketV4,
    /// WebSocket with `v5.channel.k8s.io`.
    WebSocketV5,
}

/// What a finished session got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// All of stdout.
    pub stdout: Vec<u8>,
    /// All of stderr.
    pub stderr: Vec<u8>,
    /// What the server wrote on the error stream (a v4 JSON status).
    pub status: String,
}

impl Output {
    /// The exit code the status reports: 0 for `Success`, the
    /// `ExitCode` cause for `NonZeroExitCode`, `None` for anything else.
    pub fn exit_code(&self) -> Option<i32> {
        let v: serde_json::Value = serde_json::from_str(&self.status).ok()?;
        match v.get("status")?.as_str()? {
            "Success" => Some(0),
            _ if v.get("reason")?.as_str()? == "NonZeroExitCode" => v["details"]["causes"]
                .as_array()?
                .iter()
                .find(|c| c["reason"] == "ExitCode")?["message"]
                .as_str()?
                .parse()
                .ok(),
            _ => None,
        }
    }
}

type WsSink = SplitSink<WebSocketStream<TcpStream>, Message>;
type WsStream = SplitStream<WebSocketStream<TcpStream>>;

// One per session: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Conn {
    Spdy {
        session: Session,
        stdin: Option<Stream>,
        stdout: Option<Stream>,
        stderr: Option<Stream>,
        error: Stream,
        resize: Option<Stream>,
    },
    Ws {
        sink: WsSink,
        stream: WsStream,
        v5: bool,
    },
}

/// A live exec or attach session.
pub struct RemoteCommand {
    conn: Conn,
    got: Output,
    ended: [bool; 3],
}

impl std::fmt::Debug for RemoteCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCommand")
            .field("got", &self.got)
            .finish_non_exhaustive()
    }
}

/// The headers of a SPDY remote command upgrade.
pub const SPDY_UPGRADE: &[(&str, &str)] = &[
    ("Connection", "Upgrade"),
    ("Upgrade", "SPDY/3.1"),
    ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
];

impl RemoteCommand {
    /// Connects to an Exec or Attach `url` and opens the streams.
    pub async fn connect(url: &str, transport: Transport, stdio: Stdio) -> Result<RemoteCommand> {
        let conn = match transport {
            Transport::Spdy => spdy(url, stdio).await?,
            Transport::WebSocketV4 => websocket(url, "v4.channel.k8s.io").await?,
            Transport::WebSocketV5 => websocket(url, "v5.channel.k8s.io").await?,
        };
        Ok(RemoteCommand {
            conn,
            got: Output::default(),
            ended: [false; 3],
        })
    }

    /// Sends `data` on stdin.
    pub async fn send_stdin(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.conn {
            Conn::Spdy { stdin, .. } => {
                let s = stdin.as_mut().ok_or_else(|| err("no stdin stream"))?;
                s.send(data).await.context(|| "send on stdin")
            }
            Conn::Ws { sink, .. } => {
                let mut m = vec![0u8];
                m.extend_from_slice(data);
                sink.send(Message::binary(m))
                    .await
                    .context(|| "send on the stdin channel")
            }
        }
    }

    /// Ends stdin (SPDY: the stream's end; WebSocket v5: a half-close;
    /// v4 has no way to).
    pub async fn close_stdin(&mut self) -> Result<()> {
        match &mut self.conn {
            Conn::Spdy { stdin, .. } => {
                let s = stdin.as_mut().ok_or_else(|| err("no stdin stream"))?;
                s.finish().await.context(|| "end stdin")
            }
            Conn::Ws { sink, v5: true, .. } => sink
                .send(Message::binary(vec![255, 0]))
                .await
                .context(|| "half-close stdin"),
            Conn::Ws { v5: false, .. } => Err(err("v4 WebSocket cannot end stdin")),
        }
    }

    /// Whether the server keeps its side of the SPDY stdin stream open
    /// for `wait` (client-go ends its stdin as soon as the server's side
    /// ends); always true over WebSocket.
    pub async fn stdin_kept_open(&mut self, wait: Duration) -> bool {
        match &mut self.conn {
            Conn::Spdy { stdin: Some(s), .. } => {
                tokio::time::timeout(wait, s.recv()).await.is_err()
            }
            _ => true,
        }
    }

    /// Sends a terminal size.
    pub async fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        let json = format!("{{\"Width\":{width},\"Height\":{height}}}");
        match &mut self.conn {
            Conn::Spdy { resize, .. } => {
                let s = resize.as_mut().ok_or_else(|| err("no resize stream"))?;
                s.send(json.as_bytes()).await.context(|| "send a resize")
            }
            Conn::Ws { sink, .. } => {
                let mut m = vec![4u8];
                m.extend_from_slice(json.as_bytes());
                sink.send(Message::binary(m))
                    .await
                    .context(|| "send on the resize channel")
            }
        }
    }

    /// Reads until stdout holds `needle` (after what was read before), or
    /// `timeout`; returns all of stdout so far.
    pub async fn read_stdout_until(&mut self, needle: &str, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if contains(&self.got.stdout, needle.as_bytes()) {
                return Ok(self.got.stdout.clone());
            }
            match tokio::time::timeout_at(deadline, self.read_some()).await {
                Err(_) => {
                    return Err(err(format!(
                        "no {needle:?} on stdout within {timeout:?}; got {:?}",
                        self.got
                    )));
                }
                Ok(false) => {
                    return Err(err(format!(
                        "the session ended without {needle:?} on stdout: {:?}",
                        self.got
                    )));
                }
                Ok(true) => {}
            }
        }
    }

    /// Forgets what stdout held so far.
    pub fn clear_stdout(&mut self) {
        self.got.stdout.clear();
    }

    /// Reads until every stream has ended; returns everything.
    pub async fn finish(mut self, timeout: Duration) -> Result<Output> {
        tokio::time::timeout(timeout, async { while self.read_some().await {} })
            .await
            .map_err(|_| {
                err(format!(
                    "the session did not end within {timeout:?}: {:?}",
                    self.got
                ))
            })?;
        Ok(self.got)
    }

    /// Drops the connection at once, as a client killed.
    pub fn abort(self) {
        if let Conn::Spdy { session, .. } = &self.conn {
            session.abort();
        }
    }

    /// Reads one piece of output; false once everything has ended.
    async fn read_some(&mut self) -> bool {
        match &mut self.conn {
            Conn::Spdy {
                stdout,
                stderr,
                error,
                ..
            } => {
                let [out_end, err_end, error_end] = &mut self.ended;
                tokio::select! {
                    d = recv(stdout), if !*out_end => match d {
                        Some(d) => self.got.stdout.extend_from_slice(&d),
                        None => *out_end = true,
                    },
                    d = recv(stderr), if !*err_end => match d {
                        Some(d) => self.got.stderr.extend_from_slice(&d),
                        None => *err_end = true,
                    },
                    d = error.recv(), if !*error_end => match d {
                        Some(d) => self.got.status.push_str(&String::from_utf8_lossy(&d)),
                        None => *error_end = true,
                    },
                    else => return false,
                }
                true
            }
            Conn::Ws { stream, .. } => match stream.next().await {
                Some(Ok(Message::Binary(b))) => {
                    if let Some((&ch, rest)) = b.split_first() {
                        match ch {
                            1 => self.got.stdout.extend_from_slice(rest),
                            2 => self.got.stderr.extend_from_slice(rest),
                            3 => self.got.status.push_str(&String::from_utf8_lossy(rest)),
                            _ => {}
                        }
                    }
                    true
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => false,
                Some(Ok(_)) => true,
            },
        }
    }
}

async fn recv(s: &mut Option<Stream>) -> Option<bytes::Bytes> {
    match s {
        Some(s) => s.recv().await,
        None => None,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

async fn spdy(url: &str, stdio: Stdio) -> Result<Conn> {
    let (code, head, tcp) = request(url, SPDY_UPGRADE).await?;
    if code != 101 {
        return Err(err(format!("{url}: upgrade answered {head:?}")));
    }
    let (session, _incoming) = Session::client(tcp, SessionConfig::default());
    let open = |kind: &'static str| {
        let session = session.clone();
        async move {
            session
                .open(Headers::new().with("streamType", kind))
                .await
                .context(|| format!("open the {kind} stream"))
        }
    };
    // In kubectl's order; the streams we only read from are ended on our
    // side at once.
    let mut error = open("error").await?;
    let _ = error.finish().await;
    let stdin = match stdio.stdin {
        true => Some(open("stdin").await?),
        false => None,
    };
    let mut stdout = match stdio.stdout {
        true => Some(open("stdout").await?),
        false => None,
    };
    let mut stderr = match stdio.stderr {
        true => Some(open("stderr").await?),
        false => None,
    };
    for s in [&mut stdout, &mut stderr].into_iter().flatten() {
        // A quick command may have ended the whole stream already.
        let _ = s.finish().await;
    }
    let resize = match stdio.tty {
        true => Some(open("resize").await?),
        false => None,
    };
    Ok(Conn::Spdy {
        session,
        stdin,
        stdout,
        stderr,
        error,
        resize,
    })
}

async fn websocket(url: &str, protocol: &'static str) -> Result<Conn> {
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url
        .as_str()
        .into_client_request()
        .context(|| format!("websocket request {ws_url}"))?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static(protocol),
    );
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let addr = rest.split('/').next().unwrap_or_default().to_string();
    let tcp = TcpStream::connect(&addr)
        .await
        .context(|| format!("connect {addr}"))?;
    tcp.set_nodelay(true).context(|| "set TCP_NODELAY")?;
    let (ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .context(|| format!("websocket upgrade {ws_url}"))?;
    let (sink, stream) = ws.split();
    Ok(Conn::Ws {
        sink,
        stream,
        v5: protocol.starts_with("v5"),
    })
}
