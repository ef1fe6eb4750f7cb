//! Garbage collection of layers and blobs, and the leases that keep what
//! pulls and container creations are about to use out of its reach.
//!
//! A layer or blob is garbage when no image record and no container
//! references it and no lease holds it. Collection decides and moves the
//! garbage out of sight (a rename into a temp name, which `open` removes
//! after a crash) under the lease lock; taking a lease takes the same lock,
//! so a pull either leases a layer before collection looks (and it stays)
//! or finds it gone afterwards (and fetches it again). Deleting the moved
//! trees happens after the lock is released.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
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

impl Doomed {
    /// Deletes the moved trees; failures are logged (`open` retries them
    /// at the next start, as they carry temp names).
    pub fn delete(self) {
        for path in self.paths {
            let r = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(_) => Ok(()),
            };
            if let Err(e) = r {
                tracing::warn!(path = %path.display(), error = %e, "could not delete image garbage");
            }
        }
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
}
