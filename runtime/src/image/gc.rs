//! Garbage collection of layers and blobs, and the leases that keep what
//! pulls and container creations are about to use out of its reach.
//!
//! A layer or blob is garbage when no image record and no container
//! references it and no lease holds it. Collection decides and moves the
//! garbage out of sight (a rename into a temp name, which `open` removes
//! after a crash) under the lease lock; taking a lease takes the same lock,
//! so a pull either leases a layer before collection looks (and it stays)
//! or finds it gone afterwards (and fetches it again). Deleting the moved
//! trees happens after the lock is released, on the [`Trash`] thread: no
//! call waits for it (the layers of a large image take a minute to
//! delete).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Names (chain ids, blob digests) held by leases, with a count each.
#[derive(Debug, Default)]
pub struct Leases {
    held: Mutex<HashMap<String, usize>>,
}

/// What leases hold, seen under the lease lock by a collection.
pub struct Held<'a>(MutexGuard<'a, HashMap<String, usize>>);

impl Held<'_> {
    /// Whether a lease holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

impl Leases {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new, empty lease.
    pub fn lease(self: &Arc<Self>) -> Lease {
        Lease {
            leases: self.clone(),
            names: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` with the lease lock held: nothing can be leased meanwhile.
    pub fn locked<R>(&self, f: impl FnOnce(&Held<'_>) -> R) -> R {
        let held = Held(self.lock());
        f(&held)
    }
}

/// Names kept from collection until the lease drops.
#[derive(Debug)]
pub struct Lease {
    leases: Arc<Leases>,
    names: Mutex<Vec<String>>,
}

impl Lease {
    /// Holds `name` too. Call before looking whether the thing exists.
    pub fn add(&self, name: &str) {
        *self.leases.lock().entry(name.to_string()).or_insert(0) += 1;
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name.to_string());
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let names = std::mem::take(self.names.get_mut().unwrap_or_else(PoisonError::into_inner));
        let mut held = self.leases.lock();
        for name in names {
            if let Some(n) = held.get_mut(&name) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&name);
                }
            }
        }
    }
}

/// What one collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    /// Unpacked layers removed (chain ids).
    pub layers: Vec<String>,
    /// Blobs removed (digests).
    pub blobs: Vec<String>,
}

/// Garbage moved out of sight, to be deleted without the lock.
#[derive(Debug, Default)]
pub struct Doomed {
    /// Renamed layer directories and blob files.
    pub paths: Vec<PathBuf>,
}

/// Deletes trees moved out of sight (under temp names, which `open`
/// finds again after a crash), one at a time on a thread of its own: no
/// call and no lock waits for a tree's removal, and removals do not pile
/// up on the disk.
#[derive(Debug)]
pub struct Trash {
    tx: Mutex<Option<mpsc::Sender<PathBuf>>>,
    pending: Arc<AtomicUsize>,
}

impl Trash {
    /// Starts the deleting thread. If it cannot be started, trash is
    /// deleted by whoever throws it away.
    pub fn new() -> Trash {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let pending = Arc::new(AtomicUsize::new(0));
        let left = pending.clone();
        let spawned = std::thread::Builder::new()
            .name("crius-image-trash".into())
            .spawn(move || {
                for path in rx {
                    delete(&path);
                    left.fetch_sub(1, Ordering::SeqCst);
                }
            });
        if let Err(e) = &spawned {
            tracing::warn!(error = %e, "cannot start the image trash thread; deleting inline");
        }
        Trash {
            tx: Mutex::new(spawned.ok().map(|_| tx)),
            pending,
        }
    }

    /// Has `paths` deleted, soon.
    pub fn dispose(&self, paths: Vec<PathBuf>) {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        for path in paths {
            self.pending.fetch_add(1, Ordering::SeqCst);
            let unsent = match tx.as_ref() {
                Some(tx) => tx.send(path).err().map(|e| e.0),
                None => Some(path),
            };
            if let Some(path) = unsent {
                delete(&path);
                self.pending.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Trees not deleted yet.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}

/// Deletes a tree or file; a failure is logged (`open` finds it again at
/// the next start, as it carries a temp name).
fn delete(path: &Path) {
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    };
    if let Err(e) = r {
        tracing::warn!(path = %path.display(), error = %e, "could not delete image garbage");
    }
}

/// The names a set of references keeps: every string in `keep`.
pub fn keeps(keep: &HashSet<String>, held: &Held<'_>, name: &str) -> bool {
    keep.contains(name) || held.contains(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_count_and_release() {
        let leases = Arc::new(Leases::default());
        let a = leases.lease();
        a.add("x");
        a.add("y");
        let b = leases.lease();
        b.add("x");
        leases.locked(|h| assert!(h.contains("x") && h.contains("y") && !h.contains("z")));
        drop(a);
        leases.locked(|h| assert!(h.contains("x") && !h.contains("y")));
        drop(b);
        leases.locked(|h| assert!(!h.contains("x")));
        assert!(leases.lock().is_empty());
    }

    #[test]
    fn trash_is_deleted_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join(".tmp-gc-a");
        std::fs::create_dir_all(tree.join("x/y")).unwrap();
        std::fs::write(tree.join("x/y/f"), b"f").unwrap();
        let file = dir.path().join("gc-b.tmp");
        std::fs::write(&file, b"b").unwrap();
        let trash = Trash::new();
        trash.dispose(vec![tree.clone(), file.clone(), dir.path().join("gone")]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while trash.pending() > 0 {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!tree.exists() && !file.exists());
    }
}
