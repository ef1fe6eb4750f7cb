//! The server over real TCP: tokens, upgrades, negotiation, limits, and
//! sessions against a shell and the loopback.

use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use futures_util::{SinkExt, StreamExt};
use http::HeaderValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;
use crate::streaming::backend::{
    BackendError, BoxFuture, Duplex, ExecBackend, ExecSpec, PortForwardBackend, ProcessIo,
    StdioOptions,
};
use crate::streaming::remotecommand::tests::{Sizes, read_all, sh};
use crate::streaming::spdy::{Headers, Session, SessionConfig, Stream};

struct ShExec;
impl ExecBackend for ShExec {
    fn exec(&self, spec: ExecSpec) -> BoxFuture<'_, Result<ProcessIo, BackendError>> {
        Box::pin(async move { sh(&spec.cmd.join(" "), spec.stdio, Sizes::default()) })
    }
}

/// Forwards to ports on the host's loopback, for pod "pod-1" only.
struct Loopback;
impl PortForwardBackend for Loopback {
    fn connect(
        &self,
        sandbox_id: &str,
        port: u16,
    ) -> BoxFuture<'_, Result<Box<dyn Duplex>, BackendError>> {
        let known = sandbox_id == "pod-1";
        Box::pin(async move {
            if !known {
                return Err(BackendError::new("pod sandbox not found"));
            }
            let s = TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| BackendError::new(format!("connect to port {port}: {e}")))?;
            Ok(Box::new(s) as Box<dyn Duplex>)
        })
    }
}

async fn server(exec: bool, config: StreamingConfig) -> StreamingServer {
    let backends = Backends {
        exec: exec.then(|| Arc::new(ShExec) as Arc<dyn ExecBackend>),
        attach: None,
        port_forward: Some(Arc::new(Loopback)),
    };
    StreamingServer::start(config, backends).await.unwrap()
}

/// Sends an upgrade request for `url`; the status code, the response
/// head, and the connection.
async fn upgrade(url: &str, extra: &[(&str, &str)]) -> (u16, String, TcpStream) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut tcp = TcpStream::connect(host).await.unwrap();
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if tcp.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, head, tcp)
}

const SPDY_PF: &[(&str, &str)] = &[
    ("Connection", "Upgrade"),
    ("Upgrade", "SPDY/3.1"),
    ("X-Stream-Protocol-Version", "portforward.k8s.io"),
];

#[tokio::test]
async fn unknown_used_expired_and_mismatched_tokens_are_404() {
    let s = server(false, StreamingConfig::default()).await;
    let base = s.base_url().to_string();
    let (code, _, _) = upgrade(&format!("{base}/portforward/made-up"), SPDY_PF).await;
    assert_eq!(code, 404);
    let url = s.port_forward_url("pod-1", vec![]).unwrap();
    let (code, _, _) = upgrade(&url, SPDY_PF).await;
    assert_eq!(code, 101);
    let (code, _, _) = upgrade(&url, SPDY_PF).await;
    assert_eq!(code, 404, "a token is good once");
    // A port forward token on the exec path: refused, and spent.
    let url = s.port_forward_url("pod-1", vec![]).unwrap();
    let token = url.rsplit('/').next().unwrap();
    let (code, _, _) = upgrade(&format!("{base}/exec/{token}"), SPDY_PF).await;
    assert_eq!(code, 404);
    let (code, _, _) = upgrade(&url, SPDY_PF).await;
    assert_eq!(code, 404);
    let (code, _, _) = upgrade(&format!("{base}/other/{token}"), SPDY_PF).await;
    assert_eq!(code, 404);

    let expiring = server(
        false,
        StreamingConfig {
            token_ttl: Duration::ZERO,
            ..Default::default()
        },
    )
    .await;
    let url = expiring.port_forward_url("pod-1", vec![]).unwrap();
    let (code, _, _) = upgrade(&url, SPDY_PF).await;
    assert_eq!(code, 404, "an expired token");
}

