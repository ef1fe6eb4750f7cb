//! The rewriter against hand-made HPACK and a real h2 server.

use tokio::io::AsyncWriteExt;

use super::hpack::{same_length_authority, valid_authority};
use super::rewriter::{MAX_HEADER_BLOCK, PREFACE, Rewriter, frame, put_frame_head};
use super::{AnyAuthority, huffman};

/// An HPACK integer with an `n`-bit prefix under `flags`.
fn int(flags: u8, n: u32, mut v: usize) -> Vec<u8> {
    let mask = (1usize << n) - 1;
    if v < mask {
        return vec![flags | v as u8];
    }
    let mut out = vec![flags | mask as u8];
    v -= mask;
    while v >= 128 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// A string literal, Huffman-coded or raw.
fn lit(s: &[u8], huffman: bool) -> Vec<u8> {
    if huffman {
        let coded = huffman::tests::encode(s);
        [int(0x80, 7, coded.len()), coded].concat()
    } else {
        [int(0, 7, s.len()), s.to_vec()].concat()
    }
}

/// Literal with incremental indexing, literal name.
fn inc_named(name: &str, value: &[u8], huffman: bool) -> Vec<u8> {
    [
        vec![0x40],
        lit(name.as_bytes(), huffman),
        lit(value, huffman),
    ]
    .concat()
}

/// Literal with incremental indexing, indexed name.
fn inc_indexed(index: usize, value: &[u8], huffman: bool) -> Vec<u8> {
    [int(0x40, 6, index), lit(value, huffman)].concat()
}

/// Literal without indexing (or never indexed), indexed name.
fn plain_indexed(never: bool, index: usize, value: &[u8]) -> Vec<u8> {
    [
        int(if never { 0x10 } else { 0 }, 4, index),
        lit(value, false),
    ]
    .concat()
}

fn indexed(index: usize) -> Vec<u8> {
    int(0x80, 7, index)
}

/// `:method GET`, `:scheme http`, `:path /`.
fn request_line() -> Vec<u8> {
    [indexed(2), indexed(6), indexed(4)].concat()
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_frame_head(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

/// A whole request: HEADERS with END_STREAM and END_HEADERS.
fn request(stream: u32, block: &[u8]) -> Vec<u8> {
    frame(frame::HEADERS, 0x1 | frame::END_HEADERS, stream, block)
}

fn start() -> Vec<u8> {
    // The preface, then an empty SETTINGS frame.
    [PREFACE.to_vec(), frame(0x4, 0, 0, &[])].concat()
}

/// Runs `bytes` through a rewriter in pieces of `step` bytes.
fn rewrite(bytes: &[u8], step: usize) -> Vec<u8> {
    let mut r = Rewriter::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(step) {
        r.feed(piece, &mut out);
    }
    r.finish(&mut out);
    out
}

/// What a real h2 server makes of the client's `bytes` sent through
/// [`AnyAuthority`]: the authority and `x-*` headers of each request,
/// in order, until `count` requests came.
async fn served(bytes: Vec<u8>, count: usize) -> Vec<(Option<String>, Vec<String>)> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let serve = tokio::spawn(async move {
        let mut conn = h2::server::handshake(AnyAuthority::new(server))
            .await
            .unwrap();
        let mut seen = Vec::new();
        while seen.len() < count {
            let (req, mut respond) = conn.accept().await.unwrap().unwrap();
            let xs = req
                .headers()
                .iter()
                .filter(|(n, _)| n.as_str().starts_with("x-"))
                .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
                .collect();
            seen.push((req.uri().authority().map(|a| a.to_string()), xs));
            let _ = respond.send_response(http::Response::new(()), true);
        }
        seen
    });
    client.write_all(&bytes).await.unwrap();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), serve)
        .await
        .expect("the h2 server got every request")
        .unwrap();
    drop(client);
    seen
}

