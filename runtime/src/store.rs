//! The metadata store: one directory per kind of record, one JSON file per
//! record, each written atomically (see [`crate::fsutil::atomic_write`]).
//!
//! Files, not a database: a record is small, written rarely (on lifecycle
//! changes) and read once at start-up; a crash leaves either the old or the
//! new record, never half of one. The in-memory maps of the runtime are the
//! working copy; this is the truth after a restart.

use std::fs;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, TMP_SUFFIX};

/// The directory beside the tables where records that cannot be trusted
/// are kept.
pub const QUARANTINE_DIR: &str = "quarantine";

/// A table of records of type `T`, keyed by a file-name-safe string.
#[derive(Debug)]
pub struct Table<T> {
    dir: PathBuf,
    _record: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Table<T> {
    /// Opens (creating if needed) the table stored in `dir`, removing temp
    /// files a crash may have left.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fsutil::create_dir_all(&dir)?;
        for entry in fs::read_dir(&dir).context(|| format!("read {}", dir.display()))? {
            let entry = entry.context(|| format!("read {}", dir.display()))?;
            if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                fsutil::remove_file(&entry.path())?;
            }
        }
        Ok(Table {
            dir,
            _record: PhantomData,
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        let safe = !key.is_empty()
            && !key.starts_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !safe {
            return Err(Error::Internal(format!("unsafe metadata key {key:?}")));
        }
        Ok(self.dir.join(format!("{key}.json")))
    }

    /// Writes (creates or replaces) a record.
    pub fn put(&self, key: &str, value: &T) -> Result<()> {
        let path = self.path(key)?;
        let data = serde_json::to_vec(value).map_err(|e| Error::Store {
            path: path.clone(),
            message: e.to_string(),
        })?;
        fsutil::atomic_write(&path, &data)
    }

    /// Replaces a record without waiting for the disk: readers and a
    /// restarted daemon see the old or the new record whole, but a machine
    /// crash may keep the old one. For updates that a machine crash makes
    /// moot anyway (a container started or exited: after a reboot it runs
    /// no more, whatever its record says).
    pub fn put_unsynced(&self, key: &str, value: &T) -> Result<()> {
        let path = self.path(key)?;
        let data = serde_json::to_vec(value).map_err(|e| Error::Store {
            path: path.clone(),
            message: e.to_string(),
        })?;
        fsutil::replace_file(&path, &data)
    }

    /// Reads a record, `None` if there is none.
    pub fn get(&self, key: &str) -> Result<Option<T>> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(data) => decode(&path, &data).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }

    /// Deletes a record; a missing one is not an error.
    pub fn delete(&self, key: &str) -> Result<()> {
        fsutil::remove_file(&self.path(key)?)
    }

    /// Moves the record of `key` out of the table into the quarantine
    /// directory beside it (`<table>/../quarantine/<table name>/`), where
    /// it is kept for a person to look at and never read again. Returns
    /// where it went.
    pub fn quarantine(&self, key: &str) -> Result<PathBuf> {
        self.quarantine_file(&self.path(key)?)
    }

    /// [`Table::quarantine`] for a record that cannot be trusted, saying
    /// why in the log (`kind` names what the table holds). Its object's
    /// directories are then left to start-up recovery, which removes only
    /// what the id proves is the object's.
    pub fn quarantine_logged(&self, kind: &str, key: &str, why: &str) {
        match self.quarantine(key) {
            Ok(to) => tracing::error!(
                id = key, kind, why, quarantined = %to.display(),
                "a stored record cannot be trusted; moved it to quarantine"
            ),
            Err(e) => tracing::error!(
                id = key, kind, why, error = %e,
                "a stored record cannot be trusted, and could not be moved to quarantine; ignoring it"
            ),
        }
    }

