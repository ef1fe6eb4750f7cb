//! A client of the Container Network Interface spec: load network configs,
//! run plugins, pin network namespaces. Knows nothing of pods beyond what
//! the CNI spec names.

pub mod error;

pub use error::Error;
