//! The image store: pulls images from registries (through mirrors, with
//! credentials), keeps manifests and configs by digest and layers
//! unpacked (shared between images and containers), records what images
//! the node has, and collects what nothing uses any more.
//!
//! On disk, under crius's root:
//! - `content/blobs/sha256/<hex>` — manifests, indexes, configs;
//!   `content/ingest/` — blobs being written or deleted.
//! - `layers/<chain id hex>/fs` — a layer's tree, overlayfs-ready
//!   (whiteouts as 0/0 character devices, opaque directories marked with
//!   `trusted.overlay.opaque`); `layers/<chain id hex>/layer.json` — where
//!   it came from; `layers/.tmp-*` — layers being unpacked or deleted.
//! - `images/<config digest hex>.json` — image records.
//!
//! Whatever is being written is invisible until whole (temp + rename);
//! whatever is being deleted is first made invisible (a rename to a temp
//! name), then deleted in the background; [`ImageStore::open`] removes
//! what a crash left half-made or half-deleted.

mod auth;
mod content;
mod distribution;
mod gc;
mod http;
mod layers;
mod locks;
mod manifest;
mod oauth;
mod pull;
mod reference;
mod registry;
mod store;
mod stream;
mod tmp;
pub mod unpack;
#[cfg(feature = "fuzzing")]
pub mod unpack_fuzzing;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::RegistrySettings;
use crate::error::{Error, Result};
use crate::fsutil::{self, DiskUsage};
use crate::metrics::PullMetrics;

pub use auth::Credentials;
pub use gc::Collected;
pub use reference::ImageRef;

/// The node's images. `Send + Sync`; clones share one store.
#[derive(Debug, Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

/// What pulls share (and move into blocking tasks).
#[derive(Debug)]
struct Inner {
    root: PathBuf,
    content: content::ContentStore,
    layers: layers::LayerStore,
    records: store::ImageRecords,
    registry: RegistrySettings,
    /// The registry clients, kept from pull to pull.
    http: registry::HttpClients,
    blob_locks: locks::KeyLocks,
    leases: Arc<gc::Leases>,
    trash: gc::Trash,
    metrics: PullMetrics,
}

