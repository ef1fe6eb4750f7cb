//! Unpacked layers, shared between images, at `layers/<chain id hex>/`:
//! `fs/` holds the tree (an overlayfs lower dir), `layer.json` says what
//! it came from.
//!
//! A layer is unpacked once, into `layers/.tmp-…` beside its final place,
//! synced and renamed into place, so a layer directory that exists is
//! whole. `open` removes the temp directories a crash left, and discards
//! a layer directory whose `layer.json` is missing, unreadable or names
//! another layer (a layer is never visible without its record).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::OwnedMutexGuard;

use super::content::Digest;
use super::gc::Trash;
use super::locks::KeyLocks;
use super::tmp::{TempPath, unique};
use super::unpack::{Caps, UnpackError, unpack_layer};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

const TMP_PREFIX: &str = ".tmp-";

/// The chain ids of a stack of layers given their diff ids, base first
/// (OCI image spec, "ChainID"): `chain(0) = diff(0)`,
/// `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// What one layer is, recorded beside its tree.
#[derive(Debug, Serialize)]
struct LayerRecord<'a> {
    chain_id: &'a str,
    diff_id: &'a str,
    parent: Option<&'a str>,
    blob_digest: &'a str,
    media_type: &'a str,
    /// What it unpacked to (see [`Caps`]), bytes.
    unpacked_bytes: u64,
}

/// The parts of a layer record read back.
#[derive(Debug, Deserialize)]
struct StoredRecord {
    chain_id: String,
    /// Absent in records of older crius.
    #[serde(default)]
    unpacked_bytes: Option<u64>,
}

/// What to unpack, and where it belongs in its stack.
#[derive(Debug)]
pub struct LayerSource<'a> {
    /// The blob's digest (for the record and errors).
    pub blob_digest: &'a Digest,
    /// Its media type (compression).
    pub media_type: &'a str,
    /// The uncompressed digest the image config promises.
    pub diff_id: &'a Digest,
    /// This layer's chain id.
    pub chain_id: &'a Digest,
    /// The chain id of the layer below, if any.
    pub parent: Option<&'a Digest>,
}

/// The unpacked layers.
#[derive(Debug)]
pub struct LayerStore {
    dir: PathBuf,
    locks: KeyLocks,
}

impl LayerStore {
    /// Opens the store under `dir`, removing half-unpacked layers, layers
    /// a collection was deleting and layers without a valid record. The
    /// first two are renamed out of the way at once and deleted by
    /// `trash` (a large one takes a minute: start-up does not wait).
    pub fn open(dir: &Path, trash: &Trash) -> Result<LayerStore> {
        fsutil::create_dir_all(dir)?;
        let store = LayerStore {
            dir: dir.to_path_buf(),
            locks: KeyLocks::default(),
        };
        for entry in fs::read_dir(dir).context(|| format!("read {}", dir.display()))? {
            let entry = entry.context(|| format!("read {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TMP_PREFIX) {
                // Renamed first: a name of this process's own can never
                // be one a pull of this process makes again.
                let to = dir.join(format!("{TMP_PREFIX}trash-{}", unique()));
                tracing::info!(path = %entry.path().display(), "removing half-unpacked or half-deleted layer");
                fs::rename(entry.path(), &to)
                    .context(|| format!("move aside {}", entry.path().display()))?;
                trash.dispose(vec![to]);
                continue;
            }
            let Ok(chain_id) = Digest::parse(&format!("sha256:{name}")) else {
                continue;
            };
            if let Err(why) = store.check(&chain_id) {
                tracing::warn!(path = %entry.path().display(), "discarding damaged layer: {why}");
                if let Some(doomed) = store.doom(&chain_id)? {
                    trash.dispose(vec![doomed]);
                }
            }
        }
        Ok(store)
    }

    /// Whether the layer directory of `chain_id` is one `commit` made: a
    /// tree and a record naming this layer.
    fn check(&self, chain_id: &Digest) -> std::result::Result<(), String> {
        if !self.fs_path(chain_id).is_dir() {
            return Err("no fs/ directory".into());
        }
        let record = self.record(chain_id)?;
        if record.chain_id != chain_id.as_str() {
            return Err(format!("layer.json names {:?}", record.chain_id));
        }
        Ok(())
    }

    fn record(&self, chain_id: &Digest) -> std::result::Result<StoredRecord, String> {
        let path = self.dir.join(chain_id.hex()).join("layer.json");
        let data = fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// What the layer unpacked to, bytes, if it is there and its record
    /// says (records of older crius do not).
    pub fn unpacked_size(&self, chain_id: &Digest) -> Option<u64> {
        self.record(chain_id).ok()?.unpacked_bytes
    }

    /// The tree of the layer `chain_id` (whether or not it is there).
    pub fn fs_path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex()).join("fs")
    }