#[tokio::test]
async fn urls_only_for_what_is_served_and_protocols_are_negotiated() {
    let s = server(false, StreamingConfig::default()).await;
    let spec = ExecSpec {
        container_id: "c".into(),
        cmd: vec!["true".into()],
        stdio: StdioOptions::default(),
    };
    assert!(matches!(
        s.exec_url(spec),
        Err(UrlError::Unsupported("Exec"))
    ));
    let url = s.port_forward_url("pod-1", vec![]).unwrap();
    let (code, head, _) = upgrade(
        &url,
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ],
    )
    .await;
    assert_eq!(code, 403, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-accepted-stream-protocol-versions: portforward.k8s.io"),
        "{head}"
    );
    let url = s.port_forward_url("pod-1", vec![]).unwrap();
    let (code, _, _) = upgrade(&url, &[("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]).await;
    assert_eq!(code, 400);
    let url = s.port_forward_url("pod-1", vec![]).unwrap();
    let (code, _, _) = upgrade(&url, &[]).await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn exec_over_spdy_through_the_server() {
    let s = server(true, StreamingConfig::default()).await;
    let url = s
        .exec_url(ExecSpec {
            container_id: "c".into(),
            cmd: vec!["read line; echo got $line; exit 5".into()],
            stdio: StdioOptions {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: false,
            },
        })
        .unwrap();
    let (code, head, tcp) = upgrade(
        &url,
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
            ("X-Stream-Protocol-Version", "v3.channel.k8s.io"),
        ],
    )
    .await;
    assert_eq!(code, 101);
    assert!(head.contains("v4.channel.k8s.io"), "{head}");
    let (client, _ci) = Session::client(tcp, SessionConfig::default());
    let open = |t: &'static str| {
        let c = client.clone();
        async move { c.open(Headers::new().with("streamType", t)).await.unwrap() }
    };
    let mut error = open("error").await;
    let mut stdin = open("stdin").await;
    let mut stdout = open("stdout").await;
    stdin.send(b"hi\n").await.unwrap();
    stdin.finish().await.unwrap();
    assert_eq!(read_all(&mut stdout).await, b"got hi\n");
    let status: serde_json::Value = serde_json::from_slice(&read_all(&mut error).await).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "5");
    client.closed().await;
}

/// A TCP server on the host that answers every connection with its
/// port and what it read, upper-cased, then closes.
async fn shouter() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut data = Vec::new();
                c.read_to_end(&mut data).await.unwrap();
                let reply = format!("{port}:{}", String::from_utf8_lossy(&data).to_uppercase());
                c.write_all(reply.as_bytes()).await.unwrap();
            });
        }
    });
    port
}

/// A TCP server on the host that greets every connection and closes.
async fn greeter() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            let _ = c.write_all(b"hello from the pod").await;
        }
    });
    port
}

async fn forward_once(session: &Session, request: u32, port: u16, body: &str) -> (String, String) {
    let headers = |t: &str| {
        Headers::new()
            .with("streamType", t)
            .with("port", &port.to_string())
            .with("requestID", &request.to_string())
    };
    let mut error: Stream = session.open(headers("error")).await.unwrap();
    error.finish().await.unwrap();
    let mut data = session.open(headers("data")).await.unwrap();
    data.send(body.as_bytes()).await.unwrap();
    data.finish().await.unwrap();
    let got = String::from_utf8(read_all(&mut data).await).unwrap();
    let err = String::from_utf8(read_all(&mut error).await).unwrap();
    (got, err)
}

