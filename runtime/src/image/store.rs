//! Image records: one JSON file per image in `images/` (keyed by the
//! config digest hex), and in-memory indexes by id, repo tag and repo
//! digest.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, PoisonError, RwLock};

use super::Image;
use super::reference::ImageRef;
use crate::error::{Error, Result};
use crate::store::Table;

#[derive(Debug, Default, Clone)]
struct Index {
    images: BTreeMap<String, Image>,
    by_tag: HashMap<String, String>,
    by_digest: HashMap<String, String>,
}

impl Index {
    fn build(images: BTreeMap<String, Image>) -> Index {
        let mut by_tag = HashMap::new();
        let mut by_digest = HashMap::new();
        for image in images.values() {
            for tag in &image.repo_tags {
                if let Some(other) = by_tag.insert(tag.clone(), image.id.clone()) {
                    tracing::warn!(tag, image = %image.id, other, "two image records claim one tag");
                }
            }
            for digest in &image.repo_digests {
                by_digest.insert(digest.clone(), image.id.clone());
            }
        }
        Index {
            images,
            by_tag,
            by_digest,
        }
    }
}

/// The image records.
#[derive(Debug)]
pub struct ImageRecords {
    table: Table<Image>,
    index: RwLock<Index>,
    /// Serialises record updates (read, change, persist, publish).
    update: Mutex<()>,
}

