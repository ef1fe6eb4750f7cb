//! The remote command protocol (exec and attach), over SPDY or WebSocket.
//!
//! SPDY: the client negotiates `v4.channel.k8s.io` (or v3, v2,
//! `channel.k8s.io`) with `X-Stream-Protocol-Version`, then opens one
//! stream per `streamType` header: `error` always, `stdin` / `stdout` /
//! `stderr` as asked, `resize` with a terminal (v3 and up). WebSocket:
//! channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize.
//!
//! The server copies the streams to and from the backend's process,
//! decodes resize events (`{"Width":80,"Height":24}` JSON objects, one
//! after another), waits for the exit, and writes the outcome on the error
//! stream: from v4 a JSON `Status` (`Success`, or `Failure` with reason
//! `NonZeroExitCode` and an `ExitCode` cause holding the code), before v4
//! only a failure's message.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::backend::{BackendError, BoxFuture, BoxRead, ProcessIo, StdioOptions, TerminalSize};
use super::channel::{Reader, Writer};
use super::spdy::Incoming;
use super::websocket::{self, ChannelKind};

/// SPDY remote command protocols, most preferred first.
pub const SPDY_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// WebSocket remote command protocols.
pub const WEBSOCKET_PROTOCOLS: &[&str] = &[
    websocket::V5_CHANNEL,
    websocket::V4_CHANNEL,
    websocket::V4_BASE64_CHANNEL,
    websocket::CHANNEL,
    websocket::BASE64_CHANNEL,
    "",
];

/// How long output may go on draining after the process exited (a child
/// it left behind can hold the pipes open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How long an attach whose client's stdin ended goes on passing output
/// before it ends (what the container answered to the last input).
const DETACH_FLUSH: Duration = Duration::from_millis(200);

/// Exec reports the exit code; attach reports success when the container
/// is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A command run for the client.
    Exec,
    /// The container's own process.
    Attach,
}

/// A session's streams, whatever the transport.
#[derive(Default)]
pub struct Streams {
    /// The client's stdin.
    pub stdin: Option<Reader>,
    /// To the client's stdout.
    pub stdout: Option<Writer>,
    /// To the client's stderr.
    pub stderr: Option<Writer>,
    /// Where the outcome goes.
    pub error: Option<Writer>,
    /// The client's terminal size changes.
    pub resize: Option<Reader>,
    /// The outcome is a v4 JSON status (else a v1 message).
    pub v4_status: bool,
    /// Resolves when the client's connection is gone: the session then
    /// ends without waiting for the process (the backend's `ProcessIo` is
    /// dropped: an exec'd terminal session is killed, an attacher
    /// detaches).
    pub gone: Option<BoxFuture<'static, ()>>,
    /// Our sending side of the client's stdin stream (SPDY), kept open
    /// until the session ends: client-go ends its stdin when it sees ours
    /// end.
    pub stdin_reply: Option<Writer>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .field("error", &self.error)
            .field("resize", &self.resize)
            .field("v4_status", &self.v4_status)
            .field("gone", &self.gone.is_some())
            .field("stdin_reply", &self.stdin_reply.is_some())
            .finish()
    }
}

/// The outcome of a session, as the error stream reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited 0 (or the attached container is done).
    Success,
    /// The command exited with this code.
    ExitCode(i32),
    /// The command could not be run or waited for.
    Failed(String),
    /// The client went away before the process ended; nothing is
    /// reported.
    ClientGone,
}

impl Outcome {
    /// What goes on the error stream; `None` for nothing at all.
    pub fn encode(&self, v4: bool) -> Option<Vec<u8>> {
        let status = match self {
            Outcome::Success => json!({"metadata": {}, "status": "Success"}),
            Outcome::ExitCode(code) => json!({
                "metadata": {},
                "status": "Failure",
                "message": format!(
                    "command terminated with non-zero exit code: exit status {code}"
                ),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            Outcome::ClientGone => return None,
            Outcome::Failed(why) => {
                let message = format!("error executing command in container: {why}");
                json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": format!("Internal error occurred: {message}"),
                    "reason": "InternalError",
                    "details": {"causes": [{"message": message}]},
                    "code": 500,
                })
            }
        };
        if v4 {
            return serde_json::to_vec(&status).ok();
        }
        match self {
            Outcome::Success => None,
            _ => status
                .get("message")
                .and_then(Value::as_str)
                .map(|m| m.as_bytes().to_vec()),
        }
    }
}

