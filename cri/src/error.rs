//! The one place runtime errors become gRPC statuses.

use crius_runtime::Error;
use tonic::{Code, Status};

/// Maps a runtime error to the gRPC status kubelet and crictl expect; the
/// message is the error's own, which names the object concerned.
pub fn to_status(err: Error) -> Status {
    let code = match &err {
        // A full disk is no bug of ours, whichever call ran into it.
        e if e.is_disk_full() => Code::ResourceExhausted,
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::NotFound { .. } => Code::NotFound,
        Error::AlreadyExists { .. } => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::Unavailable(_) => Code::Unavailable,
        Error::ResourceExhausted(_) => Code::ResourceExhausted,
        // kubelet takes DeadlineExceeded from ExecSync as a probe timeout.
        Error::Timeout(_) => Code::DeadlineExceeded,
        Error::External { .. }
        | Error::Io { .. }
        | Error::Store { .. }
        | Error::Network { .. }
        | Error::Internal(_) => Code::Internal,
    };
    // The server's layer logs the failure with its method (agent's
    // metrics.rs), at WARN for this code.
    Status::new(code, err.to_string())
}

/// Maps a streaming URL failure: a kind of session not served is
/// UNIMPLEMENTED, too many waiting sessions RESOURCE_EXHAUSTED.
pub fn url_status(err: crate::streaming::UrlError) -> Status {
    use crate::streaming::UrlError;
    use crate::streaming::tokens::TokenError;
    match err {
        UrlError::Unsupported(method) => unimplemented(method),
        UrlError::Token(e @ TokenError::TooMany(_)) => Status::resource_exhausted(e.to_string()),
        UrlError::Token(e) => Status::internal(e.to_string()),
    }
}

/// A required field of the request is missing.
pub fn missing(what: &str) -> Status {
    Status::invalid_argument(format!("{what} is required"))
}

/// The RPC is not implemented (yet).
pub fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!("{method} is not implemented by crius"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        let s = to_status(Error::not_found("container", "abc"));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "container \"abc\" not found");
        let s = to_status(Error::AlreadyExists {
            kind: "pod sandbox",
            name: "a_b_c_0".into(),
            id: "123".into(),
        });
        assert_eq!(s.code(), Code::AlreadyExists);
        assert!(s.message().contains("a_b_c_0"));
        assert_eq!(
            to_status(Error::Unavailable("registry x down".into())).code(),
            Code::Unavailable
        );
        assert_eq!(unimplemented("Exec").code(), Code::Unimplemented);
        let full = |e: std::io::Error| {
            to_status(Error::io("write /var/lib/crius/content/ingest/x.tmp", e))
        };
        for e in [
            // ENOSPC, as the kernel reports it.
            std::io::Error::from_raw_os_error(28),
            std::io::Error::from(std::io::ErrorKind::QuotaExceeded),
            // What tokio reports of a failed buffered write: the kind only.
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        ] {
            let s = full(e);
            assert_eq!(s.code(), Code::ResourceExhausted);
            assert!(
                s.message().contains("/var/lib/crius/content"),
                "{}",
                s.message()
            );
        }
        assert_eq!(
            // EIO
            full(std::io::Error::from_raw_os_error(5)).code(),
            Code::Internal
        );
        assert!(unimplemented("Exec").message().contains("Exec"));
    }
}
