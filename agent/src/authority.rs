//! Any `:authority` on the unix socket.
//!
//! gRPC clients built on grpc-core (Python's grpcio, C++, Ruby, PHP) and
//! grpc-java send the socket path as the `:authority` of a call over a unix
//! socket: `/run/crius/crius.sock`, or since grpc-core 1.57
//! `run%2Fcrius%2Fcrius.sock`. Neither is a valid URI authority, and h2
//! (under hyper and tonic) resets every such stream with PROTOCOL_ERROR
//! while it turns the request's pseudo-headers into a URI, before hyper or
//! tonic see the request. h2 has no setting to relax that check (its pull
//! request 487 proposes one). containerd, on grpc-go, accepts any
//! authority; on a unix socket the authority names nothing (the socket is
//! the peer), so crius does too.
//!
//! [`AnyAuthority`] is the narrowest place to do it without changing h2:
//! it sits on the read side of each accepted connection and, in the
//! client's HEADERS frames only, replaces an `:authority` value that h2
//! would refuse by a valid one *of the same length* (the socket path with
//! each character outside `[A-Za-z0-9.-]` made `-`). Everything else goes
//! through byte for byte, and a connection that carries valid authorities
//! (crictl, kubelet, grpc-go, tonic) is never changed.
//!
//! Same length matters because HPACK is stateful: a literal header with
//! incremental indexing enters both ends' dynamic tables, whose eviction
//! goes by entry size (name + value + 32). A value of equal length keeps
//! h2's table exactly in step with the client's, so later references to the
//! entry (grpc-core sends the authority once and indexes it after) resolve
//! to the replaced value, and every other index stays right. To know which
//! literal names `:authority` (a literal name, static index 1, or a dynamic
//! entry named so), the rewriter follows the client's dynamic table: the
//! size and whether the name is `:authority` of every entry.
//!
//! What it cannot follow (a header block over [`MAX_HEADER_BLOCK`], an
//! HPACK or framing error, a client that does not start with the HTTP/2
//! preface) turns it into a plain pipe for the rest of the connection:
//! h2 then judges the bytes as they came, as without it.

mod huffman;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The largest header block (HEADERS and its CONTINUATIONs) followed; a
/// larger one is passed on as it is (h2 refuses header lists over its own,
/// smaller, limit).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// The largest frame payload every HTTP/2 peer must accept, used when a
/// changed header block is framed anew.
const MIN_MAX_FRAME: usize = 16 * 1024;
/// Entries of HPACK's static table (RFC 7541 Appendix A); `:authority` is
/// index 1.
const STATIC_ENTRIES: usize = 61;
/// The dynamic table's size before any size update: the default of
/// SETTINGS_HEADER_TABLE_SIZE, which crius's server does not change.
const DEFAULT_TABLE_SIZE: usize = 4096;