#[tokio::test]
async fn grpc_core_and_java_authorities_reach_the_server() {
    let mut bytes = start();
    // grpc-core: a literal ":authority" name, entered into the table
    // (dynamic index 62), raw value.
    let path = b"tmp%2Fwire%2Fcrius.sock";
    bytes.extend(request(
        1,
        &[request_line(), inc_named(":authority", path, false)].concat(),
    ));
    // ...and then indexed.
    bytes.extend(request(3, &[request_line(), indexed(62)].concat()));
    // grpc-java: static name 1, Huffman-coded path, entered too
    // (now 62; grpc-core's entry 63).
    bytes.extend(request(
        5,
        &[request_line(), inc_indexed(1, b"/var/run/x.sock", true)].concat(),
    ));
    // A literal naming dynamic entry 63 (":authority"), not indexed.
    bytes.extend(request(
        7,
        &[request_line(), plain_indexed(false, 63, b"/other.sock")].concat(),
    ));
    // An empty authority, never indexed: dropped.
    bytes.extend(request(
        9,
        &[request_line(), plain_indexed(true, 1, b"")].concat(),
    ));
    // A valid one stays as it is.
    bytes.extend(request(
        11,
        &[request_line(), inc_indexed(1, b"localhost", false)].concat(),
    ));
    let seen = served(bytes, 6).await;
    let authorities: Vec<_> = seen.into_iter().map(|(a, _)| a).collect();
    assert_eq!(
        authorities,
        [
            Some("tmp-2Fwire-2Fcrius.sock".to_string()),
            Some("tmp-2Fwire-2Fcrius.sock".to_string()),
            Some("-var-run-x.sock".to_string()),
            Some("-other.sock".to_string()),
            None,
            Some("localhost".to_string()),
        ]
    );
}

