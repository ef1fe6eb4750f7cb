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
    } = io;
    let stdin_task = match (streams.stdin.take(), stdin) {
        (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
            while let Some(data) = from.recv().await {
                if to.write_all(&data).await.is_err() || to.flush().await.is_err() {
                    break;
                }
            }
            let _ = to.shutdown().await;
        })),
        // No stdin from the client: the process's closes now.
        _ => None,
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
    let exited = match gone {
        Some(gone) => tokio::select! {
            exited = exit => exited,
            () = gone => {
                for t in [stdin_task, resize_task, out_task, err_task].into_iter().flatten() {
                    t.abort();
                }
                return Outcome::ClientGone;
            }
        },
        None => exit.await,
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
pub(crate) mod tests {
    use super::*;
    use crate::streaming::backend::BoxFuture;
    use crate::streaming::spdy::{Headers, Session, SessionConfig, Stream};
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};

    /// Terminal sizes a test process was sent.
    pub(crate) type Sizes = Arc<Mutex<Vec<TerminalSize>>>;

    /// A real process on the host, with pipes: `sh -c script`. Resizes
    /// are recorded in the returned list.
    pub(crate) fn sh(
        script: &str,
        opts: StdioOptions,
        sizes: Sizes,
    ) -> Result<ProcessIo, BackendError> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .stdin(if opts.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Err(BackendError::new(e.to_string())),
        };
        let stdin = child.stdin.take().map(|s| Box::new(s) as _);
        let stdout = child.stdout.take().map(|s| Box::new(s) as _);
        let stderr = child.stderr.take().map(|s| Box::new(s) as _);
        let (resize_tx, mut resize_rx) = tokio::sync::mpsc::channel::<TerminalSize>(8);
        let seen = sizes.clone();
        tokio::spawn(async move {
            while let Some(s) = resize_rx.recv().await {
                seen.lock().unwrap().push(s);
            }
        });
        let exit: BoxFuture<'static, Result<i32, BackendError>> = Box::pin(async move {
            let status = child
                .wait()
                .await
                .map_err(|e| BackendError::new(e.to_string()))?;
            Ok(status.code().unwrap_or(128))
        });
        let io = ProcessIo {
            stdin,
            stdout,
            stderr,
            resize: opts.tty.then_some(resize_tx),
            exit,
        };
        Ok(io)
    }

    #[test]
    fn statuses_are_what_kubectl_decodes() {
        let ok = Outcome::Success.encode(true).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&ok).unwrap(),
            json!({"metadata": {}, "status": "Success"})
        );
        let rc: Value =
            serde_json::from_slice(&Outcome::ExitCode(3).encode(true).unwrap()).unwrap();
        assert_eq!(rc["status"], "Failure");
        assert_eq!(rc["reason"], "NonZeroExitCode");
        assert_eq!(rc["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(rc["details"]["causes"][0]["message"], "3");
        let failed: Value = serde_json::from_slice(
            &Outcome::Failed("no such container".into())
                .encode(true)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(failed["reason"], "InternalError");
        assert_eq!(failed["code"], 500);
        assert!(
            failed["message"]
                .as_str()
                .unwrap()
                .contains("no such container")
        );
        // Before v4: nothing on success, the message on failure.
        assert_eq!(Outcome::Success.encode(false), None);
        let v1 = Outcome::ExitCode(3).encode(false).unwrap();
        assert!(String::from_utf8(v1).unwrap().contains("exit status 3"));
    }

    #[test]
    fn resize_events_split_anywhere() {
        let mut d = ResizeDecoder::default();
        assert_eq!(d.push(br#"{"Width":80,"He"#), vec![]);
        assert_eq!(
            d.push(br#"ight":24}{"width":100,"height":40}{"Wid"#),
            vec![
                TerminalSize {
                    width: 80,
                    height: 24
                },
                TerminalSize {
                    width: 100,
                    height: 40
                }
            ]
        );
        assert_eq!(
            d.push(br#"th":1,"Height":70000}"#),
            vec![TerminalSize {
                width: 1,
                height: u16::MAX
            }]
        );
        // Garbage is dropped, later events still decode.
        assert_eq!(d.push(b"nonsense"), vec![]);
        assert_eq!(
            d.push(br#"{"Width":2,"Height":3}"#),
            vec![TerminalSize {
                width: 2,
                height: 3
            }]
        );
        assert_eq!(d.push(br#"{"Width":2}"#), vec![]);
    }

    /// A client's side of a SPDY remote command session.
    pub(crate) struct SpdyClient {
        pub session: Session,
        pub stdin: Option<Stream>,
        pub stdout: Option<Stream>,
        pub stderr: Option<Stream>,
        pub error: Stream,
        pub resize: Option<Stream>,
    }

    pub(crate) async fn open_client(session: Session, opts: StdioOptions) -> SpdyClient {
        let open = |t: &str| {
            let s = session.clone();
            let h = Headers::new().with("streamType", t);
            async move { s.open(h).await.unwrap() }
        };
        let error = open("error").await;
        let stdin = if opts.stdin {
            Some(open("stdin").await)
        } else {
            None
        };
        let stdout = if opts.stdout {
            Some(open("stdout").await)
        } else {
            None
        };
        let stderr = if opts.stderr {
            Some(open("stderr").await)
        } else {
            None
        };
        let resize = if opts.tty {
            Some(open("resize").await)
        } else {
            None
        };
        SpdyClient {
            session,
            stdin,
            stdout,
            stderr,
            error,
            resize,
        }
    }

    pub(crate) async fn read_all(s: &mut Stream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(d) = s.recv().await {
            out.extend_from_slice(&d);
        }
        out
    }

    async fn spdy_session(
        script: &'static str,
        opts: StdioOptions,
        mode: Mode,
        sizes: Sizes,
    ) -> (SpdyClient, tokio::task::JoinHandle<Outcome>) {
        let (a, b) = tokio::io::duplex(256 * 1024);
        let (client, _ci) = Session::client(a, SessionConfig::default());
        let (server, mut si) = Session::server(b, SessionConfig::default());
        let served = tokio::spawn(async move {
            let streams = spdy_streams(&mut si, "v4.channel.k8s.io", opts, Duration::from_secs(30))
                .await
                .unwrap();
            refuse_further(si);
            let outcome = run(streams, sh(script, opts, sizes), mode).await;
            server.close(Duration::from_secs(5)).await;
            outcome
        });
        (open_client(client, opts).await, served)
    }

    #[tokio::test]
    async fn exec_over_spdy_copies_stdio_and_reports_the_exit_code() {
        let opts = StdioOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let (mut c, served) = spdy_session(
            "tr a-z A-Z; echo oops >&2; exit 7",
            opts,
            Mode::Exec,
            Sizes::default(),
        )
        .await;
        let stdin = c.stdin.as_mut().unwrap();
        stdin.send(b"hello from the client\n").await.unwrap();
        stdin.finish().await.unwrap();
        let out = read_all(c.stdout.as_mut().unwrap()).await;
        let err = read_all(c.stderr.as_mut().unwrap()).await;
        let status: Value = serde_json::from_slice(&read_all(&mut c.error).await).unwrap();
        assert_eq!(out, b"HELLO FROM THE CLIENT\n");
        assert_eq!(err, b"oops\n");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "7");
        assert_eq!(served.await.unwrap(), Outcome::ExitCode(7));
        c.session.closed().await;
    }

    #[tokio::test]
    async fn resize_events_reach_the_process_and_success_is_reported() {
        let opts = StdioOptions {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        let sizes = Sizes::default();
        let (mut c, served) = spdy_session("cat", opts, Mode::Exec, sizes.clone()).await;
        let resize = c.resize.as_mut().unwrap();
        resize
            .send(br#"{"Width":120,"Height":40}{"Width":80,"#)
            .await
            .unwrap();
        resize.send(br#""Height":24}"#).await.unwrap();
        // The process sees both before stdin ends it.
        while sizes.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stdin = c.stdin.as_mut().unwrap();
        stdin.send(b"typed").await.unwrap();
        stdin.finish().await.unwrap();
        assert_eq!(read_all(c.stdout.as_mut().unwrap()).await, b"typed");
        let status: Value = serde_json::from_slice(&read_all(&mut c.error).await).unwrap();
        assert_eq!(status["status"], "Success");
        assert_eq!(served.await.unwrap(), Outcome::Success);
        assert_eq!(
            *sizes.lock().unwrap(),
            vec![
                TerminalSize {
                    width: 120,
                    height: 40
                },
                TerminalSize {
                    width: 80,
                    height: 24
                }
            ]
        );
    }

    #[tokio::test]
    async fn attach_reports_success_whatever_the_code_and_failures_are_internal() {
        let opts = StdioOptions {
            stdin: false,
            stdout: true,
            stderr: false,
            tty: false,
        };
        let (mut c, served) = spdy_session(
            "echo attached; exit 3",
            opts,
            Mode::Attach,
            Sizes::default(),
        )
        .await;
        assert_eq!(read_all(c.stdout.as_mut().unwrap()).await, b"attached\n");
        let status: Value = serde_json::from_slice(&read_all(&mut c.error).await).unwrap();
        assert_eq!(status["status"], "Success");
        served.await.unwrap();

        let mut streams = Streams {
            v4_status: true,
            ..Default::default()
        };
        let (a, b) = tokio::io::duplex(1024);
        let (client, _ci) = Session::client(a, SessionConfig::default());
        let (_server, mut si) = Session::server(b, SessionConfig::default());
        let opener = tokio::spawn(async move {
            let mut s = client
                .open(Headers::new().with("streamtype", "error"))
                .await
                .unwrap();
            read_all(&mut s).await
        });
        let s = si.accept().await.unwrap();
        s.reply().await.unwrap();
        streams.error = Some(Writer::Spdy(s.split().1));
        let outcome = run(
            streams,
            Err(BackendError::new("container \"abc\" is not running")),
            Mode::Exec,
        )
        .await;
        assert!(matches!(outcome, Outcome::Failed(_)));
        let status: Value = serde_json::from_slice(&opener.await.unwrap()).unwrap();
        assert_eq!(status["reason"], "InternalError");
        assert!(status["message"].as_str().unwrap().contains("abc"));
    }

    #[tokio::test]
    async fn missing_streams_time_out() {
        let (a, b) = tokio::io::duplex(1024);
        let (client, _ci) = Session::client(a, SessionConfig::default());
        let (_server, mut si) = Session::server(b, SessionConfig::default());
        let opts = StdioOptions {
            stdout: true,
            ..Default::default()
        };
        let c = client.clone();
        tokio::spawn(async move { c.open(Headers::new().with("streamtype", "error")).await });
        let err = spdy_streams(
            &mut si,
            "v4.channel.k8s.io",
            opts,
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(err.contains("timed out"), "{err}");
    }

    #[tokio::test]
    async fn exec_over_websocket_v5_with_stdin_close() {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::WebSocketStream;
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::protocol::Role;
        let opts = StdioOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let (a, b) = tokio::io::duplex(64 * 1024);
        let protocol = websocket::Protocol::named(websocket::V5_CHANNEL).unwrap();
        let served = tokio::spawn(async move {
            let ws = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
            let (conn, channels) =
                websocket::Connection::start(ws, protocol, &websocket_channels(opts), None);
            let streams = websocket_streams(channels, protocol, opts).await;
            let process = sh("cat; echo done >&2; exit 2", opts, Sizes::default());
            let outcome = run(streams, process, Mode::Exec).await;
            conn.close().await;
            outcome
        });
        let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        client
            .send(Message::binary(b"\x00abc".to_vec()))
            .await
            .unwrap();
        client.send(Message::binary(vec![255, 0])).await.unwrap();
        let mut by_channel: [Vec<u8>; 5] = Default::default();
        let mut first = None;
        while let Some(Ok(m)) = client.next().await {
            if let Message::Binary(b) = m {
                first.get_or_insert(b.clone());
                by_channel[b[0] as usize].extend_from_slice(&b[1..]);
            }
        }
        // The ready signal: an empty message on stdout.
        assert_eq!(first.unwrap(), &[1u8][..]);
        assert_eq!(by_channel[1], b"abc");
        assert_eq!(by_channel[2], b"done\n");
        let status: Value = serde_json::from_slice(&by_channel[3]).unwrap();
        assert_eq!(status["details"]["causes"][0]["message"], "2");
        assert_eq!(served.await.unwrap(), Outcome::ExitCode(2));
    }
}
