//! Pulling an image: resolve the reference to a manifest (through an index
//! to this node's platform) at the first endpoint that has it (mirrors,
//! then the registry), fetch the config, stream the layers into the layer
//! store (a few at a time, each unpacked while it downloads), record the
//! image.
//!
//! Every blob is verified against its digest (by oci-client's stream) and
//! its size (here) as it streams; every layer against its diff id as it
//! unpacks; nothing becomes visible before both matched. Layers already unpacked and blobs already stored are not
//! fetched again; concurrent pulls of the same layer wait for one download.
//! Compressed layer blobs are not kept: once unpacked nothing reads them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use tokio::sync::mpsc;

use super::auth::{Credentials, Login};
use super::content::{Digest, Verifier};
use super::distribution::Repository;
use super::gc::Lease;
use super::http::{FetchError, bytes_in_words, error_chain};
use super::layers::{LayerSource, chain_ids};
use super::manifest::{
    Compression, Manifest, Platform, is_image_config, parse_config, select_platform,
};
use super::reference::ImageRef;
use super::registry::{self, Endpoint};
use super::stream::{BlobReader, CHANNEL_DEPTH, Chunk, Progress};
use super::unpack::{Caps, ImageBudget};
use super::{Image, Inner};
use crate::error::{Error, IoContext, Result};

/// The largest image config accepted (containers/image's
/// `MaxConfigBodySize`): a config is read whole into memory.
const MAX_CONFIG_SIZE: u64 = 4 << 20;
/// The diff id of an empty layer (an empty tar: 1024 zero bytes). Such a
/// layer is not fetched.
const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// Pulls `reference` into the store; see [`super::ImageStore::pull`].
pub async fn pull(
    inner: &Arc<Inner>,
    reference: &str,
    credentials: Option<&Credentials>,
) -> Result<Image> {
    let started = Instant::now();
    let result = pull_with_progress(inner, reference, credentials).await;
    let metrics = &inner.metrics;
    metrics
        .pulls
        .with_label_values(&[result_label(&result)])
        .inc();
    metrics.duration.observe(started.elapsed().as_secs_f64());
    if let (Ok(_), Some(phase)) = (&result, &metrics.phase) {
        phase.observe(started.elapsed().as_secs_f64());
    }
    if let Err(e) = &result {
        tracing::info!(reference, error = %e, elapsed = ?started.elapsed(), "pull failed");
    }
    result
}

/// The `result` label of the pulls counter.
fn result_label(r: &Result<Image>) -> &'static str {
    match r {
        Ok(_) => "success",
        Err(Error::InvalidArgument(_)) => "invalid_reference",
        Err(Error::NotFound { .. }) => "not_found",
        Err(Error::FailedPrecondition(_)) => "auth_failed",
        Err(Error::Unavailable(_)) => "unavailable",
        Err(Error::External { .. }) => "bad_content",
        Err(_) => "error",
    }
}

async fn pull_with_progress(
    inner: &Arc<Inner>,
    reference: &str,
    credentials: Option<&Credentials>,
) -> Result<Image> {
    let image_ref = ImageRef::parse(reference)?;
    let progress = Progress::default();
    let work = pull_from_endpoints(inner, &image_ref, credentials, &progress);
    tokio::pin!(work);
    let every = Duration::from_secs(inner.registry.progress_interval_secs);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let started = Instant::now();
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = ticks.tick() => {
                let (done, total) = progress.get();
                tracing::info!(
                    reference = %image_ref,
                    done_bytes = done,
                    total_bytes = total,
                    elapsed = ?started.elapsed(),
                    "pull in progress: {:.1} of {:.1} MiB",
                    done as f64 / 1048576.0,
                    total as f64 / 1048576.0,
                );
            }
        }
    }
}

