//! Two sessions over an in-memory pipe, and a session against raw frames.

use std::time::Duration;

use super::super::frame::{Frame, FrameDecoder, FrameEncoder, Headers, goaway, rst};
use super::*;

fn pair() -> ((Session, Incoming), (Session, Incoming)) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (
        Session::client(a, SessionConfig::default()),
        Session::server(b, SessionConfig::default()),
    )
}

#[tokio::test]
async fn streams_carry_data_both_ways_and_half_close() {
    let ((client, _ci), (_server, mut si)) = pair();
    let opener = tokio::spawn(async move {
        let mut s = client
            .open(Headers::new().with("streamtype", "data"))
            .await
            .unwrap();
        assert_eq!(s.id(), 1);
        s.send(b"ping").await.unwrap();
        s.finish().await.unwrap();
        let mut got = Vec::new();
        while let Some(d) = s.recv().await {
            got.extend_from_slice(&d);
        }
        (got, client)
    });
    let mut s = si.accept().await.unwrap();
    assert_eq!(s.headers().get("streamType"), Some("data"));
    s.reply().await.unwrap();
    let mut got = Vec::new();
    while let Some(d) = s.recv().await {
        got.extend_from_slice(&d);
    }
    assert_eq!(got, b"ping");
    s.send(b"pong").await.unwrap();
    s.finish().await.unwrap();
    let (echo, client) = opener.await.unwrap();
    assert_eq!(echo, b"pong");
    // Both sides finished: nothing left open.
    tokio::task::yield_now().await;
    assert_eq!(client.open_streams(), 0);
}

#[tokio::test]
async fn a_refused_stream_fails_to_open() {
    let ((client, _ci), (_server, mut si)) = pair();
    let opener = tokio::spawn(async move { client.open(Headers::new()).await });
    si.accept().await.unwrap().refuse().await;
    assert_eq!(
        opener.await.unwrap().unwrap_err(),
        StreamError::Reset(rst::REFUSED_STREAM)
    );
}

#[tokio::test]
async fn large_transfers_are_split_and_flow_controlled() {
    let ((client, _ci), (_server, mut si)) = pair();
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();
    let opener = tokio::spawn(async move {
        let mut s = client.open(Headers::new()).await.unwrap();
        s.send(&payload).await.unwrap();
        s.finish().await.unwrap();
        client
    });
    let mut s = si.accept().await.unwrap();
    s.reply().await.unwrap();
    let mut got = Vec::new();
    while let Some(d) = s.recv().await {
        assert!(d.len() <= MAX_DATA_FRAME);
        got.extend_from_slice(&d);
    }
    assert_eq!(got.len(), expected.len());
    assert!(got == expected);
    opener.await.unwrap();
}

#[tokio::test]
async fn pings_are_echoed_and_goaway_ends_the_session() {
    let ((client, _ci), (server, mut si)) = pair();
    client.ping(1).await.unwrap();
    // The echo arrives on the client, which ignores its own pings;
    // then the server closes the session.
    server.close(Duration::from_secs(5)).await;
    assert!(si.accept().await.is_none());
    client.closed().await;
    assert!(matches!(
        client.open(Headers::new()).await,
        Err(StreamError::SessionClosed | StreamError::GoingAway)
    ));
}

#[tokio::test]
async fn dropping_a_send_half_resets_the_stream() {
    let ((client, _ci), (_server, mut si)) = pair();
    let opener = tokio::spawn(async move {
        let s = client.open(Headers::new()).await.unwrap();
        let (mut r, w) = s.split();
        drop(w);
        (r.recv().await, client)
    });
    let s = si.accept().await.unwrap();
    s.reply().await.unwrap();
    let (mut r, _w) = s.split();
    assert_eq!(r.recv().await, None);
    assert_eq!(r.reset_status(), Some(rst::CANCEL));
    let (got, _client) = opener.await.unwrap();
    assert_eq!(got, None);
}