    fn quarantine_file(&self, path: &Path) -> Result<PathBuf> {
        let table = self.dir.file_name().unwrap_or_default();
        let dir = self
            .dir
            .parent()
            .unwrap_or(Path::new("."))
            .join(QUARANTINE_DIR)
            .join(table);
        // Root's only, whatever the table holds.
        std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
            .create(&dir)
            .context(|| format!("create {}", dir.display()))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let to = dir.join(format!("{name}.{}", crate::state::now_nanos()));
        fs::rename(path, &to)
            .context(|| format!("move {} to quarantine {}", path.display(), to.display()))?;
        Ok(to)
    }

    /// Reads every record. A record that cannot be read or decoded is
    /// moved to quarantine ([`Table::quarantine`]) and reported in
    /// [`Loaded::unreadable`] (naming its file) rather than failing the
    /// whole load.
    pub fn load_all(&self) -> Result<Loaded<T>> {
        let mut records = Vec::new();
        let mut bad = Vec::new();
        for entry in fs::read_dir(&self.dir).context(|| format!("read {}", self.dir.display()))? {
            let entry = entry.context(|| format!("read {}", self.dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            let path = entry.path();
            let read = fs::read(&path)
                .map_err(|e| Error::io(format!("read {}", path.display()), e))
                .and_then(|data| decode(&path, &data));
            match read {
                Ok(v) => records.push((key.to_string(), v)),
                Err(e) => bad.push(match self.quarantine_file(&path) {
                    Ok(to) => Error::Store {
                        path: path.clone(),
                        message: format!("{e}; moved to {}", to.display()),
                    },
                    Err(q) => Error::Store {
                        path: path.clone(),
                        message: format!("{e}; and it could not be moved to quarantine: {q}"),
                    },
                }),
            }
        }
        records.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Loaded {
            records,
            unreadable: bad,
        })
    }

    /// The directory holding the records.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What [`Table::load_all`] found.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The records by key, in key order.
    pub records: Vec<(String, T)>,
    /// Records that could not be read, each error naming its file.
    pub unreadable: Vec<Error>,
}

fn decode<T: DeserializeOwned>(path: &Path, data: &[u8]) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| Error::Store {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        n: u32,
    }

    #[test]
    fn put_get_delete_load() {
        let dir = tempfile::tempdir().unwrap();
        let t: Table<Rec> = Table::open(dir.path().join("recs")).unwrap();
        assert_eq!(t.get("a").unwrap(), None);
        t.put("a", &Rec { n: 1 }).unwrap();
        t.put("b", &Rec { n: 2 }).unwrap();
        t.put("a", &Rec { n: 3 }).unwrap();
        assert_eq!(t.get("a").unwrap(), Some(Rec { n: 3 }));
        fs::write(t.dir().join("broken.json"), b"{").unwrap();
        fs::write(t.dir().join("empty.json"), b"").unwrap();
        let loaded = t.load_all().unwrap();
        assert_eq!(loaded.records.len(), 2);
        assert_eq!(loaded.unreadable.len(), 2);
        // Kept aside, never read again.
        let kept = fs::read_dir(dir.path().join("quarantine/recs"))
            .unwrap()
            .count();
        assert_eq!(kept, 2);
        assert_eq!(t.load_all().unwrap().unreadable.len(), 0);
        t.quarantine("b").unwrap();
        assert_eq!(t.get("b").unwrap(), None);
        t.delete("a").unwrap();
        t.delete("a").unwrap();
        assert_eq!(t.get("a").unwrap(), None);
    }

    #[test]
    fn rejects_keys_that_escape_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let t: Table<Rec> = Table::open(dir.path()).unwrap();
        assert!(t.put("../x", &Rec { n: 1 }).is_err());
        assert!(t.put("", &Rec { n: 1 }).is_err());
        assert!(t.put(".hidden", &Rec { n: 1 }).is_err());
    }

    #[test]
    fn open_removes_crash_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".a.json.12.tmp"), b"half").unwrap();
        let _t: Table<Rec> = Table::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