/// Tries the endpoints in order until one resolves the reference, then
/// pulls everything from that one.
async fn pull_from_endpoints(
    inner: &Arc<Inner>,
    image_ref: &ImageRef,
    credentials: Option<&Credentials>,
    progress: &Progress,
) -> Result<Image> {
    let endpoints = registry::endpoints(&inner.registry, image_ref)?;
    let lease = inner.leases.lease();
    let mut failures: Vec<String> = Vec::new();
    for (i, ep) in endpoints.iter().enumerate() {
        let last = i + 1 == endpoints.len();
        let resolved = match Source::new(inner, image_ref, ep, credentials, progress, &lease).await
        {
            Ok(source) => source.resolve_manifest().await.map(|r| (source, r)),
            Err(e) => Err(e),
        };
        match resolved {
            Ok((source, resolved)) => {
                if !failures.is_empty() {
                    tracing::info!(reference = %image_ref, endpoint = %ep, "pulling from a fallback");
                }
                return source.pull(resolved).await;
            }
            Err(e) if !last => {
                tracing::info!(reference = %image_ref, endpoint = %ep, error = %e, "trying the next endpoint");
                failures.push(format!("{ep}: {e}"));
            }
            Err(e) => return Err(with_earlier_failures(e, &failures)),
        }
    }
    Err(Error::Internal(format!(
        "no endpoint to pull {image_ref} from"
    )))
}

/// Adds what the mirrors said to the registry's error (a not-found keeps
/// its own form; the mirrors' errors were logged).
fn with_earlier_failures(e: Error, failures: &[String]) -> Error {
    if failures.is_empty() {
        return e;
    }
    let note = format!(" (tried first: {})", failures.join("; "));
    match e {
        Error::Unavailable(m) => Error::Unavailable(m + &note),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(m + &note),
        Error::External { what, message } => Error::External {
            what,
            message: message + &note,
        },
        other => other,
    }
}

/// What the reference resolved to.
struct Resolved {
    manifest: OciImageManifest,
    /// The digest the reference named or its tag pointed to (an index's,
    /// for an index).
    top_digest: Digest,
    /// Manifests (index, platform manifest) stored for the image.
    blobs: Vec<Digest>,
}

/// One endpoint of one pull.
struct Source<'a> {
    inner: &'a Arc<Inner>,
    image_ref: &'a ImageRef,
    ep: &'a Endpoint,
    /// The repository at this endpoint, authenticated.
    repo: Repository,
    with_credentials: bool,
    stall: Duration,
    progress: &'a Progress,
    lease: &'a Lease,
    /// What the image's layers may still unpack to.
    budget: Arc<ImageBudget>,
}

