//! A failed exchange with a registry as the error the caller of a pull
//! sees: unavailable, not found, an authentication failure or bad content,
//! naming the endpoint, the image and the blob.

use crate::error::Error;
use crate::image::content::Digest;
use crate::image::http::FetchError;
use crate::image::reference::ImageRef;
use crate::image::registry::Endpoint;

/// Maps a failed registry exchange to our error, naming the endpoint, the
/// image and (for a blob) the blob.
pub(super) fn registry_error(
    image_ref: &ImageRef,
    ep: &Endpoint,
    with_credentials: bool,
    e: FetchError,
    blob: Option<&Digest>,
) -> Error {
    let subject = match blob {
        Some(d) => format!("{image_ref} (blob {d})"),
        None => image_ref.to_string(),
    };
    let bad_content = |message: String| Error::External {
        what: format!("pull {image_ref} from {ep}"),
        message,
    };
    let auth_error = || {
        Error::FailedPrecondition(if with_credentials {
            format!(
                "pull {image_ref}: authentication required for {ep}: the credentials were rejected"
            )
        } else {
            format!(
                "pull {image_ref}: authentication required for {ep} (or the repository does not \
                 exist)"
            )
        })
    };
    let missing = || match blob {
        None => Error::not_found("image", image_ref.to_string()),
        Some(d) => bad_content(format!("registry has no blob {d}")),
    };
    match &e {
        FetchError::Transport { source, .. } if source.is_connect() || source.is_timeout() => {
            Error::Unavailable(format!(
                "registry {ep} unreachable while pulling {subject}: {e}"
            ))
        }
        FetchError::Transport { .. } => Error::Unavailable(format!(
            "request to registry {ep} failed while pulling {subject}: {e}"
        )),
        FetchError::TimedOut { .. } => Error::Unavailable(format!(
            "registry {ep} too slow while pulling {subject}: {e}"
        )),
        FetchError::Status { status, codes, .. } => {
            let has = |c: &str| codes.iter().any(|x| x == c);
            if has("MANIFEST_UNKNOWN")
                || has("NAME_UNKNOWN")
                || has("NOT_FOUND")
                || has("BLOB_UNKNOWN")
            {
                missing()
            } else if has("UNAUTHORIZED") || has("DENIED") {
                auth_error()
            } else if has("TOOMANYREQUESTS") {
                Error::Unavailable(format!(
                    "registry {ep} is rate-limiting pulls of {subject}: {e}"
                ))
            } else {
                match status {
                    404 => missing(),
                    401 | 403 => auth_error(),
                    408 | 429 | 500..=599 => Error::Unavailable(format!(
                        "registry {ep} answered {status} while pulling {subject}: {e}"
                    )),
                    _ => bad_content(format!("{subject}: {e}")),
                }
            }
        }
        FetchError::TokenRefused(_) => auth_error(),
        FetchError::TooLarge { .. } | FetchError::Protocol(_) => {
            bad_content(format!("{subject}: {e}"))
        }
    }
}
