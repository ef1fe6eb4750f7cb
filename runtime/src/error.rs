//! The one error type of the runtime crate.
//!
//! Every variant says what was wrong and which object it concerned; the CRI
//! layer maps variants to gRPC codes in exactly one place.

use std::path::PathBuf;

/// A runtime error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed (missing field, bad value).
    #[error("{0}")]
    InvalidArgument(String),
    /// The named object does not exist.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// What kind of object ("pod sandbox", "container", "image" …).
        kind: &'static str,
        /// The id, name or reference asked for.
        id: String,
    },
    /// An object with that identity already exists.
    #[error("{kind} {name:?} already exists (id {id})")]
    AlreadyExists {
        /// What kind of object.
        kind: &'static str,
        /// The name that clashed.
        name: String,
        /// The id of the object holding the name.
        id: String,
    },
    /// The object is in a state that does not allow the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A remote party (registry) could not be reached or answered with a
    /// transient error.
    #[error("{0}")]
    Unavailable(String),
    /// A call to an external program (OCI runtime, CNI plugin, monitor)
    /// failed.
    #[error("{what}: {message}")]
    External {
        /// What was being done ("runc start abc…").
        what: String,
        /// What the program said.
        message: String,
    },
    /// A filesystem or kernel call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the object or path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Stored metadata could not be read or written.
    #[error("metadata {path}: {message}")]
    Store {
        /// The record's file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A network (CNI) operation failed.
    #[error("{context}: {source}")]
    Network {
        /// What was being done, naming the pod.
        context: String,
        /// The CNI error (boxed: it is large, and rare).
        #[source]
        source: Box<crius_cni::Error>,
    },
    /// A configured limit would be exceeded (an image's layers unpacking
    /// to more than the configured cap).
    #[error("{0}")]
    ResourceExhausted(String),
    /// An operation ran out of the time it was given (ExecSync's timeout).
    #[error("{0}")]
    Timeout(String),
    /// Anything else that is our fault.
    #[error("{0}")]
    Internal(String),
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this is a filesystem out of space or over its quota (ENOSPC,
    /// EDQUOT): the node's disk, not the request, is at fault.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
                    || matches!(
                        source.kind(),
                        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                    )
            }
            _ => false,
        }
    }

    /// An object that does not exist.
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }
}

/// Adds context to I/O results: `fs::read(p).context(|| format!("read {p:?}"))`.
pub trait IoContext<T> {
    /// Wraps an I/O error with what was being done.
    fn context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|source| Error::io(f(), source))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|errno| Error::io(f(), std::io::Error::from(errno)))
    }
}