impl<'a> Source<'a> {
    async fn new(
        inner: &'a Arc<Inner>,
        image_ref: &'a ImageRef,
        ep: &'a Endpoint,
        credentials: Option<&Credentials>,
        progress: &'a Progress,
        lease: &'a Lease,
    ) -> Result<Source<'a>> {
        let settings = &inner.registry;
        let stall = Duration::from_secs(settings.stall_timeout_secs);
        let (login, with_credentials) =
            registry::credentials(settings, ep, image_ref, credentials)?;
        let http = registry::http_client(settings, ep, image_ref, stall)?;
        let repo = Repository::connect(
            http,
            registry::base_url(ep),
            image_ref.repository(),
            registry::upstream(image_ref, ep),
            &login,
            Duration::from_secs(settings.request_timeout_secs),
        )
        .await;
        let repo = match (repo, &login) {
            (Ok(repo), _) => repo,
            (Err(FetchError::TokenRefused(m)), Login::IdentityToken(_)) => {
                return Err(Error::FailedPrecondition(format!(
                    "pull {image_ref}: authentication required for {ep}: the identity token \
                     was refused ({m})"
                )));
            }
            (Err(FetchError::Protocol(m)), Login::IdentityToken(_)) => {
                return Err(Error::FailedPrecondition(format!("pull {image_ref}: {m}")));
            }
            (Err(e), _) => {
                return Err(registry_error(image_ref, ep, with_credentials, e, None));
            }
        };
        Ok(Source {
            repo,
            inner,
            image_ref,
            ep,
            with_credentials,
            stall,
            progress,
            lease,
            budget: Arc::new(ImageBudget::new(cap(settings.max_image_unpacked_mib))),
        })
    }

    /// Fetches the config and the layers and records the image.
    async fn pull(&self, resolved: Resolved) -> Result<Image> {
        let Resolved {
            manifest,
            top_digest,
            mut blobs,
        } = resolved;
        let (config, diff_ids, config_digest) = self.fetch_config(&manifest).await?;
        blobs.push(config_digest.clone());

        if diff_ids.len() != manifest.layers.len() {
            return Err(self.bad_content(format!(
                "manifest has {} layers but its config lists {} diff ids",
                manifest.layers.len(),
                diff_ids.len()
            )));
        }
        let diff_ids = diff_ids
            .iter()
            .map(|d| Digest::parse(d).map_err(|e| self.bad_content(format!("image config: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let chains = chain_ids(&diff_ids);
        let mut size = descriptor_size(&manifest.config).map_err(|m| self.bad_content(m))?;
        for layer in &manifest.layers {
            // Refuse unsupported layers before fetching anything big.
            if let Err(m) = Compression::from_media_type(&layer.media_type) {
                return Err(self.bad_content(format!("layer {}: {m}", layer.digest)));
            }
            Digest::parse(&layer.digest).map_err(|m| self.bad_content(m))?;
            let layer_size = descriptor_size(layer).map_err(|m| self.bad_content(m))?;
            size = size.saturating_add(layer_size);
            self.progress.add_total(layer_size);
        }

        self.ensure_layers(&manifest.layers, &diff_ids, &chains)
            .await?;

        let mut blob_names: Vec<String> = Vec::new();
        for b in blobs {
            if !blob_names.contains(&b.to_string()) {
                blob_names.push(b.to_string());
            }
        }
        let image = Image {
            id: config_digest.to_string(),
            repo_tags: self.image_ref.repo_tag().into_iter().collect(),
            repo_digests: vec![self.image_ref.repo_digest(top_digest.as_str())],
            size,
            config,
            layers: chains.iter().map(|c| c.to_string()).collect(),
            blobs: blob_names,
        };
        crate::crash::point(crate::crash::PULL_AFTER_LAYERS);
        let inner = self.inner.clone();
        let image = tokio::task::spawn_blocking(move || inner.records.record(image))
            .await
            .map_err(|e| Error::Internal(format!("record image: {e}")))??;
        tracing::info!(reference = %self.image_ref, id = %image.id, from = %self.ep, "pulled image");
        Ok(image)
    }

    /// Fetches the manifest the reference names and, for an index, the
    /// one for this node's platform, and stores them.
    async fn resolve_manifest(&self) -> Result<Resolved> {
        let body = self
            .repo
            .manifest(self.image_ref.manifest_reference())
            .await
            .map_err(|e| self.registry_error(e, None))?;
        self.inner.metrics.bytes.inc_by(body.len() as u64);
        let top_digest = Digest::of(&body);
        if let Some(want) = self.image_ref.digest()
            && want != top_digest.as_str()
        {
            return Err(self.bad_content(format!(
                "manifest hashes to {top_digest}, not the requested {want}"
            )));
        }
        self.store_manifest(&body).await?;
        let mut blobs = vec![top_digest.clone()];
        let manifest = match Manifest::parse(&body).map_err(|m| self.bad_content(m))? {
            Manifest::Image(m) => *m,
            Manifest::Index(index) => {
                let platform = Platform::host();
                let entry = select_platform(&index.manifests, &platform).map_err(|m| {
                    tracing::info!(reference = %self.image_ref, "{m}");
                    Error::not_found(
                        "image",
                        format!("{} for platform {platform}", self.image_ref),
                    )
                })?;
                let want = Digest::parse(&entry.digest).map_err(|m| self.bad_content(m))?;
                let body = self
                    .repo
                    .manifest(want.as_str())
                    .await
                    .map_err(|e| self.registry_error(e, Some(&want)))?;
                self.inner.metrics.bytes.inc_by(body.len() as u64);
                let got = Digest::of(&body);
                if got != want || i64::try_from(body.len()).ok() != Some(entry.size) {
                    return Err(self.bad_content(format!(
                        "platform manifest {want} ({} bytes) arrived as {got} ({} bytes)",
                        entry.size,
                        body.len()
                    )));
                }
                self.store_manifest(&body).await?;
                blobs.push(got);
                match Manifest::parse(&body).map_err(|m| self.bad_content(m))? {
                    Manifest::Image(m) => *m,
                    Manifest::Index(_) => {
                        return Err(self.bad_content(format!(
                            "platform entry {want} is itself an index (nested indexes are not supported)"
                        )));
                    }
                }
            }
        };
        Ok(Resolved {
            manifest,
            top_digest,
            blobs,
        })
    }

    async fn store_manifest(&self, body: &[u8]) -> Result<()> {
        let digest = Digest::of(body);
        self.lease.add(digest.as_str());
        self.inner
            .content
            .put(body.to_vec())
            .await
            .map(|_| ())
            .map_err(|e| self.storing(e, &format!("manifest {digest}")))
    }

    /// A failure to store `what` of this pull, saying so.
    fn storing(&self, e: Error, what: &str) -> Error {
        match e {
            Error::Io { context, source } => Error::Io {
                context: format!("pull {}: store {what}: {context}", self.image_ref),
                source,
            },
            other => other,
        }
    }

    async fn fetch_config(
        &self,
        manifest: &OciImageManifest,
    ) -> Result<(super::ImageConfig, Vec<String>, Digest)> {
        let desc = &manifest.config;
        if !is_image_config(&desc.media_type) {
            return Err(self.bad_content(format!(
                "not a container image (config media type {:?})",
                desc.media_type
            )));
        }
        let size = descriptor_size(desc).map_err(|m| self.bad_content(m))?;
        if size > MAX_CONFIG_SIZE {
            return Err(self.bad_content(format!(
                "image config of {size} bytes is over the {} cap on configs; refused",
                bytes_in_words(MAX_CONFIG_SIZE)
            )));
        }
        let (digest, data) = self.fetch_small_blob(desc, size).await?;
        let (config, diff_ids) =
            parse_config(&data).map_err(|m| self.bad_content(format!("config {digest}: {m}")))?;
        Ok((config, diff_ids, digest))
    }

    /// Makes sure every layer is unpacked, a few at a time.
    ///
    /// On the first failure, layers not started are skipped and downloads
    /// under way stop, but unpacks under way are waited for: when this
    /// returns, nothing of the pull is still being written.
    async fn ensure_layers(
        &self,
        layers: &[OciDescriptor],
        diff_ids: &[Digest],
        chains: &[Digest],
    ) -> Result<()> {
        let failed = AtomicBool::new(false);
        let failed = &failed;
        // Owned descriptors: a closure taking a borrowed one makes the future
        // not provably Send (rust-lang/rust#102211).
        let results: Vec<Result<()>> =
            futures_util::stream::iter(layers.iter().cloned().enumerate())
                .map(|(i, layer)| async move {
                    let parent = i.checked_sub(1).and_then(|p| chains.get(p));
                    let (Some(diff_id), Some(chain_id)) = (diff_ids.get(i), chains.get(i)) else {
                        return Err(Error::Internal("layer without a diff id".into()));
                    };
                    let r = self
                        .ensure_layer(&layer, diff_id, chain_id, parent, failed)
                        .await;
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
                .buffer_unordered(self.inner.registry.concurrent_layers.max(1))
                .collect()
                .await;
        // In completion order: the first error is the cause.
        results.into_iter().collect()
    }

    /// Makes sure one layer is unpacked, streaming it in if needed.
    async fn ensure_layer(
        &self,
        desc: &OciDescriptor,
        diff_id: &Digest,
        chain_id: &Digest,
        parent: Option<&Digest>,
        failed: &AtomicBool,
    ) -> Result<()> {
        let size = descriptor_size(desc).map_err(|m| self.bad_content(m))?;
        // Leased before looking, so a collection cannot take it after.
        self.lease.add(chain_id.as_str());
        let _guard = self.inner.layers.lock(chain_id).await;
        if self.inner.layers.has(chain_id) {
            // A layer already there counts towards the image's size as
            // what it unpacked to (unknown for layers of older crius).
            if let Some(n) = self.inner.layers.unpacked_size(chain_id) {
                self.budget.charge(n).map_err(|m| {
                    self.too_large(format!(
                        "with layer {} (already unpacked): {m}",
                        desc.digest
                    ))
                })?;
            }
            self.progress.add_done(size);
            return Ok(());
        }
        if failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let layer = OwnedLayer {
            blob_digest: Digest::parse(&desc.digest).map_err(|m| self.bad_content(m))?,
            media_type: desc.media_type.clone(),
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
            parent: parent.cloned(),
        };
        if diff_id.as_str() == EMPTY_LAYER_DIFF_ID {
            let inner = self.inner.clone();
            tokio::task::spawn_blocking(move || inner.layers.create_empty(&layer.source()))
                .await
                .map_err(|e| Error::Internal(format!("create empty layer task: {e}")))??;
            self.progress.add_done(size);
            return Ok(());
        }
        self.stream_layer(size, layer, failed).await
    }

    /// Downloads a layer blob and unpacks it as it arrives.
    async fn stream_layer(&self, size: u64, layer: OwnedLayer, failed: &AtomicBool) -> Result<()> {
        let digest = layer.blob_digest.clone();
        let response = self
            .repo
            .blob(&digest)
            .await
            .map_err(|e| self.registry_error(e, Some(&digest)))?;
        if let Some(len) = response.content_length()
            && len != size
        {
            return Err(self.bad_content(format!(
                "blob {digest}: registry sends {len} bytes, the manifest says {size}"
            )));
        }
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let what = format!("layer {digest} of {}", self.image_ref);
        let inner = self.inner.clone();
        let caps = Caps {
            layer: cap(self.inner.registry.max_layer_unpacked_mib),
            image: self.budget.clone(),
        };
        let unpack = tokio::task::spawn_blocking(move || {
            inner
                .layers
                .unpack(&layer.source(), BlobReader::new(rx), &what, &caps)
        });
        let fed = self.feed(response, &digest, size, &tx, failed).await;
        if let Ok(true) = fed {
            // The reader ends only now; a closed channel means the
            // unpacker has already failed, which the join reports.
            let _ = tx.send(Chunk::End).await;
        }
        drop(tx);
        let unpacked = unpack
            .await
            .map_err(|e| Error::Internal(format!("unpack layer task: {e}")))?;
        match (fed, unpacked) {
            // The download's failure is the cause; the unpacker only saw
            // its input cut off.
            (Err(e), Err(Error::External { .. }) | Ok(())) => Err(e),
            // The unpacker's own failure (a cap, the disk) stopped the
            // download.
            (_, Err(e)) => Err(e),
            (Ok(_), Ok(())) => Ok(()),
        }
    }

    /// Passes the blob's chunks to the unpacker, checking size and digest
    /// and watching for stalls: no byte for the stall timeout, or fewer
    /// than `stall_min_bytes_per_sec` on average over one. `Ok(false)`:
    /// the unpacker stopped taking chunks (it failed).
    async fn feed(
        &self,
        mut response: reqwest::Response,
        digest: &Digest,
        size: u64,
        tx: &mpsc::Sender<Chunk>,
        failed: &AtomicBool,
    ) -> Result<bool> {
        let min_rate = self.inner.registry.stall_min_bytes_per_sec;
        let mut verifier = Verifier::default();
        let mut window = (tokio::time::Instant::now(), 0u64);
        loop {
            if failed.load(Ordering::Relaxed) {
                return Err(Error::Internal(format!(
                    "download of blob {digest} stopped: another layer failed"
                )));
            }
            let got = verifier.len();
            let next = match tokio::time::timeout(self.stall, response.chunk()).await {
                Ok(next) => next,
                Err(_) => {
                    return Err(Error::Unavailable(format!(
                        "pull {}: download of blob {digest} from {} stalled: no data for {} s \
                         after {got} of {size} bytes; cancelled",
                        self.image_ref,
                        self.ep,
                        self.stall.as_secs(),
                    )));
                }
            };
            let chunk = match next {
                Ok(None) => break,
                Ok(Some(chunk)) => chunk,
                Err(source) => {
                    return Err(Error::Unavailable(format!(
                        "pull {}: download of blob {digest} from {} failed after {got} of {size} \
                         bytes: {}",
                        self.image_ref,
                        self.ep,
                        error_chain(&source)
                    )));
                }
            };
            verifier.update(&chunk);
            if verifier.len() > size {
                return Err(self.bad_content(format!(
                    "blob {digest}: more than the {size} bytes the manifest announces"
                )));
            }
            window.1 += chunk.len() as u64;
            let elapsed = window.0.elapsed();
            if elapsed >= self.stall {
                if window.1 < min_rate.saturating_mul(elapsed.as_secs()) {
                    return Err(Error::Unavailable(format!(
                        "pull {}: download of blob {digest} from {} stalled: {} bytes in the last \
                         {} s (under stall_min_bytes_per_sec = {min_rate}) after {} of {size} \
                         bytes; cancelled",
                        self.image_ref,
                        self.ep,
                        window.1,
                        elapsed.as_secs(),
                        verifier.len(),
                    )));
                }
                window = (tokio::time::Instant::now(), 0);
            }
            self.inner.metrics.bytes.inc_by(chunk.len() as u64);
            self.progress.add_done(chunk.len() as u64);
            if tx.send(Chunk::Data(chunk)).await.is_err() {
                return Ok(false);
            }
        }
        let got = verifier.len();
        if got != size {
            return Err(self.bad_content(format!(
                "blob {digest}: truncated: got {got} of {size} bytes"
            )));
        }
        let hashed = verifier.finish();
        if &hashed != digest {
            return Err(self.bad_content(format!(
                "blob {digest}: digest mismatch: content hashes to {hashed}"
            )));
        }
        Ok(true)
    }

    /// Makes sure a small blob (an image config) is in the content store;
    /// returns its digest and bytes.
    async fn fetch_small_blob(&self, desc: &OciDescriptor, size: u64) -> Result<(Digest, Vec<u8>)> {
        let digest = Digest::parse(&desc.digest).map_err(|m| self.bad_content(m))?;
        let content = &self.inner.content;
        self.lease.add(digest.as_str());
        let _guard = self.inner.blob_locks.lock(digest.as_str()).await;
        if content.has(&digest, size) {
            let path = content.path(&digest);
            let data = tokio::fs::read(&path)
                .await
                .context(|| format!("read {}", path.display()))?;
            if data.len() as u64 == size {
                return Ok((digest, data));
            }
        }
        let data = self
            .repo
            .blob_bytes(&digest, size)
            .await
            .map_err(|e| self.registry_error(e, Some(&digest)))?;
        self.inner.metrics.bytes.inc_by(data.len() as u64);
        if data.len() as u64 != size {
            return Err(self.bad_content(format!(
                "blob {digest}: truncated: got {} of {size} bytes",
                data.len()
            )));
        }
        let got = Digest::of(&data);
        if got != digest {
            return Err(self.bad_content(format!(
                "blob {digest}: digest mismatch: content hashes to {got}"
            )));
        }
        let data = content
            .put(data)
            .await
            .map_err(|e| self.storing(e, &format!("config {digest}")))?
            .1;
        tracing::debug!(blob = %digest, size, reference = %self.image_ref, "fetched blob");
        Ok((digest, data))
    }

    /// The registry served something that is not what it should be.
    fn bad_content(&self, message: String) -> Error {
        Error::External {
            what: format!("pull {} from {}", self.image_ref, self.ep),
            message,
        }
    }

    /// The image's layers unpack to more than the configured cap.
    fn too_large(&self, message: String) -> Error {
        Error::ResourceExhausted(format!(
            "pull {} from {}: {message}",
            self.image_ref, self.ep
        ))
    }

    fn registry_error(&self, e: FetchError, blob: Option<&Digest>) -> Error {
        registry_error(self.image_ref, self.ep, self.with_credentials, e, blob)
    }
}

/// Maps a failed registry exchange to our error, naming the endpoint, the
/// image and (for a blob) the blob.
fn registry_error(
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

/// A layer's identity, owned (to move into a blocking task).
struct OwnedLayer {
    blob_digest: Digest,
    media_type: String,
    diff_id: Digest,
    chain_id: Digest,
    parent: Option<Digest>,
}

impl OwnedLayer {
    fn source(&self) -> LayerSource<'_> {
        LayerSource {
            blob_digest: &self.blob_digest,
            media_type: &self.media_type,
            diff_id: &self.diff_id,
            chain_id: &self.chain_id,
            parent: self.parent.as_ref(),
        }
    }
}

/// A cap configured in MiB, in bytes; 0 means none. (`validate` checked
/// that it fits.)
fn cap(mib: u64) -> Option<u64> {
    (mib > 0).then_some(mib.saturating_mul(1 << 20))
}

fn descriptor_size(desc: &OciDescriptor) -> Result<u64, String> {
    u64::try_from(desc.size)
        .map_err(|_| format!("descriptor {} has size {}", desc.digest, desc.size))
}