#[tokio::test]
async fn the_table_stays_in_step_through_evictions_and_size_updates() {
    let mut bytes = start();
    let mut expected = Vec::new();
    let mut stream = 1;
    // Each request enters an authority and a header of changing size,
    // evicting older entries; then names both by index.
    for i in 0..40usize {
        let value = vec![b'a' + (i % 26) as u8; 50 + i * 37 % 400];
        let path = format!("/run/crius-{i}.sock");
        let mut block = Vec::new();
        if i == 20 {
            // A size update (at the start of a block): a smaller
            // table, older entries evicted.
            block.extend(int(0x20, 5, 1024));
        }
        block.extend(request_line());
        block.extend(inc_indexed(1, path.as_bytes(), i % 2 == 0));
        block.extend(inc_named("x-pad", &value, i % 3 == 0));
        bytes.extend(request(stream, &block));
        stream += 2;
        // x-pad is 62 now, the authority 63.
        bytes.extend(request(
            stream,
            &[request_line(), indexed(63), indexed(62)].concat(),
        ));
        stream += 2;
        let want = (
            Some(path.replace('/', "-")),
            vec![format!("x-pad={}", String::from_utf8(value).unwrap())],
        );
        expected.push(want.clone());
        expected.push(want);
    }
    let seen = served(bytes, expected.len()).await;
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn padded_prioritised_and_continued_blocks_are_rewritten() {
    // Pseudo-headers first, as h2 requires.
    let block = [
        request_line(),
        inc_indexed(1, &vec![b'/'; 8000], true),
        inc_named("x-big", &vec![b'z'; 9000], false),
    ]
    .concat();
    // HEADERS (padded, with priority) holding the first half, then a
    // CONTINUATION: the rewritten block no longer fits one frame.
    let (a, b) = block.split_at(block.len() / 2);
    let mut payload = vec![3u8];
    payload.extend([0, 0, 0, 0, 16]);
    payload.extend(a);
    payload.extend([0, 0, 0]);
    let mut bytes = start();
    bytes.extend(frame(
        frame::HEADERS,
        0x1 | frame::PADDED | frame::PRIORITY,
        1,
        &payload,
    ));
    bytes.extend(frame(frame::CONTINUATION, frame::END_HEADERS, 1, b));
    let seen = served(bytes, 1).await;
    assert_eq!(seen[0].0.as_deref(), Some(&"-".repeat(8000)[..]));
    assert_eq!(seen[0].1, [format!("x-big={}", "z".repeat(9000))]);
}

#[test]
fn valid_connections_pass_byte_for_byte_in_any_pieces() {
    let mut bytes = start();
    bytes.extend(request(
        1,
        &[request_line(), inc_indexed(1, b"localhost", true)].concat(),
    ));
    // DATA, WINDOW_UPDATE, PING between requests.
    bytes.extend(frame(0x0, 0x1, 3, &[0u8; 40_000][..16_384]));
    bytes.extend(frame(0x8, 0, 0, &[0, 0, 1, 0]));
    bytes.extend(frame(0x6, 0, 0, &[7; 8]));
    bytes.extend(request(3, &[request_line(), indexed(62)].concat()));
    for step in [1, 2, 7, 9, 100, 4096, bytes.len()] {
        assert!(rewrite(&bytes, step) == bytes, "pieces of {step}");
    }
}

#[test]
fn the_same_rewrite_whatever_the_pieces() {
    let mut bytes = start();
    bytes.extend(request(
        1,
        &[request_line(), inc_named(":authority", b"a%2Fb", false)].concat(),
    ));
    bytes.extend(frame(0x0, 0x1, 1, b"body"));
    let whole = rewrite(&bytes, bytes.len());
    assert_ne!(whole, bytes);
    for step in [1, 3, 10, 64] {
        assert_eq!(rewrite(&bytes, step), whole, "pieces of {step}");
    }
}

#[test]
fn what_it_cannot_follow_passes_unchanged() {
    // Not HTTP/2.
    let http1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert_eq!(rewrite(&http1, 5), http1);
    // An HPACK index that does not exist; then an authority it would
    // otherwise rewrite: the connection is a pipe from the error on.
    let mut bytes = start();
    bytes.extend(request(1, &[request_line(), indexed(70)].concat()));
    bytes.extend(request(
        3,
        &[request_line(), inc_indexed(1, b"a/b", false)].concat(),
    ));
    assert_eq!(rewrite(&bytes, 11), bytes);
    // A CONTINUATION with no HEADERS before it.
    let mut bytes = start();
    bytes.extend(frame(
        frame::CONTINUATION,
        frame::END_HEADERS,
        1,
        &indexed(2),
    ));
    bytes.extend(request(
        3,
        &[request_line(), inc_indexed(1, b"a/b", false)].concat(),
    ));
    assert_eq!(rewrite(&bytes, 4), bytes);
    // A header block over the limit.
    let mut bytes = start();
    let big = inc_named("x-huge", &vec![b'h'; MAX_HEADER_BLOCK], false);
    bytes.extend(request(1, &[request_line(), big].concat()));
    bytes.extend(request(
        3,
        &[request_line(), inc_indexed(1, b"a/b", false)].concat(),
    ));
    assert!(rewrite(&bytes, 1000) == bytes);
    // Cut short mid-frame: what came goes on.
    let mut bytes = start();
    bytes.extend(&request(1, &[request_line(), inc_indexed(1, b"a/b", false)].concat())[..12]);
    assert_eq!(rewrite(&bytes, 3), bytes);
}

#[test]
fn replacements_are_valid_and_of_the_same_length() {
    for v in [
        &b"/run/crius/crius.sock"[..],
        b"run%2Fcrius%2Fcrius.sock",
        b"a b",
        b"::",
        b"\xff\x00",
        b"[::1",
        b"x:port:",
        &[b'/'; 8000],
    ] {
        assert!(!valid_authority(v), "{v:?}");
        let r = same_length_authority(v);
        assert_eq!(r.len(), v.len());
        assert!(valid_authority(&r), "{r:?}");
    }
    assert!(!valid_authority(b""));
    assert!(valid_authority(b"localhost:1234"));
}
