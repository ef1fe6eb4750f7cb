//! Resolving a pull's reference to an image manifest (through an index
//! to this node's platform) and fetching its config, each blob checked
//! against its digest and size and stored in the content store.

use oci_client::manifest::{OciDescriptor, OciImageManifest};

use super::{Source, descriptor_size};
use crate::error::{Error, IoContext, Result};
use crate::image::ImageConfig;
use crate::image::content::Digest;
use crate::image::http::bytes_in_words;
use crate::image::manifest::{Manifest, Platform, is_image_config, parse_config, select_platform};

/// The largest image config accepted (containers/image's
/// `MaxConfigBodySize`): a config is read whole into memory.
const MAX_CONFIG_SIZE: u64 = 4 << 20;

/// What the reference resolved to.
pub(super) struct Resolved {
    pub(super) manifest: OciImageManifest,
    /// The digest the reference named or its tag pointed to (an index's,
    /// for an index).
    pub(super) top_digest: Digest,
    /// Manifests (index, platform manifest) stored for the image.
    pub(super) blobs: Vec<Digest>,
}

impl Source<'_> {
    /// Fetches the manifest the reference names and, for an index, the
    /// one for this node's platform, and stores them.
    pub(super) async fn resolve_manifest(&self) -> Result<Resolved> {
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

    pub(super) async fn fetch_config(
        &self,
        manifest: &OciImageManifest,
    ) -> Result<(ImageConfig, Vec<String>, Digest)> {
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
}
