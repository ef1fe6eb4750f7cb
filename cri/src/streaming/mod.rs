//! The streaming server.
pub mod spdy;
