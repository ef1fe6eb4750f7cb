//! Pulling an image: resolve the reference to a manifest (through an index
//! to this node's platform) at the first endpoint that has it (mirrors,
//! then the registry), fetch the config, stream the layers into the layer
//! store (a few at a time, each unpacked while it downloads), record the
//! image.
//!
//! Every blob is verified against its digest and its size as it streams;
//! every layer against its diff id as it unpacks; nothing becomes visible
//! before both matched. Layers already unpacked and blobs already stored
//! are not fetched again; concurrent pulls of the same layer wait for one
//! download.
//! Compressed layer blobs are not kept: once unpacked nothing reads them.
//!
//! The steps: the endpoints tried and the progress logged (here),
//! resolving the manifest and fetching the config (`resolve`), the layers
//! streamed into the layer store (`fetch`), a failed exchange as the error
//! a caller sees (`error`).

mod error;
mod fetch;
mod resolve;

use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_client::manifest::OciDescriptor;

use super::auth::{Credentials, Login};
use super::content::Digest;
use super::distribution::Repository;
use super::gc::Lease;
use super::http::FetchError;
use super::layers::chain_ids;
use super::manifest::Compression;
use super::reference::ImageRef;
use super::registry::{self, Endpoint};
use super::stream::Progress;
use super::unpack::ImageBudget;
use super::{Image, Inner};
use crate::error::{Error, Result};
use error::registry_error;
use resolve::Resolved;

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
        let http = inner.http.get(settings, ep, image_ref, stall)?;
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

/// A cap configured in MiB, in bytes; 0 means none. (`validate` checked
/// that it fits.)
fn cap(mib: u64) -> Option<u64> {
    (mib > 0).then_some(mib.saturating_mul(1 << 20))
}

fn descriptor_size(desc: &OciDescriptor) -> Result<u64, String> {
    u64::try_from(desc.size)
        .map_err(|_| format!("descriptor {} has size {}", desc.digest, desc.size))
}