/// Gathers the SPDY streams a client opens for a session under
/// `protocol`, replying to each, within `timeout`.
pub async fn spdy_streams(
    incoming: &mut Incoming,
    protocol: &str,
    opts: StdioOptions,
    timeout: Duration,
) -> Result<Streams, String> {
    let (resize_ok, v4) = match protocol {
        "v4.channel.k8s.io" => (true, true),
        "v3.channel.k8s.io" => (true, false),
        _ => (false, false),
    };
    let expected = 1
        + usize::from(opts.stdin)
        + usize::from(opts.stdout)
        + usize::from(opts.stderr)
        + usize::from(opts.tty && resize_ok);
    let mut streams = Streams {
        v4_status: v4,
        ..Default::default()
    };
    let mut received = 0;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    while received < expected {
        let stream = tokio::select! {
            s = incoming.accept() => s.ok_or("the client closed the connection")?,
            _ = &mut deadline => return Err("timed out waiting for client to create streams".into()),
        };
        let kind = stream.headers().get("streamtype").unwrap_or("").to_string();
        tracing::debug!(stream_type = %kind, id = stream.id(), "remote command stream");
        stream.reply().await.map_err(|e| e.to_string())?;
        let (recv, mut send) = stream.split();
        let slot_free = match kind.as_str() {
            "error" => streams.error.is_none(),
            "stdin" => streams.stdin.is_none(),
            "stdout" => streams.stdout.is_none(),
            "stderr" => streams.stderr.is_none(),
            "resize" => streams.resize.is_none(),
            _ => false,
        };
        if !slot_free {
            tracing::debug!(stream_type = %kind, "unexpected remote command stream");
            let _ = send.finish().await;
            continue;
        }
        match kind.as_str() {
            "error" => streams.error = Some(Writer::Spdy(send)),
            "stdout" => streams.stdout = Some(Writer::Spdy(send)),
            "stderr" => streams.stderr = Some(Writer::Spdy(send)),
            // Read-only streams. Our side of stdin stays open until the
            // end (client-go reads it, and ends its stdin when it ends);
            // of resize it ends now.
            "stdin" => {
                streams.stdin = Some(Reader::Spdy(recv));
                streams.stdin_reply = Some(Writer::Spdy(send));
            }
            "resize" => {
                let _ = send.finish().await;
                streams.resize = Some(Reader::Spdy(recv));
            }
            _ => {}
        }
        received += 1;
    }
    Ok(streams)
}

/// Refuses whatever streams the client opens after the session's own.
pub fn refuse_further(mut incoming: Incoming) {
    tokio::spawn(async move {
        while let Some(s) = incoming.accept().await {
            s.refuse().await;
        }
    });
}

/// The WebSocket channel kinds of a session.
pub fn websocket_channels(opts: StdioOptions) -> [ChannelKind; 5] {
    let read = |on| {
        if on {
            ChannelKind::Read
        } else {
            ChannelKind::Ignore
        }
    };
    let write = |on| {
        if on {
            ChannelKind::Write
        } else {
            ChannelKind::Ignore
        }
    };
    [
        read(opts.stdin),
        write(opts.stdout),
        write(opts.stderr),
        ChannelKind::Write,
        ChannelKind::Read,
    ]
}

/// The session's streams from WebSocket channels (see
/// [`websocket_channels`]); tells the client the session is ready with an
/// empty message on the first channel it reads.
pub async fn websocket_streams(
    mut channels: Vec<websocket::Channel>,
    protocol: websocket::Protocol,
    opts: StdioOptions,
) -> Streams {
    let mut take = |n: usize| {
        channels
            .get_mut(n)
            .map(|c| (c.reader.take(), c.writer.take()))
            .unwrap_or((None, None))
    };
    let (stdin, _) = take(0);
    let (_, stdout) = take(1);
    let (_, stderr) = take(2);
    let (_, error) = take(3);
    let (resize, _) = take(4);
    let ready = stdout.as_ref().or(stderr.as_ref()).or(error.as_ref());
    if let Some(w) = ready {
        let _ = w.send(&[]).await;
    }
    Streams {
        stdin: stdin.map(Reader::Ws),
        stdout: stdout.map(Writer::Ws),
        stderr: stderr.map(Writer::Ws),
        error: error.map(Writer::Ws),
        resize: if opts.tty {
            resize.map(Reader::Ws)
        } else {
            None
        },
        v4_status: protocol.v4_status,
        gone: None,
        stdin_reply: None,
    }
}

/// Runs a session: copies the streams to and from `process`, waits for
/// its exit, reports the outcome on the error stream and ends the
/// streams. Returns the outcome.
pub async fn run(
    mut streams: Streams,
    process: Result<ProcessIo, BackendError>,
    mode: Mode,
) -> Outcome {
    let outcome = match process {
        Err(e) => Outcome::Failed(e.to_string()),
        Ok(io) => copy_until_exit(&mut streams, io, mode).await,
    };
    if let Some(mut error) = streams.error.take() {
        if let Some(bytes) = outcome.encode(streams.v4_status) {
            let _ = error.send(&bytes).await;
        }
        error.finish().await;
    }
    for w in [
        streams.stdout.take(),
        streams.stderr.take(),
        streams.stdin_reply.take(),
    ]
    .into_iter()
    .flatten()
    {
        let mut w = w;
        w.finish().await;
    }
    outcome
}

