//! SPDY/3.1, as Kubernetes streaming uses it (`Upgrade: SPDY/3.1`): the
//! frames and their header compression ([`frame`]), and sessions of
//! streams over one connection ([`session`]). No Rust crate serves
//! SPDY, so this is crius's own, kept small: what kubectl, crictl and the
//! API server (all through moby/spdystream) send and expect.

mod dictionary;
pub mod frame;
pub mod session;

pub use frame::{Frame, FrameDecoder, FrameEncoder, FrameError, Headers};
pub use session::{Incoming, RecvHalf, SendHalf, Session, SessionConfig, Stream, StreamError};