    /// Whether the layer is unpacked.
    pub fn has(&self, chain_id: &Digest) -> bool {
        self.fs_path(chain_id).is_dir()
    }

    /// Serialises work on one chain id.
    pub async fn lock(&self, chain_id: &Digest) -> OwnedMutexGuard<()> {
        self.locks.lock(chain_id.as_str()).await
    }

    /// Unpacks a layer read from `blob` into place (blocking; call under
    /// [`Self::lock`]) within `caps`, verifying its diff id. `blob` must
    /// fail (not end) if the blob turns out not to be what its digest
    /// promises: the layer becomes visible only once `blob` has ended and
    /// the diff id matched. `what` names the layer and image in errors. On
    /// failure (a cap passed, the disk full) nothing is left behind.
    pub fn unpack<R: Read>(
        &self,
        src: &LayerSource<'_>,
        blob: R,
        what: &str,
        caps: &Caps,
    ) -> Result<()> {
        let tmp = self.temp_dir(src.chain_id)?;
        let began = std::time::Instant::now();
        let got = unpack_layer(blob, src.media_type, &tmp.path().join("fs"), caps).map_err(
            |e| match e {
                UnpackError::Io { entry, op, source } => Error::Io {
                    context: format!(
                        "unpack {what} into {}: entry {entry:?}: {op}",
                        tmp.path().display()
                    ),
                    source,
                },
                UnpackError::TooLarge(m) => {
                    Error::ResourceExhausted(format!("unpack {what}: {m}; refused"))
                }
                other => Error::External {
                    what: format!("unpack {what}"),
                    message: other.to_string(),
                },
            },
        )?;
        if &got.diff_id != src.diff_id {
            return Err(Error::External {
                what: format!("unpack {what}"),
                message: format!(
                    "uncompressed content hashes to {}, but the image config says {}",
                    got.diff_id, src.diff_id
                ),
            });
        }
        let unpacked = began.elapsed();
        self.commit(tmp, src, got.size)?;
        tracing::debug!(
            layer = %src.chain_id,
            bytes = got.size,
            unpack_ms = unpacked.as_millis() as u64,
            commit_ms = (began.elapsed() - unpacked).as_millis() as u64,
            "layer unpacked (from its first byte) and made durable"
        );
        Ok(())
    }

    /// Puts an empty layer into place (one whose diff id is that of an
    /// empty tar: nothing needs fetching). Blocking; call under
    /// [`Self::lock`].
    pub fn create_empty(&self, src: &LayerSource<'_>) -> Result<()> {
        let tmp = self.temp_dir(src.chain_id)?;
        self.commit(tmp, src, 1024)
    }

    fn temp_dir(&self, chain_id: &Digest) -> Result<TempPath> {
        let tmp = TempPath::new(self.dir.join(format!(
            "{TMP_PREFIX}{}-{}",
            chain_id.hex(),
            unique()
        )));
        fsutil::create_dir_all(&tmp.path().join("fs"))?;
        Ok(tmp)
    }

    /// Records where the layer in `tmp` came from, makes it durable and
    /// renames it into place.
    fn commit(&self, tmp: TempPath, src: &LayerSource<'_>, unpacked_bytes: u64) -> Result<()> {
        let final_dir = self.dir.join(src.chain_id.hex());
        let record = LayerRecord {
            chain_id: src.chain_id.as_str(),
            diff_id: src.diff_id.as_str(),
            parent: src.parent.map(Digest::as_str),
            blob_digest: src.blob_digest.as_str(),
            media_type: src.media_type,
            unpacked_bytes,
        };
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|e| Error::Internal(format!("encode layer record: {e}")))?;
        let record_path = tmp.path().join("layer.json");
        fs::write(&record_path, json).context(|| format!("write {}", record_path.display()))?;

