//! The content store: blobs (manifests, configs, compressed layers) by
//! digest at `content/blobs/sha256/<hex>`.
//!
//! A blob is written to a temp file under `content/ingest/`, fsynced,
//! read back and checked against its digest and size, and only then
//! renamed into place, so a blob file that exists is whole and verified.
//! `open` empties `ingest/`, which only a crash can leave non-empty, and
//! discards blobs that do not hash to their name.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

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

/// Blobs by digest.
#[derive(Debug)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens the store under `dir`: empties `ingest/` (what a crash left
    /// half-written or half-deleted) and re-hashes every blob, moving
    /// aside (and deleting) any that is not what its name says: a crash
    /// or a full disk under an older crius could leave an empty or short
    /// file under a digest name. The blobs are manifests, indexes and
    /// configs (layer blobs are not kept), a few KiB each and at most
    /// 4 MiB, so reading them all is cheap (a thousand images: ~10 MB).
    pub fn open(dir: &Path) -> Result<ContentStore> {
        let blobs = dir.join("blobs").join("sha256");
        let ingest = dir.join("ingest");
        fsutil::create_dir_all(&blobs)?;
        fsutil::remove_dir_all(&ingest)?;
        fsutil::create_dir_all(&ingest)?;
        let store = ContentStore { blobs, ingest };
        store.discard_damaged()?;
        Ok(store)
    }

    /// Re-hashes every blob; removes those that do not match their name
    /// (and temp files of an older crius).
    fn discard_damaged(&self) -> Result<()> {
        let entries =
            fs::read_dir(&self.blobs).context(|| format!("read {}", self.blobs.display()))?;
        for entry in entries {
            let entry = entry.context(|| format!("read {}", self.blobs.display()))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // Only what bears a digest name is a blob (and ours to judge).
            let Ok(digest) = Digest::parse(&format!("sha256:{name}")) else {
                continue;
            };
            let Err(why) = verify_file(&path, &digest) else {
                continue;
            };
            tracing::warn!(path = %path.display(), "discarding damaged blob: {why}");
            let to = self
                .ingest
                .join(format!("damaged-{name}-{}{}", unique(), fsutil::TMP_SUFFIX));
            fs::rename(&path, &to).context(|| format!("move aside {}", path.display()))?;
            if fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir()) {
                fsutil::remove_dir_all(&to)?;
            } else {
                fsutil::remove_file(&to)?;
            }
        }
        Ok(())
    }

    /// Where the blob `digest` lives (whether or not it is there).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether the blob is present with the expected size. A blob file is
    /// only ever created whole and verified (and re-verified at open), so
    /// its size is enough.
    pub fn has(&self, digest: &Digest, size: u64) -> bool {
        fs::symlink_metadata(self.path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Stores `data` (verified by the caller: what it was fetched as) as
    /// a blob, unless it is there already; returns its digest and `data`.
    /// The blob becomes visible under its digest only once written whole,
    /// fsynced and read back to the same digest and size: a write that
    /// fails (a full disk: ENOSPC, EDQUOT) fails the call and leaves
    /// nothing behind.
    pub async fn put(&self, data: Vec<u8>) -> Result<(Digest, Vec<u8>)> {
        let digest = Digest::of(&data);
        if self.has(&digest, data.len() as u64) {
            return Ok((digest, data));
        }
        let final_path = self.path(&digest);
        let tmp = TempPath::new(self.ingest.join(format!(
            "{}-{}{}",
            digest.hex(),
            unique(),
            fsutil::TMP_SUFFIX
        )));
        let blobs = self.blobs.clone();
        let d = digest.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            write_verified(tmp.path(), &data, &d)?;
            fs::rename(tmp.path(), &final_path)
                .context(|| format!("move blob {d} into place at {}", final_path.display()))?;
            tmp.keep();
            fs::File::open(&blobs)
                .and_then(|f| f.sync_all())
                .context(|| format!("fsync {}", blobs.display()))?;
            Ok(data)
        })
        .await
        .map_err(|e| crate::error::Error::Internal(format!("store blob {digest}: {e}")))?
        .map(|data| (digest, data))
    }
}

