//! Header blocks on the wire: the uncompressed name/value block (section
//! 2.6.10), and the zlib streams that carry it, one per direction per
//! connection, primed with the SPDY/3 dictionary and flushed with a sync
//! flush after every block.

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::super::dictionary::SPDY3_DICTIONARY;
use super::types::{FrameError, Headers, MAX_HEADER_BLOCK, MAX_HEADERS};

impl Headers {
    /// The uncompressed name/value block (section 2.6.10): a 32-bit count
    /// of names, then each name and its values (NUL-joined), each with a
    /// 32-bit length.
    pub(super) fn encode_block(&self) -> Result<Vec<u8>, FrameError> {
        let mut names: Vec<(&str, Vec<&str>)> = Vec::new();
        for (n, v) in &self.0 {
            match names.iter_mut().find(|(seen, _)| seen == n) {
                Some((_, values)) => values.push(v),
                None => names.push((n, vec![v])),
            }
        }
        let mut out = Vec::new();
        put_len(&mut out, names.len())?;
        for (name, values) in names {
            if name.is_empty() {
                return Err(FrameError::invalid("headers", "empty header name"));
            }
            if values.iter().any(|v| v.contains('\0')) {
                return Err(FrameError::invalid(
                    "headers",
                    format!("value of {name:?} holds a NUL byte"),
                ));
            }
            put_len(&mut out, name.len())?;
            out.extend_from_slice(name.as_bytes());
            let joined = values.join("\0");
            put_len(&mut out, joined.len())?;
            out.extend_from_slice(joined.as_bytes());
        }
        Ok(out)
    }

    /// Parses an uncompressed name/value block.
    pub(super) fn decode_block(mut block: &[u8]) -> Result<Headers, FrameError> {
        let bad = |why: &str| FrameError::invalid("headers", why);
        let count = take_u32(&mut block).ok_or_else(|| bad("block shorter than its count"))?;
        if count as usize > MAX_HEADERS {
            return Err(bad("too many headers"));
        }
        let mut headers = Headers::new();
        for _ in 0..count {
            let name = take_string(&mut block).ok_or_else(|| bad("truncated header name"))?;
            let value = take_string(&mut block).ok_or_else(|| bad("truncated header value"))?;
            if name.is_empty() {
                return Err(bad("empty header name"));
            }
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(bad("header name is not lowercase"));
            }
            if headers.0.iter().any(|(n, _)| *n == name) {
                return Err(bad("header name repeated"));
            }
            for v in value.split('\0') {
                headers.0.push((name.clone(), v.to_string()));
            }
        }
        if !block.is_empty() {
            return Err(bad("bytes after the last header"));
        }
        Ok(headers)
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) -> Result<(), FrameError> {
    let n = u32::try_from(n).map_err(|_| FrameError::invalid("headers", "header too long"))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn take_u32(buf: &mut &[u8]) -> Option<u32> {
    let (head, rest) = buf.split_first_chunk::<4>()?;
    *buf = rest;
    Some(u32::from_be_bytes(*head))
}

fn take_string(buf: &mut &[u8]) -> Option<String> {
    let len = take_u32(buf)? as usize;
    if buf.len() < len {
        return None;
    }
    let (s, rest) = buf.split_at(len);
    *buf = rest;
    String::from_utf8(s.to_vec()).ok()
}

/// Decompresses header blocks: one zlib stream for a whole direction of a
/// connection.
pub(super) struct HeaderDecompressor {
    z: Decompress,
}

impl HeaderDecompressor {
    pub(super) fn new() -> Self {
        HeaderDecompressor {
            z: Decompress::new(true),
        }
    }

    pub(super) fn decompress(&mut self, input: &[u8]) -> Result<Vec<u8>, FrameError> {
        let err = |m: String| FrameError::Compression(m);
        let mut out = Vec::with_capacity(input.len().saturating_mul(4).clamp(64, 4096));
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(err(format!(
                        "header block larger than {MAX_HEADER_BLOCK} bytes"
                    )));
                }
                out.reserve(out.len().max(256));
            }
            let (in_before, out_before) = (self.z.total_in(), out.len());
            let result = self
                .z
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            let consumed = usize::try_from(self.z.total_in() - in_before)
                .map_err(|_| err("zlib consumed more than it was given".into()))?;
            pos += consumed;
            let progressed = consumed > 0 || out.len() > out_before;
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(err("the peer ended its header zlib stream".into()));
                }
                Ok(Status::Ok | Status::BufError) => {
                    if pos == input.len() && out.len() < out.capacity() {
                        return Ok(out);
                    }
                    if !progressed && out.len() < out.capacity() {
                        return Err(err("truncated header block".into()));
                    }
                }
                Err(e) => match e.needs_dictionary() {
                    Some(id) if id == adler32(SPDY3_DICTIONARY) => {
                        self.z
                            .set_dictionary(SPDY3_DICTIONARY)
                            .map_err(|e| err(e.to_string()))?;
                    }
                    Some(id) => {
                        return Err(err(format!(
                            "header block wants dictionary {id:#010x}, not SPDY/3's"
                        )));
                    }
                    None => return Err(err(e.to_string())),
                },
            }
        }
    }
}

/// Compresses header blocks: one zlib stream for a whole direction.
pub(super) struct HeaderCompressor {
    z: Compress,
    primed: bool,
}

impl HeaderCompressor {
    pub(super) fn new() -> Self {
        HeaderCompressor {
            z: Compress::new(Compression::best(), true),
            primed: false,
        }
    }

    pub(super) fn compress(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
        let err = |m: String| FrameError::Compression(m);
        if !self.primed {
            self.z
                .set_dictionary(SPDY3_DICTIONARY)
                .map_err(|e| err(e.to_string()))?;
            self.primed = true;
        }
        let mut buf = Vec::with_capacity(input.len() + 64);
        let mut pos = 0;
        loop {
            if buf.len() == buf.capacity() {
                buf.reserve(buf.len().max(64));
            }
            let before = self.z.total_in();
            self.z
                .compress_vec(&input[pos..], &mut buf, FlushCompress::Sync)
                .map_err(|e| err(e.to_string()))?;
            pos += usize::try_from(self.z.total_in() - before)
                .map_err(|_| err("zlib consumed more than it was given".into()))?;
            // With room left after a sync flush, everything is out.
            if pos == input.len() && buf.len() < buf.capacity() {
                break;
            }
        }
        out.extend_from_slice(&buf);
        Ok(())
    }
}

/// Adler-32, to check a zlib stream asks for the SPDY/3 dictionary.
pub(super) fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}