async fn copy_until_exit(streams: &mut Streams, io: ProcessIo, mode: Mode) -> Outcome {
    let ProcessIo {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
        stdin_end_detaches,
    } = io;
    // Told when the client's stdin has ended (not when the process's
    // could no longer be written).
    let (stdin_ended_tx, stdin_ended) = tokio::sync::oneshot::channel::<()>();
    let stdin_task = match (streams.stdin.take(), stdin) {
        (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
            let mut client_ended = true;
            while let Some(data) = from.recv().await {
                if to.write_all(&data).await.is_err() || to.flush().await.is_err() {
                    client_ended = false;
                    break;
                }
            }
            let _ = to.shutdown().await;
            if client_ended {
                let _ = stdin_ended_tx.send(());
            }
        })),
        // No stdin from the client: the process's closes now.
        _ => None,
    };
    // An attach whose client's stdin ends detaches (the container goes
    // on); anything else lasts until the process exits.
    let detach = async move {
        if stdin_end_detaches && stdin_ended.await.is_ok() {
            return;
        }
        std::future::pending::<()>().await
    };
    let resize_task = match (streams.resize.take(), resize) {
        (Some(mut from), Some(to)) => Some(tokio::spawn(async move {
            let mut decoder = ResizeDecoder::default();
            while let Some(data) = from.recv().await {
                for size in decoder.push(&data) {
                    if to.send(size).await.is_err() {
                        return;
                    }
                }
            }
        })),
        _ => None,
    };
    let mut out_task = copy_out(stdout, streams.stdout.take());
    let mut err_task = copy_out(stderr, streams.stderr.take());
    let gone = streams.gone.take();
    let gone = async move {
        match gone {
            Some(gone) => gone.await,
            None => std::future::pending().await,
        }
    };
    let exited = tokio::select! {
        exited = exit => exited,
        () = gone => {
            for t in [stdin_task, resize_task, out_task, err_task].into_iter().flatten() {
                t.abort();
            }
            return Outcome::ClientGone;
        }
        () = detach => {
            // What the container wrote meanwhile reaches the client; the
            // attach then ends as a success, the container running on.
            tokio::time::sleep(DETACH_FLUSH).await;
            for t in [stdin_task, resize_task, out_task, err_task].into_iter().flatten() {
                t.abort();
            }
            return Outcome::Success;
        }
    };
    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        if let Some(t) = &mut out_task {
            let _ = t.await;
        }
        if let Some(t) = &mut err_task {
            let _ = t.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::debug!("output still open after the process exited; cutting it");
    }
    for t in [stdin_task, resize_task, out_task, err_task]
        .into_iter()
        .flatten()
    {
        t.abort();
    }
    match exited {
        Ok(0) => Outcome::Success,
        Ok(_) if mode == Mode::Attach => Outcome::Success,
        Ok(code) => Outcome::ExitCode(code),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Copies a process's output to the client until it ends, then ends the
/// client's stream; output nobody asked for is drained and dropped.
fn copy_out(from: Option<BoxRead>, to: Option<Writer>) -> Option<JoinHandle<()>> {
    let mut from = from?;
    Some(tokio::spawn(async move {
        let mut to = to;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(w) = &mut to
                && w.send(&buf[..n]).await.is_err()
            {
                to = None;
            }
        }
        if let Some(mut w) = to {
            w.finish().await;
        }
    }))
}

/// Decodes the resize stream: JSON objects one after another, split
/// anywhere across reads. Field names match case-insensitively (Go's
/// decoder does).
#[derive(Debug, Default)]
pub struct ResizeDecoder {
    buf: Vec<u8>,
}

/// The most a resize stream may buffer without a whole object.
const MAX_RESIZE_BUFFER: usize = 4096;

impl ResizeDecoder {
    /// Feeds bytes; returns the sizes completed by them.
    pub fn push(&mut self, data: &[u8]) -> Vec<TerminalSize> {
        self.buf.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut values = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        let mut used = 0;
        loop {
            match values.next() {
                Some(Ok(v)) => {
                    used = values.byte_offset();
                    if let Some(size) = terminal_size(&v) {
                        sizes.push(size);
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    // Not JSON: drop what we have and start over.
                    used = self.buf.len();
                    break;
                }
                None => {
                    used = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..used);
        if self.buf.len() > MAX_RESIZE_BUFFER {
            self.buf.clear();
        }
        sizes
    }
}

fn terminal_size(v: &Value) -> Option<TerminalSize> {
    let obj = v.as_object()?;
    let field = |name: &str| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_u64())
            .map(|n| u16::try_from(n).unwrap_or(u16::MAX))
    };
    Some(TerminalSize {
        width: field("width")?,
        height: field("height")?,
    })
}

#[cfg(test)]
pub(crate) mod tests;