/// Frame types and flags (RFC 9113 section 6).
mod frame {
    pub const HEADERS: u8 = 0x1;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// An accepted connection whose client may name any `:authority`. See the
/// module docs.
#[derive(Debug)]
pub struct AnyAuthority<IO> {
    io: IO,
    rewriter: Rewriter,
    /// Bytes rewritten and not yet read by the server.
    out: Vec<u8>,
    /// Where `out` starts being unread.
    out_at: usize,
    eof: bool,
}

impl<IO> AnyAuthority<IO> {
    /// Wraps an accepted connection.
    pub fn new(io: IO) -> Self {
        AnyAuthority {
            io,
            rewriter: Rewriter::new(),
            out: Vec::new(),
            out_at: 0,
            eof: false,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for AnyAuthority<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_at < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_at);
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    this.out.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                this.rewriter.finish(&mut this.out);
            } else {
                this.rewriter.feed(read.filled(), &mut this.out);
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AnyAuthority<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Where the rewriter is in the client's byte stream.
#[derive(Debug)]
enum State {
    /// Passing the connection preface; this many bytes of it seen.
    Preface(usize),
    /// Reading a frame header.
    Head { head: [u8; 9], have: usize },
    /// Passing the rest of a frame that holds no header block.
    Pass(usize),
    /// Holding a HEADERS or CONTINUATION frame until its header block is
    /// whole; this many payload bytes still to come.
    Hold(usize),
    /// Not following the connection any more: a plain pipe.
    Pipe,
}

/// A header block being collected: its frames as they came, and what the
/// HEADERS frame said.
#[derive(Debug, Default)]
struct Block {
    /// Every byte of its frames, to pass on unchanged.
    raw: Vec<u8>,
    /// The current frame's payload.
    payload: Vec<u8>,
    /// The header block fragments, joined.
    fragments: Vec<u8>,
    /// The HEADERS frame's flags, stream, and priority fields.
    flags: u8,
    stream: u32,
    priority: Option<[u8; 5]>,
    /// Whether a HEADERS frame started it (so a CONTINUATION is expected).
    open: bool,
    /// The frame being held.
    kind: u8,
    frame_flags: u8,
}

/// The rewriting state machine, fed the client's bytes in order.
#[derive(Debug)]
pub struct Rewriter {
    state: State,
    block: Block,
    table: Table,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Rewriter {
    /// At the start of a connection.
    pub fn new() -> Self {
        Rewriter {
            state: State::Preface(0),
            block: Block::default(),
            table: Table::new(),
        }
    }

    /// Takes the next bytes from the client; appends what the server is to
    /// read to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match &mut self.state {
                State::Pipe => {
                    out.extend_from_slice(input);
                    return;
                }
                State::Preface(seen) => {
                    let n = input.len().min(PREFACE.len() - *seen);
                    if input[..n] != PREFACE[*seen..*seen + n] {
                        self.pipe(out);
                        continue;
                    }
                    out.extend_from_slice(&input[..n]);
                    *seen += n;
                    input = &input[n..];
                    if *seen == PREFACE.len() {
                        self.state = State::Head {
                            head: [0; 9],
                            have: 0,
                        };
                    }
                }
                State::Pass(left) => {
                    let n = input.len().min(*left);
                    out.extend_from_slice(&input[..n]);
                    *left -= n;
                    input = &input[n..];
                    if *left == 0 {
                        self.state = State::Head {
                            head: [0; 9],
                            have: 0,
                        };
                    }
                }
                State::Head { head, have } => {
                    let n = input.len().min(9 - *have);
                    head[*have..*have + n].copy_from_slice(&input[..n]);
                    *have += n;
                    input = &input[n..];
                    if *have == 9 {
                        let head = *head;
                        self.frame_head(head, out);
                    }
                }
                State::Hold(left) => {
                    let n = input.len().min(*left);
                    self.block.raw.extend_from_slice(&input[..n]);
                    self.block.payload.extend_from_slice(&input[..n]);
                    *left -= n;
                    input = &input[n..];
                    if *left == 0 {
                        self.frame_held(out);
                    }
                }
            }
        }
    }

    /// The client closed its side: whatever is held goes on as it is.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.pipe(out);
    }

    /// Stops following the connection, passing on what is held.
    fn pipe(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.block.raw);
        if let State::Head { head, have } = &self.state {
            out.extend_from_slice(&head[..*have]);
        }
        self.block = Block::default();
        self.state = State::Pipe;
    }

    /// A whole frame header: pass the frame on, or hold it.
    fn frame_head(&mut self, head: [u8; 9], out: &mut Vec<u8>) {
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let (headers, continuation) = (kind == frame::HEADERS, kind == frame::CONTINUATION);
        let too_big = self.block.raw.len() + head.len() + len > MAX_HEADER_BLOCK;
        // A header block is HEADERS then CONTINUATIONs of its stream with
        // nothing between; anything else is h2's to refuse, and a block
        // crius does not follow (too big, or a PUSH_PROMISE, which no
        // client may send) leaves the table unknown: a pipe from here on.
        let follow = if self.block.open {
            continuation && stream == self.block.stream && !too_big
        } else {
            !continuation && kind != frame::PUSH_PROMISE && !(headers && too_big)
        };
        if !follow {
            self.block.raw.extend_from_slice(&head);
            self.state = State::Hold(0);
            return self.pipe(out);
        }
        if !headers && !continuation {
            out.extend_from_slice(&head);
            self.state = match len {
                0 => State::Head {
                    head: [0; 9],
                    have: 0,
                },
                _ => State::Pass(len),
            };
            return;
        }
        self.block.raw.extend_from_slice(&head);
        self.block.kind = kind;
        self.block.frame_flags = flags;
        self.block.payload.clear();
        if headers {
            self.block.flags = flags;
            self.block.stream = stream;
            self.block.open = true;
        }
        self.state = State::Hold(len);
        if len == 0 {
            self.frame_held(out);
        }
    }

    /// A held frame is whole: add its fragment; at the end of the block,
    /// pass it on, rewritten if need be.
    fn frame_held(&mut self, out: &mut Vec<u8>) {
        let payload = std::mem::take(&mut self.block.payload);
        let fragment = if self.block.kind == frame::HEADERS {
            match headers_fragment(self.block.frame_flags, &payload) {
                Some((priority, fragment)) => {
                    self.block.priority = priority;
                    fragment
                }
                None => return self.pipe(out),
            }
        } else {
            &payload[..]
        };
        self.block.fragments.extend_from_slice(fragment);
        self.state = State::Head {
            head: [0; 9],
            have: 0,
        };
        if self.block.frame_flags & frame::END_HEADERS == 0 {
            return;
        }
        let block = std::mem::take(&mut self.block);
        match rewrite_block(&mut self.table, &block.fragments) {
            Ok(None) => out.extend_from_slice(&block.raw),
            Ok(Some(fragments)) => {
                write_headers(&block, &fragments, out);
            }
            Err(Malformed) => {
                self.block = block;
                self.pipe(out);
            }
        }
    }
}

