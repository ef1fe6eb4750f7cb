//! Fetching a pull's layers: a few at a time, each streamed from the
//! registry straight into the unpacker, checked for size, digest and
//! stalls as it arrives; layers already unpacked are not fetched again.

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use oci_client::manifest::OciDescriptor;
use tokio::sync::mpsc;

use super::{Source, cap, descriptor_size};
use crate::error::{Error, Result};
use crate::image::content::{Digest, Verifier};
use crate::image::http::error_chain;
use crate::image::layers::LayerSource;
use crate::image::stream::{BlobReader, CHANNEL_DEPTH, Chunk};
use crate::image::unpack::Caps;

/// The diff id of an empty layer (an empty tar: 1024 zero bytes). Such a
/// layer is not fetched.
const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

impl Source<'_> {
    /// Makes sure every layer is unpacked, a few at a time.
    ///
    /// On the first failure, layers not started are skipped and downloads
    /// under way stop, but unpacks under way are waited for: when this
    /// returns, nothing of the pull is still being written.
    pub(super) async fn ensure_layers(
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
