//! SPDY/3.1 frames (SPDY draft 3.1, section 2.2 – 2.6) and their codec.
//!
//! [`FrameDecoder`] turns bytes into [`Frame`]s and [`FrameEncoder`] frames
//! into bytes; each owns the zlib stream of header blocks for its
//! direction (one per direction per connection, primed with the SPDY/3
//! dictionary, flushed with a sync flush after every block). Both are
//! `tokio_util` codecs.
//!
//! Malformed input is an error, never a panic: lengths are checked against
//! the frame before anything is read, header blocks are size-capped after
//! decompression, and control frames of unknown types are skipped as the
//! specification asks.

mod block;
mod decode;
mod encode;
#[cfg(test)]
mod tests;
mod types;

pub use decode::FrameDecoder;
pub use encode::FrameEncoder;
pub use types::{
    FLAG_CLEAR_SETTINGS, FLAG_FIN, FLAG_UNIDIRECTIONAL, Frame, FrameError, Headers,
    MAX_HEADER_BLOCK, MAX_HEADERS, MAX_PAYLOAD, MAX_STREAM_ID, Setting, VERSION, goaway, rst,
    settings,
};