/// Writes `data` to a new file at `path`, fsyncs it, and reads it back:
/// it must have `data`'s length and hash to `digest`. Every step's error
/// is reported, with the path.
fn write_verified(path: &Path, data: &[u8], digest: &Digest) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .context(|| format!("create {}", path.display()))?;
    file.write_all(data)
        .context(|| format!("write {}", path.display()))?;
    file.sync_all()
        .context(|| format!("fsync {}", path.display()))?;
    drop(file);
    verify_file(path, digest).map_err(|why| {
        crate::error::Error::Internal(format!(
            "blob {digest} written to {} reads back wrong: {why}",
            path.display()
        ))
    })?;
    let len = fs::metadata(path)
        .context(|| format!("stat {}", path.display()))?
        .len();
    if len != data.len() as u64 {
        return Err(crate::error::Error::Internal(format!(
            "blob {digest} written to {} is {len} bytes, not {}",
            path.display(),
            data.len()
        )));
    }
    Ok(())
}

/// Whether the file at `path` hashes to `digest`; why not, if not.
fn verify_file(path: &Path, digest: &Digest) -> std::result::Result<(), String> {
    let mut file = fs::File::open(path).map_err(|e| format!("open: {e}"))?;
    let mut verifier = Verifier::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => verifier.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let len = verifier.len();
    let got = verifier.finish();
    if &got == digest {
        Ok(())
    } else {
        Err(format!("{len} bytes hashing to {got}"))
    }
}

impl ContentStore {
    /// Reads a whole blob; `None` if it is not there.
    pub fn read(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.path(digest);
        match fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::error::Error::io(
                format!("read {}", path.display()),
                e,
            )),
        }
    }

    /// The digests of every blob.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        let entries =
            fs::read_dir(&self.blobs).context(|| format!("read {}", self.blobs.display()))?;
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
        match fs::rename(&from, &to) {
            Ok(()) => Ok(Some(to)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::error::Error::io(
                format!("remove blob {}", from.display()),
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Runtime::new().unwrap()
    }

    fn count(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
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

    #[test]
    fn put_stores_whole_verified_blobs_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let (d, data) = rt().block_on(store.put(b"some config".to_vec())).unwrap();
        assert_eq!(d, Digest::of(b"some config"));
        assert_eq!(data, b"some config");
        assert_eq!(fs::read(store.path(&d)).unwrap(), b"some config");
        assert!(store.has(&d, 11));
        assert!(!store.has(&d, 10));
        // Again: nothing new.
        rt().block_on(store.put(b"some config".to_vec())).unwrap();
        assert_eq!(count(&dir.path().join("blobs/sha256")), 1);
        assert_eq!(count(&dir.path().join("ingest")), 0);
        assert_eq!(store.read(&d).unwrap().unwrap(), b"some config");
        assert_eq!(store.read(&Digest::of(b"x")).unwrap(), None);
    }

    #[test]
    fn a_failed_write_leaves_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        // The ingest directory gone: the temp file cannot be made.
        fs::remove_dir(dir.path().join("ingest")).unwrap();
        let e = rt().block_on(store.put(b"m".to_vec())).unwrap_err();
        assert!(matches!(e, crate::error::Error::Io { .. }), "{e}");
        assert!(e.to_string().contains("ingest"), "{e}");
        assert_eq!(count(&dir.path().join("blobs/sha256")), 0);
    }

    #[test]
    fn open_clears_ingest_and_discards_damaged_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("ingest/abc-1-2.tmp"), b"half").unwrap();
        let (kept, _) = rt().block_on(store.put(b"kept".to_vec())).unwrap();
        let (emptied, _) = rt().block_on(store.put(b"emptied".to_vec())).unwrap();
        let (flipped, _) = rt().block_on(store.put(b"flipped".to_vec())).unwrap();
        fs::write(store.path(&emptied), b"").unwrap();
        fs::write(store.path(&flipped), b"flippeD").unwrap();
        fs::write(dir.path().join("blobs/sha256/not-a-digest"), b"x").unwrap();
        drop(store);
        let store = ContentStore::open(dir.path()).unwrap();
        assert_eq!(count(&dir.path().join("ingest")), 0);
        assert!(store.has(&kept, 4));
        assert!(!store.path(&emptied).exists());
        assert!(!store.path(&flipped).exists());
        assert_eq!(store.read(&flipped).unwrap(), None);
        assert!(dir.path().join("blobs/sha256/not-a-digest").exists());
        assert_eq!(store.list().unwrap(), [kept]);
    }
}
