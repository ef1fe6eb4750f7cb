//! The frames, their constants, and what can be wrong with them.

use bytes::Bytes;

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// The largest payload a frame can carry (24-bit length).
pub const MAX_PAYLOAD: usize = 0xff_ffff;
/// The largest decompressed header block accepted.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// The most name/value pairs a header block may hold.
pub const MAX_HEADERS: usize = 1024;
/// Stream ids and window deltas are 31 bits.
pub const MAX_STREAM_ID: u32 = 0x7fff_ffff;

/// Flag on data, SYN_STREAM, SYN_REPLY and HEADERS frames: the sender's
/// last frame on the stream.
pub const FLAG_FIN: u8 = 0x01;
/// Flag on SYN_STREAM: the receiver may not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// Flag on SETTINGS: forget persisted settings.
pub const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// RST_STREAM status codes (section 2.4.2).
pub mod rst {
    /// A generic protocol error.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// A frame for a stream that is not active.
    pub const INVALID_STREAM: u32 = 2;
    /// The stream was refused before any processing.
    pub const REFUSED_STREAM: u32 = 3;
    /// The protocol version is not supported.
    pub const UNSUPPORTED_VERSION: u32 = 4;
    /// The stream is no longer needed.
    pub const CANCEL: u32 = 5;
    /// An internal error.
    pub const INTERNAL_ERROR: u32 = 6;
    /// The peer broke flow control.
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    /// A SYN_REPLY for a stream already open.
    pub const STREAM_IN_USE: u32 = 8;
    /// Data or SYN_REPLY on a half-closed stream.
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
    /// A frame too large for the receiver.
    pub const FRAME_TOO_LARGE: u32 = 11;
}

/// GOAWAY status codes (section 2.6.6).
pub mod goaway {
    /// A normal end of session.
    pub const OK: u32 = 0;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// An internal error.
    pub const INTERNAL_ERROR: u32 = 2;
}

/// SETTINGS ids (section 2.6.4) crius acts on.
pub mod settings {
    /// How many streams the sender allows the receiver to open.
    pub const MAX_CONCURRENT_STREAMS: u32 = 4;
    /// The initial send window of every stream.
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
}

/// The header block of a SYN_STREAM, SYN_REPLY or HEADERS frame: ordered
/// name/value pairs, names lowercase (as SPDY/3 requires). A name with
/// several values appears once per value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub(super) Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Adds a value for `name` (lowercased).
    pub fn add(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_string()));
    }

    /// With a value for `name` added.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.add(name, value);
        self
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No pairs at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Entry flags (PERSIST_VALUE 1, PERSISTED 2).
    pub flags: u8,
    /// The setting (24 bits).
    pub id: u32,
    /// Its value.
    pub value: u32,
}

/// A SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Stream data.
    Data {
        /// The stream.
        stream_id: u32,
        /// The sender's last frame on the stream.
        fin: bool,
        /// The payload.
        data: Bytes,
    },
    /// Opens a stream.
    SynStream {
        /// The new stream's id (odd from clients, even from servers).
        stream_id: u32,
        /// The stream it is associated with (0: none).
        associated_to: u32,
        /// Priority 0 (highest) – 7.
        priority: u8,
        /// Credential slot (unused by crius).
        slot: u8,
        /// The sender sends nothing more (a stream of headers only).
        fin: bool,
        /// The receiver may not send on the stream.
        unidirectional: bool,
        /// The stream's headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream.
        stream_id: u32,
        /// The sender sends nothing more.
        fin: bool,
        /// Reply headers.
        headers: Headers,
    },
    /// Ends a stream abnormally.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// Why (see [`rst`]).
        status: u32,
    },
    /// Session settings.
    Settings {
        /// Forget persisted settings.
        clear: bool,
        /// The entries.
        entries: Vec<Setting>,
    },
    /// A liveness check; the receiver echoes the peer's.
    Ping {
        /// Odd from clients, even from servers.
        id: u32,
    },
    /// The sender accepts no more streams.
    GoAway {
        /// The last stream the sender acted on.
        last_good_stream_id: u32,
        /// Why (see [`goaway`]).
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// The sender's last frame on the stream.
        fin: bool,
        /// The headers.
        headers: Headers,
    },
    /// The receiver may send `delta` more bytes on a stream (or, with
    /// stream 0, on the whole session).
    WindowUpdate {
        /// The stream; 0 for the session.
        stream_id: u32,
        /// Bytes added to the window.
        delta: u32,
    },
    /// A control frame of a type crius does not know; skipped.
    Unknown {
        /// Its type.
        frame_type: u16,
    },
}

/// Control frame types.
pub(super) mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// Why bytes are not a valid SPDY/3.1 frame. Every such error ends the
/// session (the header compression state can no longer be trusted).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A frame that breaks the protocol.
    #[error("invalid SPDY {frame} frame: {reason}")]
    Invalid {
        /// Which frame.
        frame: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A control frame of another SPDY version.
    #[error("SPDY version {0} is not supported (only 3)")]
    Version(u16),
    /// A header block that does not decompress (or compress).
    #[error("SPDY header compression: {0}")]
    Compression(String),
    /// Reading or writing the connection failed.
    #[error("SPDY connection: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    pub(super) fn invalid(frame: &'static str, reason: impl Into<String>) -> Self {
        FrameError::Invalid {
            frame,
            reason: reason.into(),
        }
    }
}
