//! A SPDY/3.1 session over one connection: streams opened by either side,
//! their data, half-closes and resets, PING replies, GOAWAY, and flow
//! control windows.
//!
//! One task reads frames, one writes them; streams are handles onto the
//! shared state. Flow control, as the kubelet's peers do it: spdystream
//! (kubectl, crictl, the API server) neither sends WINDOW_UPDATE nor
//! honours one, so the send windows are enforced only once the peer has
//! shown it does flow control (a WINDOW_UPDATE or an INITIAL_WINDOW_SIZE
//! setting); until then data flows as between kubelet and kubectl. On the
//! receiving side crius sends WINDOW_UPDATEs as data is consumed, and
//! bounds what one stream may buffer, and what all streams of the session
//! together may: past either the reading task waits, so a slow consumer
//! slows its sender through TCP rather than growing memory (without the
//! session bound, a peer could fill every one of its streams' buffers in
//! turn).

mod handle;
mod io;
mod shared;
mod stream;
#[cfg(test)]
mod tests;

pub use handle::{Incoming, Session};
pub use shared::{INITIAL_WINDOW, MAX_DATA_FRAME, SessionConfig, StreamError};
pub use stream::{RecvHalf, SendHalf, Stream};