fn key(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl ImageRecords {
    /// Loads the records in `dir`. Unreadable records are logged and
    /// skipped (the image is then pulled again when asked for).
    pub fn open(dir: &Path) -> Result<ImageRecords> {
        let table: Table<Image> = Table::open(dir)?;
        let crate::store::Loaded {
            records,
            unreadable: bad,
        } = table.load_all()?;
        for e in bad {
            tracing::warn!(error = %e, "skipping unreadable image record");
        }
        let images = records
            .into_iter()
            .map(|(_, image)| (image.id.clone(), image))
            .collect();
        Ok(ImageRecords {
            table,
            index: RwLock::new(Index::build(images)),
            update: Mutex::new(()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every image, by id.
    pub fn list(&self) -> Vec<Image> {
        self.read().images.values().cloned().collect()
    }

    /// Finds an image by `sha256:<id>`, bare 64-hex id, repo tag (normalised:
    /// `busybox` is `docker.io/library/busybox:latest`), repo digest, or a
    /// unique id prefix of at least 3 hex characters.
    pub fn resolve(&self, query: &str) -> Result<Option<Image>> {
        if query.is_empty() {
            return Err(Error::InvalidArgument("empty image reference".into()));
        }
        let index = self.read();
        let prefix = match query.strip_prefix("sha256:") {
            Some(hex) if hex.len() == 64 && is_hex(hex) => {
                return Ok(index.images.get(query).cloned());
            }
            Some(hex) if hex.len() >= 3 && is_hex(hex) => Some(hex),
            Some(_) => None,
            None if query.len() == 64 && is_hex(query) => {
                return Ok(index.images.get(&format!("sha256:{query}")).cloned());
            }
            None if query.len() >= 3 && is_hex(query) => Some(query),
            None => None,
        };
        // A short hex string may also be an image name ("cafe"): names
        // first, then id prefixes.
        let parsed = ImageRef::parse(query);
        if let Ok(r) = &parsed {
            let id = match r.digest() {
                Some(d) => index.by_digest.get(&r.repo_digest(d)),
                None => r.repo_tag().and_then(|t| index.by_tag.get(&t)),
            };
            if let Some(image) = id.and_then(|id| index.images.get(id)) {
                return Ok(Some(image.clone()));
            }
        }
        if let Some(prefix) = prefix {
            let full = format!("sha256:{prefix}");
            let mut hits = index
                .images
                .range(full.clone()..)
                .take_while(|(id, _)| id.starts_with(&full));
            return match (hits.next(), hits.next()) {
                (Some((_, image)), None) => Ok(Some(image.clone())),
                (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
                    "image id prefix {prefix:?} is ambiguous"
                ))),
                (None, _) => Ok(None),
            };
        }
        parsed.map(|_| None)
    }

    /// Records a pulled image: merged with an existing record of the same
    /// id; its repo tags move away from any other image holding them
    /// (which is kept, with its other names). Persisted before return.
    pub fn record(&self, pulled: Image) -> Result<Image> {
        let _update = self.update.lock().unwrap_or_else(PoisonError::into_inner);
        let mut images = self.read().images.clone();

        let mut losers: Vec<Image> = Vec::new();
        for tag in &pulled.repo_tags {
            for (id, image) in images.iter_mut() {
                if *id != pulled.id && image.repo_tags.contains(tag) {
                    image.repo_tags.retain(|t| t != tag);
                    losers.retain(|l| l.id != *id);
                    losers.push(image.clone());
                }
            }
        }
        let mut image = match images.get(&pulled.id) {
            Some(old) => {
                let mut merged = pulled.clone();
                merged.repo_tags = old.repo_tags.clone();
                merged.repo_digests = old.repo_digests.clone();
                merged.blobs = old.blobs.clone();
                merged
            }
            None => Image {
                repo_tags: Vec::new(),
                repo_digests: Vec::new(),
                blobs: Vec::new(),
                ..pulled.clone()
            },
        };
        for t in pulled.repo_tags {
            if !image.repo_tags.contains(&t) {
                image.repo_tags.push(t);
            }
        }
        for d in pulled.repo_digests {
            if !image.repo_digests.contains(&d) {
                image.repo_digests.push(d);
            }
        }
        for b in pulled.blobs {
            if !image.blobs.contains(&b) {
                image.blobs.push(b);
            }
        }

        // Untag the old holders first: a crash in between loses a tag
        // (pull again), never leaves it on two images.
        for loser in &losers {
            self.table.put(key(&loser.id), loser)?;
        }
        self.table.put(key(&image.id), &image)?;
        images.insert(image.id.clone(), image.clone());
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = Index::build(images);
        Ok(image)
    }
}

impl ImageRecords {
    /// Deletes the record of image `id` (`sha256:<hex>`); false if there
    /// was none.
    pub fn remove(&self, id: &str) -> Result<bool> {
        let _update = self.update.lock().unwrap_or_else(PoisonError::into_inner);
        let mut images = self.read().images.clone();
        if images.remove(id).is_none() {
            return Ok(false);
        }
        self.table.delete(key(id))?;
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = Index::build(images);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn image(c: char, tags: &[&str], digests: &[&str]) -> Image {
        Image {
            id: id(c),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            size: 1,
            config: Default::default(),
            layers: vec![],
            blobs: vec![],
        }
    }

    const BB: &str = "docker.io/library/busybox:latest";
    const BB_D: &str = "docker.io/library/busybox@sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn resolution_rules() {
        let dir = tempfile::tempdir().unwrap();
        let recs = ImageRecords::open(dir.path()).unwrap();
        recs.record(image('a', &[BB], &[BB_D])).unwrap();
        let mut b = image('b', &["quay.io/x/y:1"], &[]);
        // ids sharing a 3-char prefix with nothing else
        b.id = format!("sha256:ab{}", "c".repeat(62));
        recs.record(b.clone()).unwrap();
        recs.record(image('c', &["docker.io/library/cafe:latest"], &[]))
            .unwrap();

        let get = |q: &str| recs.resolve(q).unwrap().map(|i| i.id);
        assert_eq!(get(&id('a')), Some(id('a')));
        assert_eq!(get(&"a".repeat(64)), Some(id('a')));
        assert_eq!(get("aaa"), Some(id('a')));
        assert_eq!(get("sha256:aaaa"), Some(id('a')));
        assert_eq!(get("abc"), Some(b.id.clone()));
        assert_eq!(get("busybox"), Some(id('a')));
        assert_eq!(get("busybox:latest"), Some(id('a')));
        assert_eq!(get(BB), Some(id('a')));
        assert_eq!(get("docker.io/busybox"), Some(id('a')));
        assert_eq!(get(&BB_D.replace("docker.io/library/", "")), Some(id('a')));
        assert_eq!(get("quay.io/x/y:1"), Some(b.id.clone()));
        // A name that looks like an id prefix is a name first.
        assert_eq!(get("cafe"), Some(id('c')));
        assert_eq!(get("busybox:other"), None);
        assert_eq!(get(&"d".repeat(64)), None);
        assert_eq!(get("ddd"), None);
        // "a" prefix of both aaa… and abc…
        assert!(matches!(recs.resolve("sha256:a"), Ok(None)));
        let two = format!("sha256:{}", "a".repeat(3));
        assert!(recs.resolve(&two).unwrap().is_some());
        assert!(matches!(recs.resolve(""), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            recs.resolve("Not A Ref"),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn ambiguous_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let recs = ImageRecords::open(dir.path()).unwrap();
        let mut x = image('a', &[], &[]);
        x.id = format!("sha256:abc1{}", "0".repeat(60));
        let mut y = image('a', &[], &[]);
        y.id = format!("sha256:abc2{}", "0".repeat(60));
        recs.record(x).unwrap();
        recs.record(y).unwrap();
        assert!(
            matches!(recs.resolve("abc"), Err(Error::InvalidArgument(m)) if m.contains("ambiguous"))
        );
        assert!(recs.resolve("abc1").unwrap().is_some());
    }

    #[test]
    fn tags_move_and_records_persist() {
        let dir = tempfile::tempdir().unwrap();
        let recs = ImageRecords::open(dir.path()).unwrap();
        recs.record(image('a', &[BB, "docker.io/library/busybox:1"], &[BB_D]))
            .unwrap();
        let d2 = BB_D.replace('1', "2");
        recs.record(image('b', &[BB], &[&d2])).unwrap();
        // Pulling again merges names.
        recs.record(image('b', &["docker.io/library/busybox:2"], &[&d2]))
            .unwrap();

        let recs = ImageRecords::open(dir.path()).unwrap();
        let a = recs.resolve(&id('a')).unwrap().unwrap();
        assert_eq!(a.repo_tags, ["docker.io/library/busybox:1"]);
        assert_eq!(a.repo_digests, [BB_D]);
        let b = recs.resolve("busybox").unwrap().unwrap();
        assert_eq!(b.id, id('b'));
        assert_eq!(b.repo_tags, [BB, "docker.io/library/busybox:2"]);
        assert_eq!(b.repo_digests, [d2]);
        assert_eq!(recs.list().len(), 2);
    }

    #[test]
    fn remove_takes_every_name_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let recs = ImageRecords::open(dir.path()).unwrap();
        recs.record(image('a', &[BB, "docker.io/library/busybox:1"], &[BB_D]))
            .unwrap();
        recs.record(image('b', &["quay.io/x/y:1"], &[])).unwrap();
        assert!(recs.remove(&id('a')).unwrap());
        assert!(!recs.remove(&id('a')).unwrap());
        assert_eq!(recs.resolve(BB).unwrap(), None);
        assert_eq!(recs.resolve(BB_D).unwrap(), None);
        let recs = ImageRecords::open(dir.path()).unwrap();
        assert_eq!(recs.list().len(), 1);
        assert_eq!(recs.resolve(BB).unwrap(), None);
    }
}