/// Keeps an image's layers from garbage collection while it lives (see
/// [`ImageStore::hold`]).
#[derive(Debug)]
pub struct LayerHold {
    _lease: gc::Lease,
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
    /// Digests of the manifests (index, platform manifest) and config
    /// stored for it.
    #[serde(default)]
    pub blobs: Vec<String>,
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
    /// image records and removes half-made downloads and unpacks and
    /// half-deleted layers a crash left behind (the large ones in the
    /// background: start-up does not wait for them). `InvalidArgument` if the registry settings are wrong.
    pub fn open(
        root: &Path,
        registry: RegistrySettings,
        metrics: PullMetrics,
    ) -> Result<ImageStore> {
        registry::validate(&registry)?;
        // oci-client's TLS needs a process-wide rustls provider; another
        // part of crius may have installed one already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let trash = gc::Trash::new();
        Ok(ImageStore {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                content: content::ContentStore::open(&root.join("content"))?,
                layers: layers::LayerStore::open(&root.join("layers"), &trash)?,
                records: store::ImageRecords::open(&root.join("images"))?,
                registry,
                http: registry::HttpClients::default(),
                blob_locks: locks::KeyLocks::default(),
                leases: Arc::new(gc::Leases::default()),
                trash,
                metrics,
            }),
        })
    }

    /// Pulls `reference` (normalised: `busybox` is
    /// `docker.io/library/busybox:latest`) and records it; returns the
    /// record. A tag that pointed to another image moves to this one.
    /// `credentials` are the request's; without them (or for endpoints
    /// they are not meant for) the configured auth file is looked up.
    ///
    /// Errors: `InvalidArgument` for a bad reference or undecodable
    /// credentials; `NotFound` when the registry has no such manifest (or
    /// none for this node's platform); `Unavailable` when the registry
    /// cannot be reached, fails transiently or stalls; `FailedPrecondition`
    /// when it requires authentication or rejects the credentials;
    /// `External` when it serves bad content (digest or size mismatch,
    /// malformed manifest or layer). A failed pull leaves no temp files
    /// and no record; layers it completed and verified stay for the next
    /// attempt (or the next collection). If the future is dropped
    /// mid-pull, a layer unpack under way cleans up on its own blocking
    /// thread.
    pub async fn pull(&self, reference: &str, credentials: Option<&Credentials>) -> Result<Image> {
        pull::pull(&self.inner, reference, credentials).await
    }

    /// Every image, ordered by id.
    pub fn list(&self) -> Vec<Image> {
        self.inner.records.list()
    }

    /// The images ListImages's filter `filter` selects: with a repository
    /// alone (`busybox`, `registry:5000/app`: no tag, no digest), every
    /// image with a tag or digest in that repository, as CRI-O answers
    /// `crictl images REPO`; else the one image [`Self::get`] finds.
    pub fn matching(&self, filter: &str) -> Result<Vec<Image>> {
        let last = filter.rsplit('/').next().unwrap_or(filter);
        if filter.contains('@') || last.contains(':') || filter.starts_with("sha256:") {
            return Ok(self.get(filter)?.into_iter().collect());
        }
        let Ok(name) = reference::ImageRef::parse(filter).map(|r| r.name()) else {
            return Ok(self.get(filter)?.into_iter().collect());
        };
        let in_repo = |s: &String, sep: char| {
            s.strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with(sep))
        };
        let images: Vec<Image> = self
            .list()
            .into_iter()
            .filter(|i| {
                i.repo_tags.iter().any(|t| in_repo(t, ':'))
                    || i.repo_digests.iter().any(|d| in_repo(d, '@'))
            })
            .collect();
        if images.is_empty() {
            // A short image id ("cafe12") is no repository.
            return Ok(self.get(filter)?.into_iter().collect());
        }
        Ok(images)
    }

    /// Finds an image by id (`sha256:<hex>`, bare hex, or a unique prefix
    /// of at least 3 hex characters), repo tag (normalised) or repo
    /// digest. `InvalidArgument` if `reference_or_id` is none of these.
    pub fn get(&self, reference_or_id: &str) -> Result<Option<Image>> {
        self.inner.records.resolve(reference_or_id)
    }

    /// Removes the image `reference_or_id` names (id, tag or digest) with
    /// all its tags and digests, as containerd does; returns it, or `None`
    /// if there is no such image. Its layers and blobs stay until
    /// [`Self::collect_garbage`].
    pub async fn remove(&self, reference_or_id: &str) -> Result<Option<Image>> {
        let Some(image) = self.get(reference_or_id)? else {
            return Ok(None);
        };
        let inner = self.inner.clone();
        let id = image.id.clone();
        let removed = tokio::task::spawn_blocking(move || inner.records.remove(&id))
            .await
            .map_err(|e| Error::Internal(format!("remove image task: {e}")))??;
        if removed {
            tracing::info!(image = %image.id, tags = ?image.repo_tags, "image removed");
        }
        Ok(removed.then_some(image))
    }

    /// Collects the layers and blobs no image record references, no lease
    /// holds and `in_use` does not name (chain ids of layers containers
    /// use; called under the lease lock, so it must be quick). Deciding
    /// and moving the garbage out of sight is quick and done in place;
    /// deleting it is left to the store's trash thread, so this returns
    /// before the space is free (a large image's layers take a minute to
    /// delete) and no caller waits for it.
    pub async fn collect_garbage(
        &self,
        in_use: impl FnOnce() -> HashSet<String>,
    ) -> Result<Collected> {
        let (collected, doomed) = self.inner.doom_garbage(in_use)?;
        self.inner.trash.dispose(doomed.paths);
        if !collected.layers.is_empty() || !collected.blobs.is_empty() {
            tracing::info!(
                layers = collected.layers.len(),
                blobs = collected.blobs.len(),
                "collected unused image layers and blobs (deleting them in the background)"
            );
        }
        Ok(collected)
    }

    /// Keeps `image`'s layers from garbage collection until the hold is
    /// dropped: taken by CreateContainer before it looks for the layers,
    /// dropped once the container is recorded (and so in use).
    pub fn hold(&self, image: &Image) -> LayerHold {
        let lease = self.inner.leases.lease();
        for chain_id in &image.layers {
            lease.add(chain_id);
        }
        LayerHold { _lease: lease }
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

    /// The image's config as the registry served it (JSON), if stored.
    pub fn config_json(&self, image: &Image) -> Result<Option<Vec<u8>>> {
        let digest = content::Digest::parse(&image.id)
            .map_err(|m| Error::Internal(format!("image id: {m}")))?;
        self.inner.content.read(&digest)
    }

    /// ImageStatus's verbose information, a JSON object (as containerd's):
    /// the image config as served (`imageSpec`), the layers' chain ids
    /// (`chainIDs`) and the stored manifests and config (`blobs`).
    pub fn verbose_info(&self, image: &Image) -> Result<String> {
        let spec: serde_json::Value = match self.config_json(image)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Internal(format!(
                    "image {}: stored config is not JSON: {e}",
                    image.id
                ))
            })?,
            None => serde_json::Value::Null,
        };
        let info = serde_json::json!({
            "id": image.id,
            // containerd's name: the chain id of the image's top layer.
            "chainID": image.layers.last(),
            "chainIDs": image.layers,
            "blobs": image.blobs,
            "imageSpec": spec,
        });
        Ok(info.to_string())
    }

    /// Space and inodes the store's images take (blobs, layers,
    /// records), counted as `du` counts them, without what is being
    /// written or deleted (temp layers, `content/ingest/`'s files): the
    /// walk never enters a tree being deleted, and what a removal freed
    /// is reported freed at once.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let root = &self.inner.root;
        let mut total = DiskUsage::default();
        let mut add = |u: DiskUsage| {
            total.bytes += u.bytes;
            total.inodes += u.inodes;
        };
        add(fsutil::disk_usage(&root.join("images"))?);
        add(fsutil::disk_usage(&root.join("content/blobs"))?);
        for dir in ["content", "content/ingest"] {
            add(own_usage(&root.join(dir))?);
        }
        let layers = root.join("layers");
        add(own_usage(&layers)?);
        for entry in std::fs::read_dir(&layers)
            .map_err(|e| Error::io(format!("read {}", layers.display()), e))?
        {
            let entry = entry.map_err(|e| Error::io(format!("read {}", layers.display()), e))?;
            if !entry.file_name().to_string_lossy().starts_with('.') {
                add(fsutil::disk_usage(&entry.path())?);
            }
        }
        Ok(total)
    }
}