        // The tree must be durable before it becomes visible.
        let dir =
            fs::File::open(tmp.path()).context(|| format!("open {}", tmp.path().display()))?;
        nix::unistd::syncfs(&dir).context(|| format!("syncfs {}", tmp.path().display()))?;
        match fs::rename(tmp.path(), &final_dir) {
            Ok(()) => tmp.keep(),
            // Another pull got there first: keep theirs, drop ours.
            Err(e) if final_dir.is_dir() => {
                tracing::debug!(error = %e, layer = %src.chain_id, "layer already unpacked");
                return Ok(());
            }
            Err(e) => {
                return Err(Error::io(
                    format!("move layer into place at {}", final_dir.display()),
                    e,
                ));
            }
        }
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .context(|| format!("fsync {}", self.dir.display()))
    }

    /// The chain ids of every unpacked layer.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).context(|| format!("read {}", self.dir.display()))? {
            let entry = entry.context(|| format!("read {}", self.dir.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Ok(d) = Digest::parse(&format!("sha256:{name}")) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Moves a layer out of sight (to a temp name `open` removes) and
    /// returns where it went, for deletion; `None` if it was not there.
    pub fn doom(&self, chain_id: &Digest) -> Result<Option<PathBuf>> {
        let from = self.dir.join(chain_id.hex());
        let to = self
            .dir
            .join(format!("{TMP_PREFIX}gc-{}-{}", chain_id.hex(), unique()));
        match fs::rename(&from, &to) {
            Ok(()) => Ok(Some(to)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("remove layer {}", from.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::parse(s).unwrap()
    }

    #[test]
    fn chain_ids_follow_the_oci_spec() {
        // Expected values computed independently:
        //   printf 'sha256:aaa… sha256:bbb…' | sha256sum
        let a = d("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        let b = d("sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
        let c = d("sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc");
        let ids = chain_ids(&[a.clone(), b, c]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1].as_str(), CHAIN_AB);
        assert_eq!(ids[2].as_str(), CHAIN_ABC);
        assert!(chain_ids(&[]).is_empty());
    }

    const CHAIN_AB: &str =
        "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c";
    const CHAIN_ABC: &str =
        "sha256:c1377126441fb2f5ec2c21ae2a60255331d639e830f0ee1b40a36e52d4c40588";

    #[test]
    fn open_removes_half_unpacked_and_unrecorded_layers() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(".tmp-abc-1-2/fs/x")).unwrap();
        fs::create_dir_all(dir.path().join("abcd/fs")).unwrap();
        let layer = |c: char| d(&format!("sha256:{}", c.to_string().repeat(64)));
        let (good, bare, empty, other) = (layer('a'), layer('b'), layer('c'), layer('e'));
        for (id, record) in [
            (&good, Some(format!(r#"{{"chain_id":"{good}"}}"#))),
            (&bare, None),
            (&empty, Some(String::new())),
            (&other, Some(format!(r#"{{"chain_id":"{good}"}}"#))),
        ] {
            fs::create_dir_all(dir.path().join(id.hex()).join("fs/etc")).unwrap();
            if let Some(r) = record {
                fs::write(dir.path().join(id.hex()).join("layer.json"), r).unwrap();
            }
        }
        let trash = Trash::new();
        let store = LayerStore::open(dir.path(), &trash).unwrap();
        while trash.pending() > 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!dir.path().join(".tmp-abc-1-2").exists());
        // Not a chain id: not ours to judge.
        assert!(dir.path().join("abcd/fs").exists());
        assert!(store.has(&good));
        assert_eq!(store.unpacked_size(&good), None);
        for gone in [&bare, &empty, &other] {
            assert!(!dir.path().join(gone.hex()).exists(), "{gone}");
        }
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
