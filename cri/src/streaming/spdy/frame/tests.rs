//! The codec against itself, another implementation's bytes, and
//! malformed input.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::super::dictionary::SPDY3_DICTIONARY;
use super::block::{HeaderCompressor, adler32};
use super::*;

fn roundtrip(frames: Vec<Frame>) {
    let mut enc = FrameEncoder::new();
    let mut dec = FrameDecoder::new();
    let mut buf = BytesMut::new();
    for f in &frames {
        enc.encode(f.clone(), &mut buf).unwrap();
    }
    let mut got = Vec::new();
    while let Some(f) = dec.decode(&mut buf).unwrap() {
        got.push(f);
    }
    assert!(buf.is_empty());
    assert_eq!(got, frames);
}

fn headers() -> Headers {
    Headers::new()
        .with("streamtype", "data")
        .with("port", "8080")
        .with("requestid", "0")
}

#[test]
fn every_frame_type_round_trips() {
    roundtrip(vec![
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 3,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: headers(),
        },
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: Headers::new(),
        },
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"GET / HTTP/1.0\r\n\r\n"),
        },
        Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::new(),
        },
        Frame::Headers {
            stream_id: 1,
            fin: true,
            headers: Headers::new().with("x-multi", "a").with("x-multi", "b"),
        },
        Frame::RstStream {
            stream_id: 3,
            status: rst::CANCEL,
        },
        Frame::Settings {
            clear: true,
            entries: vec![Setting {
                flags: 1,
                id: settings::INITIAL_WINDOW_SIZE,
                value: 1 << 20,
            }],
        },
        Frame::Ping { id: 2 },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 65536,
        },
        Frame::WindowUpdate {
            stream_id: 5,
            delta: MAX_STREAM_ID,
        },
        Frame::GoAway {
            last_good_stream_id: 7,
            status: goaway::OK,
        },
        // A second header block, compressed on the same zlib stream.
        Frame::SynStream {
            stream_id: 9,
            associated_to: 1,
            priority: 7,
            slot: 2,
            fin: true,
            unidirectional: true,
            headers: headers(),
        },
    ]);
}

#[test]
fn frames_split_anywhere_decode_the_same() {
    let mut enc = FrameEncoder::new();
    let mut all = BytesMut::new();
    let frame = Frame::SynStream {
        stream_id: 1,
        associated_to: 0,
        priority: 0,
        slot: 0,
        fin: false,
        unidirectional: false,
        headers: headers(),
    };
    enc.encode(frame.clone(), &mut all).unwrap();
    let data = Frame::Data {
        stream_id: 1,
        fin: false,
        data: Bytes::from(vec![7u8; 1000]),
    };
    enc.encode(data.clone(), &mut all).unwrap();
    let mut dec = FrameDecoder::new();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in all.iter() {
        buf.put_u8(*b);
        if let Some(f) = dec.decode(&mut buf).unwrap() {
            got.push(f);
        }
    }
    assert_eq!(got, vec![frame, data]);
}

#[test]
fn the_dictionary_is_spdy3s() {
    assert_eq!(SPDY3_DICTIONARY.len(), 1423);
    assert_eq!(adler32(SPDY3_DICTIONARY), 0xe3c6_a7c2);
    assert!(SPDY3_DICTIONARY.starts_with(b"\0\0\0\x07options"));
    assert!(SPDY3_DICTIONARY.ends_with(b"utf-,*,enq=0."));
}

/// A SYN_STREAM as Go's SPDY framer (spdystream, used by kubectl,
/// crictl and the API server) writes it: headers `port: 80`,
/// `requestid: 0`, `streamtype: error`, compressed at zlib level 9
/// with the SPDY/3 dictionary. Decoding it proves the dictionary and
/// the zlib handling interoperate.
#[test]
fn decodes_a_header_block_from_another_implementation() {
    let frame = hex::decode(GOLDEN_SYN_STREAM).unwrap();
    let mut buf = BytesMut::from(&frame[..]);
    let mut dec = FrameDecoder::new();
    let f = dec.decode(&mut buf).unwrap().unwrap();
    let Frame::SynStream {
        stream_id, headers, ..
    } = f
    else {
        panic!("{f:?}");
    };
    assert_eq!(stream_id, 1);
    assert_eq!(headers.get("port"), Some("80"));
    assert_eq!(headers.get("requestid"), Some("0"));
    assert_eq!(headers.get("streamType"), Some("error"));
    // What our encoder makes of the same headers decodes the same.
    let mut enc = FrameEncoder::new();
    let mut out = BytesMut::new();
    enc.encode(
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: headers.clone(),
        },
        &mut out,
    )
    .unwrap();
    let again = FrameDecoder::new().decode(&mut out).unwrap().unwrap();
    assert!(matches!(again, Frame::SynStream { headers: h, .. } if h == headers));
}

/// Generated with Python's zlib (level 9, SPDY/3 dictionary, sync
/// flush) over the name/value block of the test above.
const GOLDEN_SYN_STREAM: &str = "800300010000003c0000000100000000000078f9e3c6a7c202253a48f95b044aab4c\
    16064092b308125b99a054cc68004e872545a989b9d0a2863515141100000000ffff";

fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let mut dec = FrameDecoder::new();
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut buf)? {
        out.push(f);
    }
    Ok(out)
}

fn control(frame_type: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x8000u16 | 3).to_be_bytes());
    v.extend_from_slice(&frame_type.to_be_bytes());
    v.push(flags);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    v.extend_from_slice(payload);
    v
}