/// Window accounting against a peer that does flow control: the
/// sender stops at the window and resumes on WINDOW_UPDATE.
#[tokio::test]
async fn send_windows_are_honoured_once_the_peer_does_flow_control() {
    use tokio::io::AsyncReadExt;
    let (a, mut raw) = tokio::io::duplex(1024 * 1024);
    let (server, _si) = Session::server(a, SessionConfig::default());
    let mut enc = FrameEncoder::new();
    let mut dec = FrameDecoder::new();
    let mut buf = bytes::BytesMut::new();
    use tokio_util::codec::{Decoder, Encoder};
    // The peer opens stream 1 and announces flow control with a
    // session WINDOW_UPDATE of 1 (session window 64 KiB + 1).
    for f in [
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: Headers::new(),
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 1,
        },
    ] {
        enc.encode(f, &mut buf).unwrap();
    }
    use tokio::io::AsyncWriteExt;
    raw.write_all(&buf).await.unwrap();
    buf.clear();
    let mut si = _si;
    let s = si.accept().await.unwrap();
    s.reply().await.unwrap();
    let (_r, mut w) = s.split();
    let sender = tokio::spawn(async move {
        w.send(&vec![1u8; 100_000]).await.unwrap();
        w
    });
    // Read until 64 KiB of data arrived; no more may come.
    let mut data = 0usize;
    let mut rbuf = bytes::BytesMut::new();
    while data < INITIAL_WINDOW as usize {
        let n = raw.read_buf(&mut rbuf).await.unwrap();
        assert!(n > 0);
        while let Some(f) = dec.decode(&mut rbuf).unwrap() {
            if let Frame::Data { data: d, .. } = f {
                data += d.len();
            }
        }
    }
    assert_eq!(data, INITIAL_WINDOW as usize);
    tokio::task::yield_now().await;
    assert!(!sender.is_finished());
    assert_eq!(server.open_streams(), 1);
    // Open the stream and session windows: the rest flows.
    for stream_id in [1, 0] {
        enc.encode(
            Frame::WindowUpdate {
                stream_id,
                delta: 100_000,
            },
            &mut buf,
        )
        .unwrap();
    }
    raw.write_all(&buf).await.unwrap();
    while data < 100_000 {
        let n = raw.read_buf(&mut rbuf).await.unwrap();
        assert!(n > 0);
        while let Some(f) = dec.decode(&mut rbuf).unwrap() {
            if let Frame::Data { data: d, .. } = f {
                data += d.len();
            }
        }
    }
    assert_eq!(data, 100_000);
    sender.await.unwrap();
}

#[tokio::test]
async fn garbage_ends_the_session_with_goaway() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::codec::Decoder;
    let (a, mut raw) = tokio::io::duplex(1024);
    let (server, mut si) = Session::server(a, SessionConfig::default());
    raw.write_all(&[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 1, 0])
        .await
        .unwrap();
    assert!(si.accept().await.is_none());
    server.closed().await;
    let mut out = Vec::new();
    raw.read_to_end(&mut out).await.unwrap();
    let mut buf = bytes::BytesMut::from(&out[..]);
    let f = FrameDecoder::new().decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        f,
        Frame::GoAway {
            last_good_stream_id: 0,
            status: goaway::PROTOCOL_ERROR
        }
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_closes() {
    let (a, _b) = tokio::io::duplex(1024);
    let (server, _si) = Session::server(
        a,
        SessionConfig {
            idle_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        },
    );
    server.closed().await;
    assert!(server.is_closed());
}

#[tokio::test]
async fn what_all_streams_hold_unread_is_bounded() {
    const EACH: usize = 64 * 1024;
    let (a, b) = tokio::io::duplex(1024 * 1024);
    let (client, _ci) = Session::client(a, SessionConfig::default());
    let (server, mut si) = Session::server(
        b,
        SessionConfig {
            stream_buffer: EACH,
            session_buffer: 100 * 1024,
            ..Default::default()
        },
    );
    // Four streams opened, then sent as much as each one's own buffer
    // takes; the server reads none of it yet.
    let sender = tokio::spawn(async move {
        let mut streams = Vec::new();
        for _ in 0..4 {
            streams.push(client.open(Headers::new()).await.unwrap());
        }
        for s in &mut streams {
            s.send(&[7u8; EACH]).await.unwrap();
            s.finish().await.unwrap();
        }
        (client, streams)
    });
    let mut held = Vec::new();
    for _ in 0..4 {
        let s = si.accept().await.unwrap();
        s.reply().await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        server.buffered() <= 100 * 1024,
        "{} bytes held unread",
        server.buffered()
    );
    assert!(server.buffered() >= EACH, "{}", server.buffered());
    // Reading frees room: everything arrives in the end.
    let mut got = 0;
    for s in &mut held {
        while let Some(d) = s.recv().await {
            got += d.len();
        }
    }
    assert_eq!(got, 4 * EACH);
    assert_eq!(server.buffered(), 0);
    let _ = sender.await.unwrap();
}

#[tokio::test]
async fn streams_past_the_limit_are_refused() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (client, _ci) = Session::client(a, SessionConfig::default());
    let (_server, mut si) = Session::server(
        b,
        SessionConfig {
            max_streams: 1,
            ..Default::default()
        },
    );
    let c2 = client.clone();
    let first = tokio::spawn(async move { c2.open(Headers::new()).await });
    let s = si.accept().await.unwrap();
    s.reply().await.unwrap();
    let _first = first.await.unwrap().unwrap();
    assert_eq!(
        client.open(Headers::new()).await.unwrap_err(),
        StreamError::Reset(rst::REFUSED_STREAM)
    );
    drop(s);
}
