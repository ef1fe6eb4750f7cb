//! Hostile clients on the wire: many connections and streams left unread
//! on the CRI socket, connections that never begin HTTP/2, and TCP
//! connections to the streaming server that send no (or half a) request.
//! The daemon must refuse past its caps, close what stalls, keep its
//! memory bounded, and keep answering a well-behaved client meanwhile.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

use std::time::{Duration, Instant};

use crius_e2e::{Crius, CriusOptions, assert_no_leaks};
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{GetEventsRequest, VersionRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// A figure of the daemon's /proc/<pid>/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Waits (at most `limit`) for the peer to close `conn`, reading and
/// dropping whatever it sends; whether it did.
async fn closed_by_peer<S: tokio::io::AsyncRead + Unpin>(conn: &mut S, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    false
}

/// A hostile HTTP/2 client: `streams` calls opened on one connection,
/// their request bodies never finished and their answers never read.
struct Hostile {
    task: tokio::task::JoinHandle<()>,
    _calls: Vec<(h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>)>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hostile(socket: &std::path::Path, streams: usize) -> Option<Hostile> {
    let io = UnixStream::connect(socket).await.ok()?;
    let (mut send, conn) = h2::client::handshake(io).await.ok()?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut calls = Vec::new();
    for _ in 0..streams {
        let req = http::Request::builder()
            .method("POST")
            .uri("http://localhost/runtime.v1.RuntimeService/Version")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        send = match send.ready().await {
            Ok(s) => s,
            Err(_) => break,
        };
        match send.send_request(req, false) {
            Ok(call) => calls.push(call),
            Err(_) => break,
        }
    }
    Some(Hostile {
        task,
        _calls: calls,
    })
}

/// 1000 connections with 100 unread streams each (what took crius from
/// 56 to 704 MiB): at most `max_connections` are kept, the daemon's
/// memory stays bounded, and a client connected before keeps being
/// answered. Connections that never begin HTTP/2 are closed.
#[tokio::test]
async fn cri_socket_limits_hold_under_a_hostile_client() {
    const CAP: usize = 128;
    let mut crius = Crius::start(CriusOptions {
        config: Some(format!(
            // Idle connections give way at the cap only after an hour
            // here: the well-behaved client keeps its place between calls
            // (idle_connections_give_way_at_the_cap tests yielding).
            "[grpc]\nmax_connections = {CAP}\nhandshake_timeout_secs = 2\nyield_after_idle_secs = 3600\n"
        )),
        ..CriusOptions::without_cni()
    })
    .await
    .unwrap();
    let pid = crius.pid().unwrap();
    let socket = crius.dir().socket();
    let mut rt = crius.runtime_client();
    rt.version(VersionRequest::default()).await.unwrap();
    let rss_before = status_kib(pid, "VmRSS:");

    // A connection that sends nothing, and one that sends half the
    // preface: both closed after the handshake timeout.
    let mut silent = UnixStream::connect(&socket).await.unwrap();
    let mut half = UnixStream::connect(&socket).await.unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();

    let mut kept = Vec::new();
    let mut refused = 0;
    for i in 0..1000 {
        match hostile(&socket, 100).await {
            Some(h) => kept.push(h),
            None => refused += 1,
        }
        if i % 100 == 99 {
            // The well-behaved client is answered all along.
            rt.version(VersionRequest::default()).await.unwrap();
        }
    }
    // Connections past the cap were closed by the daemon.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let alive = kept.iter().filter(|h| !h.task.is_finished()).count();
    let rss = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    eprintln!(
        "hostile: {alive} connections kept, {} closed at once, {refused} not opened; \
         daemon VmRSS {} -> {} MiB, VmHWM {} MiB",
        kept.len() - alive,
        rss_before / 1024,
        rss / 1024,
        hwm / 1024
    );
    // The two stalled connections and the good client hold places too.
    assert!(alive <= CAP, "{alive} connections kept, cap {CAP}");
    assert!(alive >= CAP - 3 - 8, "only {alive} connections kept");
    let version = rt.version(VersionRequest::default()).await.unwrap();
    assert_eq!(version.into_inner().runtime_name, "crius");
    assert!(
        hwm - rss_before < 256 * 1024,
        "the daemon grew from {rss_before} KiB to a peak of {hwm} KiB"
    );
    assert!(closed_by_peer(&mut silent, Duration::from_secs(30)).await);
    assert!(closed_by_peer(&mut half, Duration::from_secs(30)).await);

    // The hostile client leaves: its places are free again.
    drop(kept);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answered = match crius_e2e::connect_unix(&socket).await {
            Ok(fresh) => k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(fresh)
                .version(VersionRequest::default())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if answered.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no place freed: {answered:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// A call whose deadline (`grpc-timeout`) passes on the server is
/// answered DEADLINE_EXCEEDED naming the method, as gRPC says (tonic
/// alone answers CANCELLED), and the daemon goes on. A raw HTTP/2 client,
/// so that the server's answer is what is seen (a tonic client gives up
/// on its own at the deadline).
#[tokio::test]
async fn a_call_past_its_deadline_is_deadline_exceeded() {
    use prost::Message;
    let mut crius = Crius::start(CriusOptions::without_cni()).await.unwrap();
    // A "registry" that takes connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pull = k8s_cri::v1::PullImageRequest {
        image: Some(k8s_cri::v1::ImageSpec {
            image: format!("{}/stuck/image:1", silent.local_addr().unwrap()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let message = pull.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);

    let io = UnixStream::connect(crius.dir().socket()).await.unwrap();
    let (send, conn) = h2::client::handshake(io).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.unwrap();
    let req = http::Request::builder()
        .method("POST")
        .uri("http://localhost/runtime.v1.ImageService/PullImage")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "300m")
        .body(())
        .unwrap();
    let began = Instant::now();
    let (response, mut body) = send.send_request(req, false).unwrap();
    body.send_data(bytes::Bytes::from(frame), true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), response)
        .await
        .expect("no answer within 20 s")
        .unwrap();
    let (parts, mut body) = response.into_parts();
    // A trailers-only answer carries the status in its headers.
    let mut status = parts.headers.clone();
    if !status.contains_key("grpc-status") {
        while body.data().await.is_some() {}
        status = body.trailers().await.unwrap().unwrap_or_default();
    }
    let code = status["grpc-status"].to_str().unwrap().to_string();
    let message = status
        .get("grpc-message")
        .map(|m| m.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(
        code,
        (tonic::Code::DeadlineExceeded as i32).to_string(),
        "{message}"
    );
    assert!(message.contains("PullImage"), "{message}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    task.abort();

    let mut rt = crius.runtime_client();
    let version = rt.version(VersionRequest::default()).await.unwrap();
    assert_eq!(version.into_inner().runtime_name, "crius");
    drop(silent);
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// A client that connects, calls Version and leaves its connection open
/// (as critest does, twice per spec); `None` if it was turned away.
async fn call_once(
    socket: &std::path::Path,
) -> Option<RuntimeServiceClient<tonic::transport::Channel>> {
    let channel = crius_e2e::connect_unix(socket).await.ok()?;
    let mut client = RuntimeServiceClient::new(channel);
    client.version(VersionRequest::default()).await.ok()?;
    Some(client)
}

/// At the connection cap, the connection idle the longest gives its place
/// to a newcomer once it has been idle the yield time, and its client is
/// answered again when it calls next; a connection with a call under way
/// (a GetContainerEvents stream) keeps its place however long it lasts,
/// and when every place is busy or freshly used, a newcomer is turned away.
#[tokio::test]
async fn idle_connections_give_way_at_the_cap() {
    const CAP: usize = 4;
    let mut crius = Crius::start(CriusOptions {
        config: Some(format!(
            "[grpc]\nmax_connections = {CAP}\nyield_after_idle_secs = 2\n"
        )),
        ..CriusOptions::without_cni()
    })
    .await
    .unwrap();
    let socket = crius.dir().socket();

    // The harness keeps a connection of its own (idle after its readiness
    // call); one more holds an event stream; the others are idle after a
    // call.
    let mut watcher = call_once(&socket).await.unwrap();
    let mut events = watcher
        .get_container_events(GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut idle = Vec::new();
    for _ in 2..CAP {
        idle.push(call_once(&socket).await.expect("a free place"));
    }
    // Full, and nobody idle long enough yet.
    assert!(
        call_once(&socket).await.is_none(),
        "a connection past the cap was let in at once"
    );

    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Newcomers take the idle ones' places; the watcher keeps its.
    let mut newcomers = Vec::new();
    for i in 1..CAP {
        newcomers.push(call_once(&socket).await.unwrap_or_else(|| {
            panic!("newcomer {i} turned away with idle connections at the cap")
        }));
    }
    assert!(
        call_once(&socket).await.is_none(),
        "a newcomer was let in past a busy connection and fresh ones"
    );
    match tokio::time::timeout(Duration::from_millis(500), events.message()).await {
        Err(_) => {}
        Ok(ended) => panic!("the busy connection's event stream ended: {ended:?}"),
    }

    // A client whose connection gave way dials again for its next call,
    // once a place can be had (the newcomers idle the yield time).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut answered = 0;
    for client in &mut idle {
        // The first call may find the old connection closing under it.
        for _ in 0..3 {
            if client.version(VersionRequest::default()).await.is_ok() {
                answered += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        answered,
        CAP - 2,
        "clients whose connections gave way were not answered again"
    );
    match tokio::time::timeout(Duration::from_millis(200), events.message()).await {
        Err(_) => {}
        Ok(ended) => panic!("the busy connection's event stream ended: {ended:?}"),
    }
    let version = watcher.version(VersionRequest::default()).await.unwrap();
    assert_eq!(version.into_inner().runtime_name, "crius");

    drop((events, watcher, idle, newcomers));
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// Streams that each start a 16 MiB request and never finish it: what
/// the daemon takes of one connection's unfinished requests stays within
/// one largest request, so many such streams cannot grow it by their
/// sum; other connections are answered meanwhile.
#[tokio::test]
async fn unfinished_requests_are_held_within_a_budget() {
    const CONNECTIONS: usize = 8;
    const STREAMS: usize = 32;
    const SENT: usize = 2 << 20;
    let mut crius = Crius::start(CriusOptions::without_cni()).await.unwrap();
    let pid = crius.pid().unwrap();
    let socket = crius.dir().socket();
    let mut rt = crius.runtime_client();
    rt.version(VersionRequest::default()).await.unwrap();
    let rss_before = status_kib(pid, "VmRSS:");

    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let io = UnixStream::connect(&socket).await.unwrap();
        let (mut send, conn) = h2::client::handshake(io).await.unwrap();
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut calls = Vec::new();
        for _ in 0..STREAMS {
            let req = http::Request::builder()
                .method("POST")
                .uri("http://localhost/runtime.v1.RuntimeService/Version")
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap();
            send = send.ready().await.unwrap();
            let (response, mut body) = send.send_request(req, false).unwrap();
            // A message header claiming 16 MiB, then 2 MiB of it (h2
            // sends what the windows let through).
            let mut data = vec![0u8, 0x01, 0x00, 0x00, 0x00];
            data.resize(5 + SENT, b'x');
            body.send_data(bytes::Bytes::from(data), false).unwrap();
            calls.push((response, body));
        }
        held.push(Hostile {
            task,
            _calls: calls,
        });
    }
    // Let the daemon take all it will.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    eprintln!(
        "unfinished: {CONNECTIONS}x{STREAMS} streams of {} MiB sent each; \
         daemon VmRSS {} -> {} MiB, VmHWM {} MiB",
        SENT >> 20,
        rss_before / 1024,
        rss / 1024,
        hwm / 1024
    );
    rt.version(VersionRequest::default()).await.unwrap();
    // Unbounded, the daemon would take all 512 MiB; within budgets at
    // most 8 x (16 MiB + windows).
    let sum = (CONNECTIONS * STREAMS * SENT / 1024) as u64;
    assert!(
        hwm - rss_before < sum / 2,
        "the daemon grew from {rss_before} KiB to a peak of {hwm} KiB ({sum} KiB sent)"
    );
    drop(held);

    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// The streaming server, reachable by anyone on the host: a connection
/// that sends nothing or half a request header is closed after the header
/// timeout; past the connection cap a new one is closed unanswered; a
/// kept-alive connection idle after its answer is closed the same way.
#[tokio::test]
async fn streaming_server_closes_stalled_connections() {
    use tokio::net::TcpStream;
    const CAP: usize = 8;
    let port = crius_e2e::free_port().unwrap();
    let mut crius = Crius::start(CriusOptions {
        config: Some(format!(
            "[streaming]\naddress = \"127.0.0.1:{port}\"\nheader_timeout_secs = 3\nmax_connections = {CAP}\n"
        )),
        ..CriusOptions::without_cni()
    })
    .await
    .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let request = b"GET /exec/no-such-token HTTP/1.1\r\nHost: crius\r\n\r\n";

    // Answered, then closed once it idles past the header timeout.
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer))
        .await
        .expect("the server closes an idle kept-alive connection")
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 404"), "{answer:?}");

    // The cap: CAP connections that send nothing (one of them half a
    // header) take every place...
    let mut stalled = Vec::new();
    for i in 0..CAP {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        if i == 0 {
            c.write_all(b"GET /exec/x HTTP/1.1\r\nHost: cr")
                .await
                .unwrap();
        }
        stalled.push(c);
    }
    // ...so one more is closed without an answer, request and all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let _ = extra.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), extra.read_to_end(&mut answer)).await;
    assert!(
        answer.is_empty(),
        "past the cap: {:?}",
        String::from_utf8_lossy(&answer)
    );

    // The stalled ones are closed by the header timeout...
    for c in &mut stalled {
        assert!(closed_by_peer(c, Duration::from_secs(30)).await);
    }
    // ...and their places serve again.
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 404"), "{answer:?}");

    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// A client that began HTTP/2 and then answers nothing (a peer gone, or
/// one holding its place) is pinged and, its ping unanswered, closed.
#[tokio::test]
async fn a_peer_that_stops_answering_is_closed_by_keepalive() {
    let mut crius = Crius::start(CriusOptions {
        config: Some("[grpc]\nkeepalive_interval_secs = 1\nkeepalive_timeout_secs = 1\n".into()),
        ..CriusOptions::without_cni()
    })
    .await
    .unwrap();
    let mut conn = UnixStream::connect(crius.dir().socket()).await.unwrap();
    // The preface and an empty SETTINGS frame, then silence: no SETTINGS
    // ACK, no PING ACK.
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    assert!(closed_by_peer(&mut conn, Duration::from_secs(60)).await);
    // A well-behaved client is not: it answers the pings.
    let mut rt = crius.runtime_client();
    rt.version(VersionRequest::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    rt.version(VersionRequest::default()).await.unwrap();

    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}
