//! Following the client's frames: the connection preface, then each frame
//! header; header blocks (HEADERS and CONTINUATIONs) are held until whole,
//! given to [`hpack::rewrite_block`], and framed anew if it changed them.

use super::hpack::{self, Malformed, Table};

/// The client connection preface (RFC 9113 section 3.4).
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The largest header block (HEADERS and its CONTINUATIONs) followed; a
/// larger one is passed on as it is (h2 refuses header lists over its own,
/// smaller, limit).
pub(super) const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// The largest frame payload every HTTP/2 peer must accept, used when a
/// changed header block is framed anew.
const MIN_MAX_FRAME: usize = 16 * 1024;

/// Frame types and flags (RFC 9113 section 6).
pub(super) mod frame {
    pub const HEADERS: u8 = 0x1;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
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
pub(super) struct Rewriter {
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
    pub(super) fn new() -> Self {
        Rewriter {
            state: State::Preface(0),
            block: Block::default(),
            table: Table::new(),
        }
    }

    /// Takes the next bytes from the client; appends what the server is to
    /// read to `out`.
    pub(super) fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
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
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) {
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
        match hpack::rewrite_block(&mut self.table, &block.fragments) {
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

/// Appends a frame header (RFC 9113 section 4.1).
pub(super) fn put_frame_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}
