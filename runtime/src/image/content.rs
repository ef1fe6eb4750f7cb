//! The content store: blobs (manifests, configs, compressed layers) by
//! digest at `content/blobs/sha256/<hex>`.
//!
//! A blob is streamed into a temp file under `content/ingest/`, verified
//! against its digest and size while it streams, fsynced and renamed into
//! place, so a blob file that exists is whole and verified. `open` empties
//! `ingest/`, which only a crash can leave non-empty.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use futures_util::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::image::tmp::{TempPath, unique};

/// A validated `sha256:<64 lowercase hex>` digest. Digests come from the
/// network and name files, so nothing else is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parses a digest; only sha256 is supported.
    pub fn parse(s: &str) -> std::result::Result<Digest, String> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("unsupported digest {s:?} (only sha256 is supported)"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!("malformed digest {s:?}"));
        }
        Ok(Digest(s.to_string()))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(data))))
    }

    /// The 64 hex characters.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hashes a byte stream and counts its length, to check it against a
/// digest and a size.
#[derive(Default)]
pub struct Verifier {
    hasher: Sha256,
    len: u64,
}

impl Verifier {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The digest of everything seen.
    pub fn finish(self) -> Digest {
        Digest(format!("sha256:{}", hex::encode(self.hasher.finalize())))
    }
}

/// Why a blob could not be ingested. The caller adds which blob of which
/// image.
#[derive(Debug)]
pub enum IngestError {
    /// The source stream failed (connection reset, …) after `got` of
    /// `want` bytes.
    Transfer {
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        want: u64,
        /// The stream's error.
        source: io::Error,
    },
    /// The content is not what the descriptor promised.
    Mismatch(String),
    /// Writing the blob failed.
    Store(crate::Error),
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IngestError::Transfer { got, want, source } => {
                write!(f, "transfer failed after {got} of {want} bytes: {source}")
            }
            IngestError::Mismatch(m) => f.write_str(m),
            IngestError::Store(e) => write!(f, "{e}"),
        }
    }
}

/// Blobs by digest.
#[derive(Debug)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens the store under `dir`, removing half-written blobs a crash
    /// left in `ingest/`.
    pub fn open(dir: &Path) -> Result<ContentStore> {
        let blobs = dir.join("blobs").join("sha256");
        let ingest = dir.join("ingest");
        fsutil::create_dir_all(&blobs)?;
        fsutil::remove_dir_all(&ingest)?;
        fsutil::create_dir_all(&ingest)?;
        Ok(ContentStore { blobs, ingest })
    }

    /// Where the blob `digest` lives (whether or not it is there).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether the blob is present with the expected size. A blob file is
    /// only ever created whole and verified, so its size is enough.
    pub fn has(&self, digest: &Digest, size: u64) -> bool {
        std::fs::symlink_metadata(self.path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Stores `data` as a blob, unless it is there already.
    pub async fn put(&self, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(data);
        let size = data.len() as u64;
        if !self.has(&digest, size) {
            let once = futures_util::stream::iter([Ok::<_, io::Error>(data)]);
            self.ingest(&digest, size, once)
                .await
                .map_err(|e| match e {
                    IngestError::Store(e) => e,
                    other => crate::Error::Internal(format!("store blob {digest}: {other}")),
                })?;
        }
        Ok(digest)
    }

    /// Streams a blob into the store, verifying digest and size on the
    /// way; returns its path. Nothing is left behind on failure.
    pub async fn ingest<S, B>(
        &self,
        digest: &Digest,
        size: u64,
        mut stream: S,
    ) -> std::result::Result<PathBuf, IngestError>
    where
        S: Stream<Item = io::Result<B>> + Unpin,
        B: AsRef<[u8]>,
    {
        let final_path = self.path(digest);
        let tmp = TempPath::new(self.ingest.join(format!(
            "{}-{}{}",
            digest.hex(),
            unique(),
            fsutil::TMP_SUFFIX
        )));
        let store = |e: io::Error, what: &str| {
            IngestError::Store(crate::Error::io(
                format!("{what} {}", tmp.path().display()),
                e,
            ))
        };
        let mut file = tokio::fs::File::create(tmp.path())
            .await
            .map_err(|e| store(e, "create"))?;
        let mut verifier = Verifier::default();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(source) => {
                    // A client that verifies digests itself reports a
                    // mismatch as a stream error at the very end; if all
                    // bytes came, say what is actually wrong.
                    let got = verifier.len();
                    if got == size {
                        let hashed = verifier.finish();
                        if &hashed != digest {
                            return Err(mismatch(digest, &hashed));
                        }
                    }
                    return Err(IngestError::Transfer {
                        got,
                        want: size,
                        source,
                    });
                }
            };
            let chunk = chunk.as_ref();
            verifier.update(chunk);
            if verifier.len() > size {
                return Err(IngestError::Mismatch(format!(
                    "more than the {size} bytes the descriptor announces"
                )));
            }
            file.write_all(chunk).await.map_err(|e| store(e, "write"))?;
        }
        if verifier.len() != size {
            return Err(IngestError::Mismatch(format!(
                "truncated: got {} of {size} bytes",
                verifier.len()
            )));
        }
        let got = verifier.finish();
        if &got != digest {
            return Err(mismatch(digest, &got));
        }
        file.sync_all().await.map_err(|e| store(e, "fsync"))?;
        drop(file);
        tokio::fs::rename(tmp.path(), &final_path)
            .await
            .map_err(|e| store(e, "rename into place"))?;
        tmp.keep();
        sync_dir(&self.blobs).await.map_err(IngestError::Store)?;
        Ok(final_path)
    }
}

