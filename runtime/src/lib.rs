//! The node's state machine and everything that touches the kernel: the
//! image store, pod sandboxes, containers, the OCI runtime and the
//! per-container monitor. Knows nothing of protobuf or gRPC.
//!
//! [`Runtime`] (in `node/`) is the facade the CRI layer calls. Below it
//! the parts own the node's state: the pod part ([`sandbox`]), the
//! container part ([`container`]) and the image store ([`image`]); below
//! them the shared pieces (records, cgroups, the OCI runtime, the monitor,
//! the metadata store, the filesystem helpers). Nothing imports upward:
//! this file only names the modules and what the crate exports.

pub mod cgroups;
pub mod config;
pub mod container;
pub mod crash;
pub mod error;
pub mod fsutil;
pub mod image;
pub mod layout;
pub mod metrics;
pub mod monitor;
mod mount_tree;
mod node;
pub mod oci;
pub mod records;
pub mod sandbox;
mod state;
pub mod stats;
pub mod store;
pub mod validate;

pub use config::Config;
pub use container::events;
pub use error::{Error, Result};
pub use node::{FilesystemUsage, RUNTIME_NAME, RUNTIME_VERSION, Runtime, RuntimeStatus};
pub use sandbox::network::NetworkStatus;
