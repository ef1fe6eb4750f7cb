//! Pulling an image: resolve the reference to a manifest (through an index
//! to this node's platform), fetch the config and the layers into the
//! content store, unpack the layers, record the image.
//!
//! Every blob is verified against its digest and size as it streams (see
//! [`ContentStore::ingest`]); every layer against its diff id as it
//! unpacks. Blobs and layers already present are not fetched again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::ready;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::content::{ContentStore, Digest, IngestError};
use super::layers::{LayerSource, chain_ids};
use super::manifest::{
    ACCEPTED_MANIFESTS, Compression, Manifest, Platform, is_image_config, parse_config,
    select_platform,
};
use super::reference::{ImageRef, uses_plain_http};
use super::{Credentials, Image, Inner};
use crate::error::{Error, IoContext, Result};

/// Layers fetched and unpacked at the same time.
const CONCURRENT_LAYERS: usize = 3;
/// An image config larger than this is not one.
const MAX_CONFIG_SIZE: u64 = 32 << 20;
const USER_AGENT: &str = concat!("crius/", env!("CARGO_PKG_VERSION"));

/// Pulls `reference` into the store; see [`super::ImageStore::pull`].
pub async fn pull(
    inner: &Arc<Inner>,
    reference: &str,
    credentials: Option<&Credentials>,
) -> Result<Image> {
    let image_ref = ImageRef::parse(reference)?;
    let puller = Puller::new(inner.clone(), image_ref, credentials)?;
    puller.run().await
}

struct Puller {
    inner: Arc<Inner>,
    image_ref: ImageRef,
    /// What is fetched: the reference by digest if it has one, else by tag.
    fetch_ref: Reference,
    client: Client,
    auth: RegistryAuth,
    with_credentials: bool,
}

