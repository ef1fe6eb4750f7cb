//! Exec, Attach and PortForward end to end.
//!
//! Exec: `echo`, an exit code, stdin, an interactive terminal with resizes,
//! a terminal client that vanishes (its command is killed), errors, over
//! SPDY and WebSocket v4/v5. Attach: two attachers of a `cat` container,
//! detaching leaves it running.
//!
//! PortForward: a busybox httpd in a pod on a real CNI
//! network, reached through the URL PortForward answers with, over SPDY
//! (many connections to two ports on one session at once, a large body,
//! a closed port) and over WebSocket; tokens good once, unknown and
//! expired ones 404; bad requests refused; nothing left behind.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails, never
//! skips, without it.

use std::time::{Duration, Instant};

use crius_e2e::cri::{self, RuntimeClient};
use crius_e2e::portforward::{self, Forwarded, http_body};
use crius_e2e::remotecommand::{Output, RemoteCommand, Stdio, Transport};
use crius_e2e::{Crius, CriusOptions, Registry, TestImages, assert_no_leaks};
use k8s_cri::v1::{
    AttachRequest, ContainerState, ExecRequest, PodSandboxConfig, PortForwardRequest,
    StopContainerRequest,
};
use tonic::Code;

/// Size of the large file the pod serves.
const BIG: usize = 1_000_000;

/// What the web container runs: two httpds (8080 in the background,
/// 8081 in the foreground), with an index page each and a large file.
const WEB: &str = "mkdir -p /www1 /www2 && echo page-8080 > /www1/index.html && \
    echo page-8081 > /www2/index.html && \
    head -c 1000000 /dev/zero | tr '\\0' x > /www1/big.txt && \
    httpd -p 127.0.0.1:8080 -h /www1 && exec httpd -f -p 8081 -h /www2";

async fn port_forward_url(rt: &mut RuntimeClient, pod: &str, ports: &[i32]) -> String {
    rt.port_forward(PortForwardRequest {
        pod_sandbox_id: pod.to_string(),
        port: ports.to_vec(),
    })
    .await
    .unwrap()
    .into_inner()
    .url
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.0\r\n\r\n").into_bytes()
}

