//! The image store: pulls images from registries, keeps their blobs by
//! digest and their layers unpacked (shared between images), and records
//! what images the node has.
//!
//! On disk, under crius's root:
//! - `content/blobs/sha256/<hex>` — manifests, configs, compressed layers;
//!   `content/ingest/` — blobs being downloaded.
//! - `layers/<chain id hex>/fs` — a layer's tree, overlayfs-ready
//!   (whiteouts as 0/0 character devices, opaque directories marked with
//!   `trusted.overlay.opaque`); `layers/<chain id hex>/layer.json` — where
//!   it came from; `layers/.tmp-*` — layers being unpacked.
//! - `images/<config digest hex>.json` — image records.
//!
//! Whatever is being written is invisible until whole (temp + rename);
//! [`ImageStore::open`] removes what a crash left half-made.

mod content;
mod layers;
mod locks;
mod manifest;
mod pull;
mod reference;
mod store;
mod tmp;
mod unpack;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::RegistrySettings;
use crate::error::{Error, Result};

pub use reference::ImageRef;

/// The node's images. `Send + Sync`; share it through an `Arc`.
#[derive(Debug)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

/// What pulls share (and move into blocking tasks).
#[derive(Debug)]
struct Inner {
    content: content::ContentStore,
    layers: layers::LayerStore,
    records: store::ImageRecords,
    registry: RegistrySettings,
    blob_locks: locks::KeyLocks,
}

/// Registry credentials for one pull.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// An image the node has.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Image {
    /// `sha256:<config digest hex>`.
    pub id: String,
    /// Normalised `name:tag`s, e.g. `docker.io/library/busybox:latest`.
    pub repo_tags: Vec<String>,
    /// `name@<manifest digest>`; for an image pulled through an index, the
    /// index digest (as containerd's CRI plugin does).
    pub repo_digests: Vec<String>,
    /// Config plus compressed layer sizes, bytes.
    pub size: u64,
    /// The container defaults from the image config.
    pub config: ImageConfig,
    /// Chain ids of the layers, base first.
    pub layers: Vec<String>,
}

/// The container defaults an image config carries.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, `KEY=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: String,
    /// `User`: `name`, `uid`, `uid:gid`, …
    pub user: String,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`, e.g. `SIGTERM`; empty when unset.
    pub stop_signal: String,
    /// `Volumes`: container paths.
    pub volumes: Vec<String>,
    /// `ExposedPorts`: `80/tcp` …
    pub exposed_ports: Vec<String>,
}

impl ImageStore {
    /// Opens the store under `root` (crius's root directory): loads the
    /// image records and removes half-made downloads and unpacks a crash
    /// left behind.
    pub fn open(root: &Path, registry: RegistrySettings) -> Result<ImageStore> {
        // oci-client's TLS needs a process-wide rustls provider; another
        // part of crius may have installed one already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(ImageStore {
            inner: Arc::new(Inner {
                content: content::ContentStore::open(&root.join("content"))?,
                layers: layers::LayerStore::open(&root.join("layers"))?,
                records: store::ImageRecords::open(&root.join("images"))?,
                registry,
                blob_locks: locks::KeyLocks::default(),
            }),
        })
    }

    /// Pulls `reference` (normalised: `busybox` is
    /// `docker.io/library/busybox:latest`) and records it; returns the
    /// record. A tag that pointed to another image moves to this one.
    ///
    /// Errors: `InvalidArgument` for a bad reference; `NotFound` when the
    /// registry has no such manifest (or none for this node's platform);
    /// `Unavailable` when the registry cannot be reached (or fails
    /// transiently); `FailedPrecondition` when it requires authentication
    /// or rejects the credentials; `External` when it serves bad content
    /// (digest or size mismatch, malformed manifest or layer, zstd).
    /// A failed pull leaves no temp files and no record; blobs and layers
    /// it completed and verified stay for the next attempt. If the future
    /// is dropped mid-pull, a layer unpack under way finishes (or cleans
    /// up) on its own blocking thread.
    pub async fn pull(&self, reference: &str, credentials: Option<&Credentials>) -> Result<Image> {
        pull::pull(&self.inner, reference, credentials).await
    }

    /// Every image, ordered by id.
    pub fn list(&self) -> Vec<Image> {
        self.inner.records.list()
    }

    /// Finds an image by id (`sha256:<hex>`, bare hex, or a unique prefix
    /// of at least 3 hex characters), repo tag (normalised) or repo
    /// digest. `InvalidArgument` if `reference_or_id` is none of these.
    pub fn get(&self, reference_or_id: &str) -> Result<Option<Image>> {
        self.inner.records.resolve(reference_or_id)
    }

    /// The unpacked layer directories of `image`, lowest (base) first:
    /// overlayfs lower dirs, to be given to overlayfs top first.
    pub fn layer_paths(&self, image: &Image) -> Result<Vec<PathBuf>> {
        image
            .layers
            .iter()
            .map(|chain_id| {
                let digest = content::Digest::parse(chain_id)
                    .map_err(|m| Error::Internal(format!("image {}: layer {m}", image.id)))?;
                if !self.inner.layers.has(&digest) {
                    return Err(Error::not_found("image layer", chain_id.clone()));
                }
                Ok(self.inner.layers.fs_path(&digest))
            })
            .collect()
    }
}