impl Puller {
    fn new(
        inner: Arc<Inner>,
        image_ref: ImageRef,
        credentials: Option<&Credentials>,
    ) -> Result<Puller> {
        let host = image_ref.registry_host().to_string();
        let plain_http = uses_plain_http(image_ref.registry(), &inner.registry.insecure)
            || uses_plain_http(&host, &inner.registry.insecure);
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::HttpsExcept(vec![host.clone()])
            } else {
                ClientProtocol::Https
            },
            // Indexes are resolved here, with variants and a clear error.
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config)
            .map_err(|e| Error::Internal(format!("build registry client for {host}: {e}")))?;
        let auth = match credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        Ok(Puller {
            fetch_ref: image_ref.fetch_reference(),
            inner,
            image_ref,
            client,
            auth,
            with_credentials: credentials.is_some(),
        })
    }

    async fn run(self) -> Result<Image> {
        let (manifest, top_digest) = self.resolve_manifest().await?;
        let (config, diff_ids, config_digest) = self.fetch_config(&manifest).await?;

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
        let mut size = manifest.config.size.max(0) as u64;
        for layer in &manifest.layers {
            // Refuse unsupported layers before fetching anything big.
            match Compression::from_media_type(&layer.media_type) {
                Ok(Some(Compression::Zstd)) => {
                    return Err(self.bad_content(format!(
                        "layer {} is zstd-compressed: zstd layers are not supported yet",
                        layer.digest
                    )));
                }
                Err(m) => return Err(self.bad_content(format!("layer {}: {m}", layer.digest))),
                Ok(_) => {}
            }
            size += descriptor_size(layer).map_err(|m| self.bad_content(m))?;
        }

        self.ensure_layers(&manifest.layers, &diff_ids, &chains)
            .await?;

        let image = Image {
            id: config_digest.to_string(),
            repo_tags: self.image_ref.repo_tag().into_iter().collect(),
            repo_digests: vec![self.image_ref.repo_digest(top_digest.as_str())],
            size,
            config,
            layers: chains.iter().map(|c| c.to_string()).collect(),
        };
        let inner = self.inner.clone();
        let image = tokio::task::spawn_blocking(move || inner.records.record(image))
            .await
            .map_err(|e| Error::Internal(format!("record image: {e}")))??;
        tracing::info!(reference = %self.image_ref, id = %image.id, "pulled image");
        Ok(image)
    }

    /// Fetches the manifest the reference names and, for an index, the
    /// one for this node's platform. Returns it and the digest the
    /// reference resolved to (the index's, for an index).
    async fn resolve_manifest(&self) -> Result<(OciImageManifest, Digest)> {
        self.client
            .auth(&self.fetch_ref, &self.auth, RegistryOperation::Pull)
            .await
            .map_err(|e| self.registry_error(e, None))?;
        let (body, _) = self
            .client
            .pull_manifest_raw(&self.fetch_ref, &self.auth, ACCEPTED_MANIFESTS)
            .await
            .map_err(|e| self.registry_error(e, None))?;
        let top_digest = Digest::of(&body);
        if let Some(want) = self.image_ref.digest()
            && want != top_digest.as_str()
        {
            return Err(self.bad_content(format!(
                "manifest hashes to {top_digest}, not the requested {want}"
            )));
        }
        self.inner.content.put(&body).await?;
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
                let (body, _) = self
                    .client
                    .pull_manifest_raw(
                        &self.image_ref.with_digest(want.as_str()),
                        &self.auth,
                        ACCEPTED_MANIFESTS,
                    )
                    .await
                    .map_err(|e| self.registry_error(e, Some(&want)))?;
                let got = Digest::of(&body);
                if got != want || i64::try_from(body.len()).ok() != Some(entry.size) {
                    return Err(self.bad_content(format!(
                        "platform manifest {want} ({} bytes) arrived as {got} ({} bytes)",
                        entry.size,
                        body.len()
                    )));
                }
                self.inner.content.put(&body).await?;
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
        Ok((manifest, top_digest))
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
            return Err(self.bad_content(format!("image config of {size} bytes is too large")));
        }
        let (digest, path) = self.fetch_blob(desc, &AtomicBool::new(false)).await?;
        let data = tokio::fs::read(&path)
            .await
            .context(|| format!("read {}", path.display()))?;
        let (config, diff_ids) =
            parse_config(&data).map_err(|m| self.bad_content(format!("config {digest}: {m}")))?;
        Ok((config, diff_ids, digest))
    }

    /// Makes sure every layer is unpacked, a few at a time.
    ///
    /// On the first failure, layers not started are skipped and downloads
    /// under way stop, but unpacks under way (blocking, not cancellable)
    /// are waited for: when this returns, nothing of the pull is still
    /// being written.
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
                .buffer_unordered(CONCURRENT_LAYERS)
                .collect()
                .await;
        // In completion order: the first error is the cause.
        results.into_iter().collect()
    }

    /// Makes sure one layer is unpacked, fetching its blob if needed.
    async fn ensure_layer(
        &self,
        desc: &OciDescriptor,
        diff_id: &Digest,
        chain_id: &Digest,
        parent: Option<&Digest>,
        failed: &AtomicBool,
    ) -> Result<()> {
        let _guard = self.inner.layers.lock(chain_id).await;
        if self.inner.layers.has(chain_id) || failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let (blob_digest, blob) = self.fetch_blob(desc, failed).await?;
        let what = format!("layer {blob_digest} of {}", self.image_ref);
        let inner = self.inner.clone();
        let (media_type, diff_id, chain_id) =
            (desc.media_type.clone(), diff_id.clone(), chain_id.clone());
        let parent = parent.cloned();
        tokio::task::spawn_blocking(move || {
            let src = LayerSource {
                blob: &blob,
                blob_digest: &blob_digest,
                media_type: &media_type,
                diff_id: &diff_id,
                chain_id: &chain_id,
                parent: parent.as_ref(),
            };
            inner.layers.unpack(&src, &what)
        })
        .await
        .map_err(|e| Error::Internal(format!("unpack layer task: {e}")))?
    }

    /// Makes sure a blob is in the content store; returns its digest and
    /// path. The download stops (and fails) once `stop` is set.
    async fn fetch_blob(
        &self,
        desc: &OciDescriptor,
        stop: &AtomicBool,
    ) -> Result<(Digest, std::path::PathBuf)> {
        let digest = Digest::parse(&desc.digest).map_err(|m| self.bad_content(m))?;
        let size = descriptor_size(desc).map_err(|m| self.bad_content(m))?;
        let content: &ContentStore = &self.inner.content;
        let _guard = self.inner.blob_locks.lock(digest.as_str()).await;
        if content.has(&digest, size) {
            return Ok((digest.clone(), content.path(&digest)));
        }
        let stream = self
            .client
            .pull_blob_stream(&self.fetch_ref, desc)
            .await
            .map_err(|e| self.registry_error(e, Some(&digest)))?;
        if let Some(len) = stream.content_length
            && len != size
        {
            return Err(self.bad_content(format!(
                "blob {digest}: registry sends {len} bytes, the manifest says {size}"
            )));
        }
        let stream = stream.take_while(|_| ready(!stop.load(Ordering::Relaxed)));
        let path = content
            .ingest(&digest, size, stream)
            .await
            .map_err(|e| match e {
                IngestError::Transfer { .. } => Error::Unavailable(format!(
                    "download of blob {digest} of {} from {} failed: {e}",
                    self.image_ref,
                    self.host()
                )),
                IngestError::Mismatch(m) => self.bad_content(format!("blob {digest}: {m}")),
                IngestError::Store(e) => e,
            })?;
        tracing::debug!(blob = %digest, size, reference = %self.image_ref, "fetched blob");
        Ok((digest, path))
    }

    fn host(&self) -> &str {
        self.image_ref.registry_host()
    }

    /// The registry served something that is not what it should be.
    fn bad_content(&self, message: String) -> Error {
        Error::External {
            what: format!("pull {} from {}", self.image_ref, self.host()),
            message,
        }
    }

    fn auth_error(&self) -> Error {
        Error::FailedPrecondition(if self.with_credentials {
            format!(
                "pull {}: authentication required for {}: the credentials were rejected",
                self.image_ref,
                self.host()
            )
        } else {
            format!(
                "pull {}: authentication required for {} (or the repository does not exist)",
                self.image_ref,
                self.host()
            )
        })
    }

    /// Maps an oci-client error to ours, naming the registry, the image
    /// and (for a blob) the blob.
    fn registry_error(&self, e: OciDistributionError, blob: Option<&Digest>) -> Error {
        let host = self.host();
        let subject = match blob {
            Some(d) => format!("{} (blob {d})", self.image_ref),
            None => self.image_ref.to_string(),
        };
        let missing = || match blob {
            None => Error::not_found("image", self.image_ref.to_string()),
            Some(d) => self.bad_content(format!("registry has no blob {d}")),
        };
        match e {
            OciDistributionError::RequestError(re) => {
                let detail = error_chain(&re);
                if re.is_connect() || re.is_timeout() {
                    Error::Unavailable(format!(
                        "registry {host} unreachable while pulling {subject}: {detail}"
                    ))
                } else {
                    Error::Unavailable(format!(
                        "request to registry {host} failed while pulling {subject}: {detail}"
                    ))
                }
            }
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => self.auth_error(),
            OciDistributionError::RegistryError { envelope, .. } => {
                let has = |c: OciErrorCode| envelope.errors.iter().any(|e| e.code == c);
                if has(OciErrorCode::ManifestUnknown)
                    || has(OciErrorCode::NameUnknown)
                    || has(OciErrorCode::NotFound)
                    || has(OciErrorCode::BlobUnknown)
                {
                    missing()
                } else if has(OciErrorCode::Unauthorized) || has(OciErrorCode::Denied) {
                    self.auth_error()
                } else if has(OciErrorCode::Toomanyrequests) {
                    Error::Unavailable(format!(
                        "registry {host} is rate-limiting pulls of {subject}: {envelope}"
                    ))
                } else {
                    self.bad_content(format!("{subject}: {envelope}"))
                }
            }
            OciDistributionError::ServerError { code, message, .. } => match code {
                404 => missing(),
                401 | 403 => self.auth_error(),
                408 | 429 | 500..=599 => Error::Unavailable(format!(
                    "registry {host} answered {code} while pulling {subject}: {message}"
                )),
                _ => self.bad_content(format!("{subject}: HTTP {code}: {message}")),
            },
            OciDistributionError::DigestError(d) => {
                self.bad_content(format!("{subject}: digest verification failed: {d}"))
            }
            other => self.bad_content(format!("{subject}: {other}")),
        }
    }
}

fn descriptor_size(desc: &OciDescriptor) -> Result<u64, String> {
    u64::try_from(desc.size)
        .map_err(|_| format!("descriptor {} has size {}", desc.digest, desc.size))
}

/// An error and its causes, `a: b: c` (reqwest's own message hides the
/// cause, e.g. "connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