/// Starts a pod with the web container and waits until both ports answer
/// through a port forward.
async fn web_pod(crius: &Crius, rt: &mut RuntimeClient, name: &str) -> (String, PodSandboxConfig) {
    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let mut img = crius.image_client();
    cri::pull_image(&mut img, &images.oci.reference)
        .await
        .unwrap();
    let pod = cri::pod_config(crius.dir(), name);
    let pod_id = cri::run_pod(rt, &pod, "").await.unwrap();
    let web = cri::container_config("web", &images.oci.reference, &["sh", "-c", WEB]);
    let id = cri::create_container(rt, &pod_id, &pod, &web)
        .await
        .unwrap();
    cri::start_container(rt, &id).await.unwrap();
    // The servers take a moment to listen; a refused forward says so on
    // its error stream.
    for attempt in 0.. {
        let url = port_forward_url(rt, &pod_id, &[]).await;
        let session = portforward::spdy_session(&url).await.unwrap();
        let a = portforward::forward(&session, 0, 8080, &get("/"))
            .await
            .unwrap();
        let b = portforward::forward(&session, 1, 8081, &get("/"))
            .await
            .unwrap();
        session.close(Duration::from_secs(5)).await;
        if a.error.is_empty() && b.error.is_empty() {
            break;
        }
        let status = cri::container_status(rt, &id).await.unwrap();
        assert!(
            attempt < 200 && status.state == ContainerState::ContainerRunning as i32,
            "httpd not up: {a:?} {b:?} {status:?}\n{}",
            crius.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(registry);
    (pod_id, pod)
}

#[tokio::test]
async fn port_forward_to_a_web_server_in_a_pod() {
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut rt = crius.runtime_client();
    let (pod_id, _pod) = web_pod(&crius, &mut rt, "pf-web").await;

    let url = port_forward_url(&mut rt, &pod_id, &[8080]).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // One SPDY session, many connections at once, to two ports.
    let session = portforward::spdy_session(&url).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..24u32 {
        let s = session.clone();
        tasks.push(tokio::spawn(async move {
            let port = if i % 2 == 0 { 8080 } else { 8081 };
            let got = portforward::forward(&s, 100 + i, port, &get("/index.html"))
                .await
                .unwrap();
            (port, got)
        }));
    }
    for t in tasks {
        let (port, got) = t.await.unwrap();
        assert_eq!(got.error, "", "port {port}");
        let text = String::from_utf8_lossy(&got.data).into_owned();
        assert!(text.starts_with("HTTP/1.1 200 OK"), "port {port}: {text}");
        assert_eq!(http_body(&got.data), format!("page-{port}\n").as_bytes());
    }
    // A large body (past every flow-control window).
    let big = portforward::forward(&session, 200, 8080, &get("/big.txt"))
        .await
        .unwrap();
    assert_eq!(big.error, "");
    let body = http_body(&big.data);
    assert_eq!(body.len(), BIG);
    assert!(body.iter().all(|b| *b == b'x'));
    // A port nothing listens on: the reason on the error stream, and the
    // session goes on.
    let closed = portforward::forward(&session, 201, 9, b"").await.unwrap();
    assert_eq!(closed.data, b"");
    assert!(
        closed.error.contains("error forwarding port 9 to pod")
            && closed.error.contains(&pod_id)
            && closed.error.to_lowercase().contains("refused"),
        "{closed:?}"
    );
    let again = portforward::forward(&session, 202, 8081, &get("/"))
        .await
        .unwrap();
    assert_eq!(http_body(&again.data), b"page-8081\n");
    session.close(Duration::from_secs(5)).await;

    // The token was used: the same URL is now a 404, as is a made-up one.
    let (code, _, _) = portforward::request(&url, portforward::SPDY_UPGRADE)
        .await
        .unwrap();
    assert_eq!(code, 404);
    let made_up = format!(
        "{}/portforward/not-a-token",
        url.rsplitn(3, '/').nth(2).unwrap()
    );
    let (code, _, _) = portforward::request(&made_up, portforward::SPDY_UPGRADE)
        .await
        .unwrap();
    assert_eq!(code, 404);

    // WebSocket: the query names the port; the pod closing ends it.
    let url = port_forward_url(&mut rt, &pod_id, &[]).await;
    let Forwarded { data, error } = portforward::forward_websocket(&url, 8081, &get("/"))
        .await
        .unwrap();
    assert_eq!(error, "");
    assert_eq!(http_body(&data), b"page-8081\n");

    // Bad requests change nothing.
    cri::assert_code(
        rt.port_forward(PortForwardRequest {
            pod_sandbox_id: "no-such-pod".into(),
            port: vec![],
        })
        .await,
        Code::NotFound,
        "no-such-pod",
    );
    cri::assert_code(
        rt.port_forward(PortForwardRequest::default()).await,
        Code::InvalidArgument,
        "pod_sandbox_id",
    );
    cri::assert_code(
        rt.port_forward(PortForwardRequest {
            pod_sandbox_id: pod_id.clone(),
            port: vec![70000],
        })
        .await,
        Code::InvalidArgument,
        "70000",
    );
    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();
    // A stopped pod cannot be forwarded to.
    cri::assert_code(
        rt.port_forward(PortForwardRequest {
            pod_sandbox_id: pod_id.clone(),
            port: vec![],
        })
        .await,
        Code::NotFound,
        &pod_id,
    );
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

#[tokio::test]
async fn an_unused_port_forward_url_expires() {
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut rt = crius.runtime_client();
    let pod = cri::pod_config(crius.dir(), "pf-expiry");
    let pod_id = cri::run_pod(&mut rt, &pod, "").await.unwrap();
    let url = port_forward_url(&mut rt, &pod_id, &[80]).await;
    // Tokens live a minute, as the kubelet's.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let (code, head, _) = portforward::request(&url, portforward::SPDY_UPGRADE)
        .await
        .unwrap();
    assert_eq!(code, 404, "{head}");
    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// How long a session may take to end.
const SESSION: Duration = Duration::from_secs(30);

const OUT: Stdio = Stdio {
    stdin: false,
    stdout: true,
    stderr: true,
    tty: false,
};

async fn exec_url(rt: &mut RuntimeClient, id: &str, cmd: &[&str], stdio: Stdio) -> String {
    rt.exec(ExecRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: stdio.tty,
        stdin: stdio.stdin,
        stdout: stdio.stdout,
        stderr: stdio.stderr,
    })
    .await
    .unwrap()
    .into_inner()
    .url
}

async fn exec(rt: &mut RuntimeClient, id: &str, cmd: &[&str], transport: Transport) -> Output {
    let url = exec_url(rt, id, cmd, OUT).await;
    RemoteCommand::connect(&url, transport, OUT)
        .await
        .unwrap()
        .finish(SESSION)
        .await
        .unwrap()
}

/// A pod with one running container of `args` (its config tweaked by
/// `tweak`); returns the pod and container ids.
async fn pod_with(
    crius: &Crius,
    rt: &mut RuntimeClient,
    name: &str,
    args: &[&str],
    tweak: impl FnOnce(&mut k8s_cri::v1::ContainerConfig),
) -> (String, String) {
    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let mut img = crius.image_client();
    cri::pull_image(&mut img, &images.oci.reference)
        .await
        .unwrap();
    let pod = cri::pod_config(crius.dir(), name);
    let pod_id = cri::run_pod(rt, &pod, "").await.unwrap();
    let mut config = cri::container_config(name, &images.oci.reference, args);
    tweak(&mut config);
    let id = cri::create_container(rt, &pod_id, &pod, &config)
        .await
        .unwrap();
    cri::start_container(rt, &id).await.unwrap();
    (pod_id, id)
}

/// Whether a process of the host runs `argv` exactly.
fn host_runs(argv: &[&str]) -> bool {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
}

#[tokio::test]
async fn exec_over_spdy_and_websocket() {
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut rt = crius.runtime_client();
    let (pod_id, id) = pod_with(&crius, &mut rt, "exec", &["sleep", "3600"], |_| {}).await;

    for transport in [
        Transport::Spdy,
        Transport::WebSocketV4,
        Transport::WebSocketV5,
    ] {
        let out = exec(&mut rt, &id, &["echo", "hello"], transport).await;
        assert_eq!(out.stdout, b"hello\n", "{transport:?} {out:?}");
        assert_eq!(out.exit_code(), Some(0), "{transport:?} {out:?}");
        let out = exec(
            &mut rt,
            &id,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            transport,
        )
        .await;
        assert_eq!(out.stdout, b"out\n", "{transport:?} {out:?}");
        assert_eq!(out.stderr, b"err\n", "{transport:?} {out:?}");
        assert_eq!(out.exit_code(), Some(3), "{transport:?} {out:?}");
    }

    // Stdin to `cat`, ended by the client (SPDY stream end, v5 half-close).
    let stdio = Stdio {
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    for transport in [Transport::Spdy, Transport::WebSocketV5] {
        let url = exec_url(&mut rt, &id, &["cat"], stdio).await;
        let mut s = RemoteCommand::connect(&url, transport, stdio)
            .await
            .unwrap();
        s.send_stdin(b"one ").await.unwrap();
        s.read_stdout_until("one ", SESSION).await.unwrap();
        s.send_stdin(b"two").await.unwrap();
        s.close_stdin().await.unwrap();
        let out = s.finish(SESSION).await.unwrap();
        assert_eq!(out.stdout, b"one two", "{transport:?} {out:?}");
        assert_eq!(out.exit_code(), Some(0), "{transport:?} {out:?}");
    }

    // An interactive terminal: resizes seen by `stty size`, TERM set, the
    // exit code of the shell.
    let tty = Stdio {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    for transport in [Transport::Spdy, Transport::WebSocketV4] {
        let url = exec_url(&mut rt, &id, &["sh"], tty).await;
        let mut s = RemoteCommand::connect(&url, transport, tty).await.unwrap();
        // As crictl (client-go) needs: our stdin is not ended under us.
        assert!(s.stdin_kept_open(Duration::from_millis(300)).await);
        s.resize(100, 30).await.unwrap();
        s.send_stdin(b"busybox stty size; tty; echo term=$TERM.\n")
            .await
            .unwrap();
        s.read_stdout_until("30 100", SESSION).await.unwrap();
        s.read_stdout_until("/dev/pts/", SESSION).await.unwrap();
        // The container's env names no TERM: the terminal exec gets one.
        s.read_stdout_until("term=xterm.", SESSION).await.unwrap();
        s.clear_stdout();
        s.resize(123, 45).await.unwrap();
        s.send_stdin(b"busybox stty size\n").await.unwrap();
        s.read_stdout_until("45 123", SESSION).await.unwrap();
        s.send_stdin(b"exit 7\n").await.unwrap();
        let out = s.finish(SESSION).await.unwrap();
        assert_eq!(out.exit_code(), Some(7), "{transport:?} {out:?}");
    }

    // A terminal client that vanishes: its command is killed.
    let marker = ["sleep", "4711"];
    let url = exec_url(&mut rt, &id, &marker, tty).await;
    let s = RemoteCommand::connect(&url, Transport::Spdy, tty)
        .await
        .unwrap();
    for attempt in 0.. {
        if host_runs(&marker) {
            break;
        }
        assert!(attempt < 300, "the exec'd sleep never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.abort();
    for attempt in 0.. {
        if !host_runs(&marker) {
            break;
        }
        assert!(attempt < 500, "the exec'd sleep outlived its client");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A command that does not exist: a failure on the error stream that
    // says so (the OCI runtime's own words, from its log: without a
    // terminal its stderr is the command's).
    let out = exec(&mut rt, &id, &["no-such-command"], Transport::Spdy).await;
    assert!(
        out.exit_code() != Some(0)
            && out.status.contains("no-such-command")
            && out.status.contains("not found"),
        "{out:?}"
    );

    // Tokens are good once; made-up ones are not found.
    let url = exec_url(&mut rt, &id, &["true"], OUT).await;
    RemoteCommand::connect(&url, Transport::Spdy, OUT)
        .await
        .unwrap()
        .finish(SESSION)
        .await
        .unwrap();
    let (code, _, _) = portforward::request(&url, crius_e2e::remotecommand::SPDY_UPGRADE)
        .await
        .unwrap();
    assert_eq!(code, 404);
    let made_up = format!("{}/exec/not-a-token", url.rsplitn(3, '/').nth(2).unwrap());
    let (code, _, _) = portforward::request(&made_up, crius_e2e::remotecommand::SPDY_UPGRADE)
        .await
        .unwrap();
    assert_eq!(code, 404);

    // Bad requests.
    let req = |cmd: &[&str], stdio: Stdio| ExecRequest {
        container_id: id.clone(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: stdio.tty,
        stdin: stdio.stdin,
        stdout: stdio.stdout,
        stderr: stdio.stderr,
    };
    cri::assert_code(
        rt.exec(ExecRequest {
            container_id: "no-such-container".into(),
            ..req(&["true"], OUT)
        })
        .await,
        Code::NotFound,
        "no-such-container",
    );
    cri::assert_code(rt.exec(req(&[], OUT)).await, Code::InvalidArgument, "cmd");
    cri::assert_code(
        rt.exec(req(&["true"], Stdio::default())).await,
        Code::InvalidArgument,
        "stdin",
    );
    cri::assert_code(
        rt.exec(req(&["true"], Stdio { tty: true, ..OUT })).await,
        Code::InvalidArgument,
        "tty",
    );

    // A URL handed out before the container stopped: a clear error on the
    // stream. Then no more URLs.
    let url = exec_url(&mut rt, &id, &["true"], OUT).await;
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    let out = RemoteCommand::connect(&url, Transport::Spdy, OUT)
        .await
        .unwrap()
        .finish(SESSION)
        .await
        .unwrap();
    assert!(out.status.contains("not running"), "{out:?}");
    cri::assert_code(
        rt.exec(req(&["true"], OUT)).await,
        Code::FailedPrecondition,
        "not running",
    );

    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

async fn attach_url(rt: &mut RuntimeClient, id: &str, stdio: Stdio) -> String {
    rt.attach(AttachRequest {
        container_id: id.to_string(),
        tty: stdio.tty,
        stdin: stdio.stdin,
        stdout: stdio.stdout,
        stderr: stdio.stderr,
    })
    .await
    .unwrap()
    .into_inner()
    .url
}

async fn attach(
    rt: &mut RuntimeClient,
    id: &str,
    transport: Transport,
    stdio: Stdio,
) -> RemoteCommand {
    let url = attach_url(rt, id, stdio).await;
    RemoteCommand::connect(&url, transport, stdio)
        .await
        .unwrap()
}

#[tokio::test]
async fn attach_to_containers() {
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut rt = crius.runtime_client();
    // `cat` echoing its stdin to stdout, and stderr through `tee`.
    let (pod_id, id) = pod_with(
        &crius,
        &mut rt,
        "attach",
        &["sh", "-c", "cat | tee /dev/stderr"],
        |c| {
            c.stdin = true;
        },
    )
    .await;
    let log_path = cri::container_status(&mut rt, &id).await.unwrap().log_path;

    let all = Stdio {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let watch = Stdio {
        stdout: true,
        ..Default::default()
    };
    // Two attachers at once; what one sends both see, stdout and stderr
    // apart.
    let mut a = attach(&mut rt, &id, Transport::Spdy, all).await;
    let mut b = attach(&mut rt, &id, Transport::WebSocketV5, watch).await;
    a.send_stdin(b"hello\n").await.unwrap();
    a.read_stdout_until("hello\n", SESSION).await.unwrap();
    b.read_stdout_until("hello\n", SESSION).await.unwrap();
    // Detaching leaves the container running, and the others attached.
    a.abort();
    let mut c = attach(&mut rt, &id, Transport::WebSocketV4, all).await;
    c.send_stdin(b"again\n").await.unwrap();
    b.read_stdout_until("again\n", SESSION).await.unwrap();
    let out = c.read_stdout_until("again\n", SESSION).await.unwrap();
    assert_eq!(out, b"again\n");
    b.abort();
    c.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = cri::container_status(&mut rt, &id).await.unwrap();
    assert_eq!(
        status.state,
        ContainerState::ContainerRunning as i32,
        "{status:?}"
    );
    // The log got everything, on both streams.
    let log = cri::read_cri_log(std::path::Path::new(&log_path)).unwrap();
    let lines: Vec<_> = log
        .iter()
        .map(|l| (l.stream.as_str(), l.content.as_str()))
        .collect();
    for line in ["hello", "again"] {
        assert!(lines.contains(&("stdout", line)), "{lines:?}");
        assert!(lines.contains(&("stderr", line)), "{lines:?}");
    }
    // The end of an attacher's stdin ends its session within a moment (as
    // containerd's, `crictl attach -i` with its input piped), the
    // container running on with its stdin open for the next attacher (no
    // stdin_once).
    for (word, transport) in [
        ("third", Transport::Spdy),
        ("fourth", Transport::WebSocketV5),
    ] {
        let mut d = attach(&mut rt, &id, transport, all).await;
        d.send_stdin(format!("{word}\n").as_bytes()).await.unwrap();
        d.read_stdout_until(&format!("{word}\n"), SESSION)
            .await
            .unwrap();
        let ended = Instant::now();
        d.close_stdin().await.unwrap();
        let out = d.finish(SESSION).await.unwrap();
        assert!(
            ended.elapsed() < Duration::from_secs(2),
            "{transport:?}: the attach ended {:?} after its stdin",
            ended.elapsed()
        );
        assert_eq!(out.exit_code(), Some(0), "{transport:?} {out:?}");
        let status = cri::container_status(&mut rt, &id).await.unwrap();
        assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    }
    // Stderr reaches an attacher that asked for it, and the container
    // ending ends its session.
    let mut e = attach(&mut rt, &id, Transport::Spdy, all).await;
    e.send_stdin(b"fifth\n").await.unwrap();
    e.read_stdout_until("fifth\n", SESSION).await.unwrap();
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    let out = e.finish(SESSION).await.unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fifth"),
        "{out:?}"
    );
    assert_eq!(out.exit_code(), Some(0), "{out:?}");

    // Bad requests.
    cri::assert_code(
        rt.attach(AttachRequest {
            container_id: "no-such-container".into(),
            stdout: true,
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "no-such-container",
    );
    cri::assert_code(
        rt.attach(AttachRequest {
            container_id: id.clone(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "stdin",
    );
    cri::assert_code(
        rt.attach(AttachRequest {
            container_id: id.clone(),
            tty: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "tty",
    );
    cri::assert_code(
        rt.attach(AttachRequest {
            container_id: id.clone(),
            stdout: true,
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "not running",
    );
    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();

    // stdin_once: the first attacher's end of stdin is the container's.
    let (pod_id, id) = pod_with(&crius, &mut rt, "attach-once", &["cat"], |c| {
        c.stdin = true;
        c.stdin_once = true;
    })
    .await;
    let io = Stdio {
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    let mut a = attach(&mut rt, &id, Transport::Spdy, io).await;
    a.send_stdin(b"once\n").await.unwrap();
    a.read_stdout_until("once\n", SESSION).await.unwrap();
    a.close_stdin().await.unwrap();
    let out = a.finish(SESSION).await.unwrap();
    assert_eq!(out.exit_code(), Some(0), "{out:?}");
    cri::wait_container_state(&mut rt, &id, ContainerState::ContainerExited)
        .await
        .unwrap();
    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();

    // A terminal: resized through the monitor, seen by `stty size`.
    let (pod_id, id) = pod_with(&crius, &mut rt, "attach-tty", &["sh"], |c| {
        c.stdin = true;
        c.tty = true;
    })
    .await;
    let tty = Stdio {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let mut a = attach(&mut rt, &id, Transport::Spdy, tty).await;
    a.resize(77, 11).await.unwrap();
    // The resize goes through the monitor's FIFO, the input through its
    // socket: retry until the new size shows.
    for attempt in 0.. {
        a.send_stdin(b"busybox stty size\n").await.unwrap();
        if a.read_stdout_until("11 77", Duration::from_millis(500))
            .await
            .is_ok()
        {
            break;
        }
        assert!(attempt < 40, "the size never showed");
    }
    a.abort();
    let status = cri::container_status(&mut rt, &id).await.unwrap();
    assert_eq!(
        status.state,
        ContainerState::ContainerRunning as i32,
        "{status:?}"
    );
    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();

    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}