#[test]
fn malformed_frames_are_errors() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("data on stream 0", vec![0, 0, 0, 0, 0, 0, 0, 1, 9]),
        ("short RST_STREAM", control(3, 0, &[0, 0, 0, 1])),
        (
            "RST_STREAM status 0",
            control(3, 0, &[0, 0, 0, 1, 0, 0, 0, 0]),
        ),
        (
            "RST_STREAM stream 0",
            control(3, 0, &[0, 0, 0, 0, 0, 0, 0, 5]),
        ),
        ("long PING", control(6, 0, &[0, 0, 0, 1, 0])),
        ("short GOAWAY", control(7, 0, &[0, 0, 0, 1])),
        (
            "WINDOW_UPDATE delta 0",
            control(9, 0, &[0, 0, 0, 1, 0, 0, 0, 0]),
        ),
        (
            "SETTINGS count too big",
            control(4, 0, &[0, 0, 0, 9, 0, 0, 0, 7]),
        ),
        (
            "SETTINGS huge count",
            control(4, 0, &[0xff, 0xff, 0xff, 0xff]),
        ),
        ("short SYN_STREAM", control(1, 0, &[0, 0, 0, 1, 0, 0, 0, 0])),
        (
            "SYN_STREAM with garbage headers",
            control(1, 0, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]),
        ),
        (
            "SYN_STREAM with empty header block",
            control(1, 0, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
        ),
        ("SYN_REPLY stream 0", control(2, 0, &[0, 0, 0, 0])),
        ("SPDY/2 frame", {
            let mut v = control(6, 0, &[0, 0, 0, 1]);
            v[1] = 2;
            v
        }),
    ];
    for (name, bytes) in cases {
        assert!(decode_all(&bytes).is_err(), "{name} was accepted");
    }
}

#[test]
fn bad_header_blocks_are_errors() {
    let mut comp = HeaderCompressor::new();
    let blocks: Vec<(&str, Vec<u8>)> = vec![
        (
            "count past the end",
            vec![0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 0],
        ),
        (
            "uppercase name",
            vec![0, 0, 0, 1, 0, 0, 0, 1, b'A', 0, 0, 0, 0],
        ),
        ("empty name", vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("name length past the end", vec![0, 0, 0, 1, 0xff, 0, 0, 0]),
        (
            "repeated name",
            vec![
                0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 0, 0,
            ],
        ),
        ("trailing bytes", vec![0, 0, 0, 0, 1]),
        ("too many headers", vec![0, 1, 0, 0]),
    ];
    for (name, block) in blocks {
        let mut payload = BytesMut::from(&[0u8, 0, 0, 1][..]);
        comp.compress(&block, &mut payload).unwrap();
        let mut dec = FrameDecoder::new();
        // A fresh decoder needs the stream from its start: recompress.
        let mut fresh = HeaderCompressor::new();
        let mut p = BytesMut::from(&[0u8, 0, 0, 1][..]);
        fresh.compress(&block, &mut p).unwrap();
        let bytes = control(2, 0, &p);
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(dec.decode(&mut buf).is_err(), "{name} was accepted");
    }
}

#[test]
fn a_header_bomb_is_refused() {
    let mut block = Vec::new();
    block.extend_from_slice(&1u32.to_be_bytes());
    block.extend_from_slice(&1u32.to_be_bytes());
    block.push(b'a');
    let value = vec![b'x'; MAX_HEADER_BLOCK * 2];
    block.extend_from_slice(&(value.len() as u32).to_be_bytes());
    block.extend_from_slice(&value);
    let mut comp = HeaderCompressor::new();
    let mut p = BytesMut::from(&[0u8, 0, 0, 1][..]);
    comp.compress(&block, &mut p).unwrap();
    assert!(p.len() < 4096, "compressed to {}", p.len());
    let err = decode_all(&control(2, 0, &p)).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[test]
fn unknown_control_frames_are_skipped() {
    let mut bytes = control(10, 0, b"credential");
    bytes.extend(control(6, 0, &[0, 0, 0, 3]));
    assert_eq!(
        decode_all(&bytes).unwrap(),
        vec![Frame::Unknown { frame_type: 10 }, Frame::Ping { id: 3 }]
    );
}

#[test]
fn random_bytes_never_panic() {
    // A cheap deterministic fuzz; cri/fuzz holds the real fuzz target.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut enc = FrameEncoder::new();
    let mut valid = BytesMut::new();
    enc.encode(
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: headers(),
        },
        &mut valid,
    )
    .unwrap();
    for round in 0..20_000 {
        let mut bytes = if round % 2 == 0 {
            valid.to_vec()
        } else {
            (0..(next() % 64)).map(|_| next() as u8).collect()
        };
        for _ in 0..(next() % 4) {
            if !bytes.is_empty() {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
        }
        let _ = decode_all(&bytes);
    }
}

#[test]
fn unencodable_frames_are_errors() {
    let mut enc = FrameEncoder::new();
    let mut buf = BytesMut::new();
    for f in [
        Frame::Data {
            stream_id: 0,
            fin: false,
            data: Bytes::new(),
        },
        Frame::WindowUpdate {
            stream_id: 1,
            delta: 0,
        },
        Frame::RstStream {
            stream_id: 1,
            status: 0,
        },
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: Headers::new().with("a", "nul\0inside"),
        },
    ] {
        assert!(enc.encode(f, &mut buf).is_err());
        assert!(buf.is_empty());
    }
}
