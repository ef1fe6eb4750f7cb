//! The client's HPACK state as far as rewriting needs it (RFC 7541): the
//! dynamic table's entry sizes and `:authority` names, the integer and
//! string literals of a header block, and the rewrite of one block.

use std::collections::VecDeque;

use super::huffman;

/// Entries of HPACK's static table (RFC 7541 Appendix A); `:authority` is
/// index 1.
const STATIC_ENTRIES: usize = 61;
/// The dynamic table's size before any size update: the default of
/// SETTINGS_HEADER_TABLE_SIZE, which crius's server does not change.
const DEFAULT_TABLE_SIZE: usize = 4096;

/// A header block that does not parse as HPACK: h2's to refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Malformed;

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
pub(super) struct Table {
    /// Newest first (index 62 is the front).
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
}

impl Table {
    pub(super) fn new() -> Self {
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
pub(super) fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// A valid authority as long as `value`: its characters outside
/// `[A-Za-z0-9.-]` made `-` (`run%2Fcrius%2Fcrius.sock` becomes
/// `run-2Fcrius-2Fcrius.sock`).
pub(super) fn same_length_authority(value: &[u8]) -> Vec<u8> {
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
pub(super) fn rewrite_block(table: &mut Table, block: &[u8]) -> Result<Option<Vec<u8>>, Malformed> {
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