/// The priority fields and the header block fragment of a HEADERS frame's
/// payload; `None` if the padding does not fit.
fn headers_fragment(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut p = payload;
    let mut pad = 0usize;
    if flags & frame::PADDED != 0 {
        let (&n, rest) = p.split_first()?;
        pad = usize::from(n);
        p = rest;
    }
    let mut priority = None;
    if flags & frame::PRIORITY != 0 {
        let (fields, rest) = p.split_first_chunk::<5>()?;
        priority = Some(*fields);
        p = rest;
    }
    let end = p.len().checked_sub(pad)?;
    Some((priority, &p[..end]))
}

/// Writes a header block anew: HEADERS (its flags but padding, with its
/// priority fields) and as many CONTINUATIONs as the block needs.
fn write_headers(block: &Block, fragments: &[u8], out: &mut Vec<u8>) {
    let prio_len = if block.priority.is_some() { 5 } else { 0 };
    let first = fragments.len().min(MIN_MAX_FRAME - prio_len);
    let (head, mut rest) = fragments.split_at(first);
    let mut flags = block.flags & !(frame::PADDED | frame::END_HEADERS);
    if rest.is_empty() {
        flags |= frame::END_HEADERS;
    }
    put_frame_head(
        out,
        prio_len + head.len(),
        frame::HEADERS,
        flags,
        block.stream,
    );
    if let Some(p) = block.priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(head);
    while !rest.is_empty() {
        let n = rest.len().min(MIN_MAX_FRAME);
        let (chunk, tail) = rest.split_at(n);
        let flags = if tail.is_empty() {
            frame::END_HEADERS
        } else {
            0
        };
        put_frame_head(out, n, frame::CONTINUATION, flags, block.stream);
        out.extend_from_slice(chunk);
        rest = tail;
    }
}

fn put_frame_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// A header block that does not parse as HPACK: h2's to refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Malformed;

/// What the rewriter knows of one dynamic table entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Name length plus value length plus 32 (RFC 7541 section 4.1).
    size: usize,
    name_len: usize,
    authority: bool,
}

/// The client's HPACK dynamic table, as far as rewriting needs it: sizes,
/// name lengths, and which names are `:authority`.
#[derive(Debug)]
struct Table {
    /// Newest first (index 62 is the front).
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
}

impl Table {
    fn new() -> Self {
        Table {
            entries: VecDeque::new(),
            size: 0,
            max: DEFAULT_TABLE_SIZE,
        }
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size,
                None => break,
            }
        }
    }

    /// A dynamic table size update.
    fn set_max(&mut self, max: usize) {
        self.max = max;
        self.evict_to(max);
    }

    /// RFC 7541 section 4.4: evict until the entry fits; one larger than
    /// the whole table empties it and is not added.
    fn insert(&mut self, name_len: usize, value_len: usize, authority: bool) {
        let size = name_len + value_len + 32;
        if size > self.max {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max - size);
        self.entries.push_front(Entry {
            size,
            name_len,
            authority,
        });
        self.size += size;
    }

    /// The name of entry `index` (static, then dynamic): whether it is
    /// `:authority`, and its length.
    fn name(&self, index: usize) -> Result<(bool, usize), Malformed> {
        match index {
            0 => Err(Malformed),
            1..=STATIC_ENTRIES => Ok((index == 1, STATIC_NAMES[index - 1].len())),
            _ => self
                .entries
                .get(index - STATIC_ENTRIES - 1)
                .map(|e| (e.authority, e.name_len))
                .ok_or(Malformed),
        }
    }
}

