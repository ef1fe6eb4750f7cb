//! The node's state machine and everything that touches the kernel: the
//! image store, pod sandboxes, containers, the OCI runtime and the
//! per-container monitor. Knows nothing of protobuf or gRPC.

pub mod config;
pub mod container;
pub mod error;
pub mod fsutil;
pub mod image;
pub mod monitor;
pub mod oci;
pub mod sandbox;
pub mod store;

pub use config::Config;
pub use error::{Error, Result};