/// What a directory itself (not its entries) takes; nothing if missing.
fn own_usage(dir: &Path) -> Result<DiskUsage> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(dir) {
        Ok(m) => Ok(DiskUsage {
            bytes: m.blocks() * 512,
            inodes: 1,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DiskUsage::default()),
        Err(e) => Err(Error::io(format!("stat {}", dir.display()), e)),
    }
}

impl Inner {
    /// Decides what is garbage and moves it out of sight, under the lease
    /// lock.
    fn doom_garbage(
        &self,
        in_use: impl FnOnce() -> HashSet<String>,
    ) -> Result<(Collected, gc::Doomed)> {
        let mut collected = Collected::default();
        let mut doomed = gc::Doomed::default();
        let r = self.leases.locked(|held| -> Result<()> {
            let mut keep = in_use();
            for image in self.records.list() {
                keep.extend(image.layers.iter().cloned());
                keep.extend(image.blobs.iter().cloned());
                // Records from before `blobs` existed: the config and the
                // manifests their digests name.
                keep.insert(image.id.clone());
                for d in &image.repo_digests {
                    if let Some((_, digest)) = d.rsplit_once('@') {
                        keep.insert(digest.to_string());
                    }
                }
            }
            for chain_id in self.layers.list()? {
                if !gc::keeps(&keep, held, chain_id.as_str())
                    && let Some(p) = self.layers.doom(&chain_id)?
                {
                    collected.layers.push(chain_id.to_string());
                    doomed.paths.push(p);
                }
            }
            for digest in self.content.list()? {
                if !gc::keeps(&keep, held, digest.as_str())
                    && let Some(p) = self.content.doom(&digest)?
                {
                    collected.blobs.push(digest.to_string());
                    doomed.paths.push(p);
                }
            }
            Ok(())
        });
        match r {
            Ok(()) => Ok((collected, doomed)),
            Err(e) => {
                // What was moved aside already goes anyway.
                self.trash.dispose(doomed.paths);
                Err(e)
            }
        }
    }
}