/// The names of the static table (RFC 7541 Appendix A).
const STATIC_NAMES: [&str; STATIC_ENTRIES] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// An HPACK integer with an `n`-bit prefix (RFC 7541 section 5.1) at
/// `*pos`.
fn integer(block: &[u8], pos: &mut usize, n: u32) -> Result<usize, Malformed> {
    let mask = (1u8 << n) - 1;
    let first = block.get(*pos).ok_or(Malformed)? & mask;
    *pos += 1;
    if first < mask {
        return Ok(usize::from(first));
    }
    let mut value = usize::from(mask);
    let mut shift = 0u32;
    loop {
        let b = *block.get(*pos).ok_or(Malformed)?;
        *pos += 1;
        // Four continuation bytes reach 2^28: more than any length or
        // index in a block crius follows.
        if shift > 21 {
            return Err(Malformed);
        }
        value += usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// An HPACK string literal (section 5.2) at `*pos`: its decoded bytes and
/// where the literal (prefix included) starts.
fn string(block: &[u8], pos: &mut usize) -> Result<(Vec<u8>, usize), Malformed> {
    let start = *pos;
    let huffman = block.get(*pos).ok_or(Malformed)? & 0x80 != 0;
    let len = integer(block, pos, 7)?;
    let end = pos.checked_add(len).ok_or(Malformed)?;
    let raw = block.get(*pos..end).ok_or(Malformed)?;
    *pos = end;
    let value = if huffman {
        huffman::decode(raw).map_err(|_| Malformed)?
    } else {
        raw.to_vec()
    };
    Ok((value, start))
}

/// A raw string literal holding `value`.
fn raw_string(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 5);
    let mut len = value.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(value);
    out
}

/// Whether h2 takes `value` as an `:authority` (it parses it as a URI
/// authority, as here).
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// A valid authority as long as `value`: its characters outside
/// `[A-Za-z0-9.-]` made `-` (`run%2Fcrius%2Fcrius.sock` becomes
/// `run-2Fcrius-2Fcrius.sock`).
fn same_length_authority(value: &[u8]) -> Vec<u8> {
    let safe: Vec<u8> = value
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
                b
            } else {
                b'-'
            }
        })
        .collect();
    if valid_authority(&safe) {
        safe
    } else {
        vec![b'x'; value.len()]
    }
}

/// Walks one header block, following the dynamic table; the block with
/// every refused `:authority` replaced, or `None` if none was.
fn rewrite_block(table: &mut Table, block: &[u8]) -> Result<Option<Vec<u8>>, Malformed> {
    // (range of the block, replacement)
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let start = pos;
        let b = block[pos];
        if b & 0x80 != 0 {
            // Indexed field: nothing to rewrite (an indexed `:authority`
            // was rewritten when it entered the table).
            let index = integer(block, &mut pos, 7)?;
            table.name(index)?;
            continue;
        }
        if b & 0xe0 == 0x20 {
            let max = integer(block, &mut pos, 5)?;
            table.set_max(max);
            continue;
        }
        // A literal: with incremental indexing (01), without (0000) or
        // never indexed (0001).
        let indexing = b & 0xc0 == 0x40;
        let index = integer(block, &mut pos, if indexing { 6 } else { 4 })?;
        let (authority, name_len) = if index == 0 {
            let (name, _) = string(block, &mut pos)?;
            (name == b":authority", name.len())
        } else {
            table.name(index)?
        };
        let (value, value_start) = string(block, &mut pos)?;
        if indexing {
            table.insert(name_len, value.len(), authority);
        }
        if authority && !valid_authority(&value) {
            if !value.is_empty() {
                edits.push((value_start, pos, raw_string(&same_length_authority(&value))));
            } else if !indexing {
                // No valid authority is empty; one that enters no table
                // can go, and no authority is valid too.
                edits.push((start, pos, Vec::new()));
            }
            // An empty one entering the table cannot be replaced without
            // changing the table: h2 refuses that stream, as before.
        }
    }
    if edits.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(block.len() + 16);
    let mut at = 0;
    for (from, to, with) in edits {
        out.extend_from_slice(&block[at..from]);
        out.extend_from_slice(&with);
        at = to;
    }
    out.extend_from_slice(&block[at..]);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

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
}