#[tokio::test]
async fn port_forward_over_spdy_many_connections_several_ports() {
    let s = server(false, StreamingConfig::default()).await;
    let (p1, p2) = (shouter().await, shouter().await);
    let url = s.port_forward_url("pod-1", vec![]).unwrap();
    let (code, _, tcp) = upgrade(&url, SPDY_PF).await;
    assert_eq!(code, 101);
    let (client, _ci) = Session::client(tcp, SessionConfig::default());
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let c = client.clone();
        let port = if i % 2 == 0 { p1 } else { p2 };
        tasks.push(tokio::spawn(async move {
            let (got, err) = forward_once(&c, i, port, &format!("request {i}")).await;
            assert_eq!(got, format!("{port}:REQUEST {i}"));
            assert_eq!(err, "");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // A closed port: the reason comes on the error stream.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (got, err) = forward_once(&client, 99, closed, "x").await;
    assert_eq!(got, "");
    assert!(
        err.contains(&format!("error forwarding port {closed} to pod pod-1")),
        "{err}"
    );
    // A stream without a port is refused, the session lives on.
    assert!(
        client
            .open(Headers::new().with("streamType", "data"))
            .await
            .is_err()
    );
    let (got, _) = forward_once(&client, 100, p1, "still").await;
    assert_eq!(got, format!("{p1}:STILL"));
    tokio::task::yield_now().await;
    client.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn port_forward_over_websocket() {
    let s = server(false, StreamingConfig::default()).await;
    let p1 = shouter().await;
    let url = s.port_forward_url("pod-1", vec![9]).unwrap();
    let ws_url = format!("{}?port={p1}", url.replacen("http://", "ws://", 1));
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("v4.channel.k8s.io"),
    );
    let tcp = TcpStream::connect(s.local_addr()).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    assert_eq!(
        resp.headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .unwrap(),
        "v4.channel.k8s.io"
    );
    ws.send(Message::binary(b"\x00hello ws".to_vec()))
        .await
        .unwrap();
    let mut data = Vec::new();
    let mut error = Vec::new();
    // The shouter answers once we stop writing: it reads to EOF, which
    // a v4 channel cannot send; so read the port prefixes, then close.
    let mut prefixes = 0;
    while prefixes < 2 {
        let Message::Binary(b) = ws.next().await.unwrap().unwrap() else {
            continue;
        };
        assert_eq!(&b[1..], &p1.to_le_bytes());
        prefixes += 1;
    }
    ws.close(None).await.unwrap();
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Binary(b) = m {
            match b[0] {
                0 => data.extend_from_slice(&b[1..]),
                1 => error.extend_from_slice(&b[1..]),
                _ => {}
            }
        }
    }
    assert!(error.is_empty());
    let _ = data;

    // The request's ports when the query names none; the pod closing
    // ends the session.
    let p3 = greeter().await;
    let url = s.port_forward_url("pod-1", vec![p3]).unwrap();
    let ws_url = url.replacen("http://", "ws://", 1);
    let tcp = TcpStream::connect(s.local_addr()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(ws_url.as_str(), tcp)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Binary(b) = m {
            seen.push(b.to_vec());
        }
    }
    assert_eq!(seen[0], [&[0u8][..], &p3.to_le_bytes()].concat());
    assert_eq!(seen[1], [&[1u8][..], &p3.to_le_bytes()].concat());
    assert_eq!(seen[2], b"\x00hello from the pod");
    assert_eq!(seen.len(), 3);
}

#[tokio::test]
async fn tls_is_served_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .current_dir(dir.path())
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (package openssl) is needed to make test certificates");
        assert!(status.success(), "openssl {args:?}");
    };
    // A CA, and a leaf for 127.0.0.1 signed by it.
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=crius-test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.path().join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext",
        "-out",
        "cert.pem",
    ]);
    let s = server(
        false,
        StreamingConfig {
            tls: Some(TlsFiles {
                cert: cert.clone(),
                key,
            }),
            ..Default::default()
        },
    )
    .await;
    assert!(s.base_url().starts_with("https://127.0.0.1:"));
    let url = s.port_forward_url("pod-1", vec![]).unwrap();
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(dir.path().join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(s.local_addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let path = url.split_once("127.0.0.1").unwrap().1;
    let path = &path[path.find('/').unwrap()..];
    tls.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 12];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 101");

    let bad = StreamingServer::start(
        StreamingConfig {
            tls: Some(TlsFiles {
                cert: dir.path().join("missing.pem"),
                key: dir.path().join("key.pem"),
            }),
            ..Default::default()
        },
        Backends::default(),
    )
    .await
    .unwrap_err();
    assert!(bad.to_string().contains("missing.pem"), "{bad}");
}
