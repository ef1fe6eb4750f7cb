//! Errors of the CNI client.

/// A CNI error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Placeholder until the library lands.
    #[error("{0}")]
    Other(String),
}
