//! The protocol against a shell process, over SPDY sessions and
//! WebSocket channels; also helpers the server's tests share.

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
        stdin_end_detaches: false,
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
    let rc: Value = serde_json::from_slice(&Outcome::ExitCode(3).encode(true).unwrap()).unwrap();
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