impl ContentStore {
    /// Reads a whole blob; `None` if it is not there.
    pub fn read(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.path(digest);
        match std::fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::Error::io(format!("read {}", path.display()), e)),
        }
    }

    /// The digests of every blob.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        let entries =
            std::fs::read_dir(&self.blobs).context(|| format!("read {}", self.blobs.display()))?;
        for entry in entries {
            let entry = entry.context(|| format!("read {}", self.blobs.display()))?;
            if let Some(name) = entry.file_name().to_str()
                && let Ok(d) = Digest::parse(&format!("sha256:{name}"))
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Moves a blob out of sight (into `ingest/`, which `open` empties)
    /// and returns where it went, for deletion; `None` if it was not there.
    pub fn doom(&self, digest: &Digest) -> Result<Option<PathBuf>> {
        let from = self.path(digest);
        let to = self.ingest.join(format!(
            "gc-{}-{}{}",
            digest.hex(),
            unique(),
            fsutil::TMP_SUFFIX
        ));
        match std::fs::rename(&from, &to) {
            Ok(()) => Ok(Some(to)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::Error::io(
                format!("remove blob {}", from.display()),
                e,
            )),
        }
    }
}

fn mismatch(want: &Digest, got: &Digest) -> IngestError {
    IngestError::Mismatch(format!(
        "digest mismatch: content hashes to {got}, not {want}"
    ))
}

async fn sync_dir(dir: &Path) -> Result<()> {
    let f = tokio::fs::File::open(dir)
        .await
        .context(|| format!("open {}", dir.display()))?;
    f.sync_all()
        .await
        .context(|| format!("fsync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn chunks(data: &'static [u8]) -> impl Stream<Item = io::Result<&'static [u8]>> + Unpin {
        stream::iter(data.chunks(3).map(Ok))
    }

    #[test]
    fn digest_parsing() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(Digest::parse("sha512:abcd").is_err());
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
        assert!(Digest::parse(&d.as_str().to_uppercase().replace("SHA256", "sha256")).is_err());
    }

    #[tokio::test]
    async fn ingest_verifies_digest_and_size_and_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data: &'static [u8] = b"some layer bytes";
        let d = Digest::of(data);
        let len = data.len() as u64;

        let wrong = Digest::of(b"other");
        let e = store.ingest(&wrong, len, chunks(data)).await.unwrap_err();
        assert!(e.to_string().contains("digest mismatch"), "{e}");
        let e = store.ingest(&d, len + 1, chunks(data)).await.unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = store.ingest(&d, len - 1, chunks(data)).await.unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
        let failing = stream::iter(vec![
            Ok(&data[..4]),
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")),
        ]);
        let e = store.ingest(&d, len, failing).await.unwrap_err();
        assert!(matches!(e, IngestError::Transfer { got: 4, .. }), "{e}");
        assert!(!store.has(&d, len));
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            0
        );

        let p = store.ingest(&d, len, chunks(data)).await.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), data);
        assert!(store.has(&d, len));
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn open_clears_ingest_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("ingest/abc-1-2.tmp"), b"half").unwrap();
        let d = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(store.put(b"kept"))
            .unwrap();
        drop(store);
        let store = ContentStore::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            0
        );
        assert!(store.has(&d, 4));
    }
}
