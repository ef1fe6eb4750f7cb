//! The in-memory working copy of pods and containers: a map of entries,
//! each with its own locks, and an index of reserved names.
//!
//! Locking: the map lock is held only to look up, insert or remove an
//! entry. Each entry has a short-held `data` lock for reading and updating
//! the record, and an async `op` lock that serialises lifecycle operations
//! (create, start, stop, remove) on that one object; creating a container
//! takes its pod's `op` lock shared, so that a pod's containers are made
//! side by side while the pod cannot be stopped or removed. No lock is
//! ever held across a call to the OCI runtime or a CNI plugin except the
//! objects' own `op` locks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};

/// One pod or container.
#[derive(Debug)]
pub struct Entry<T> {
    id: String,
    data: Mutex<T>,
    op: tokio::sync::RwLock<()>,
    changed: tokio::sync::watch::Sender<()>,
}

impl<T: Clone> Entry<T> {
    /// A new entry holding `record`.
    pub fn new(id: &str, record: T) -> Arc<Self> {
        Arc::new(Entry {
            id: id.to_string(),
            data: Mutex::new(record),
            op: tokio::sync::RwLock::new(()),
            changed: tokio::sync::watch::Sender::new(()),
        })
    }

    /// The object's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A copy of the record.
    pub fn get(&self) -> T {
        self.lock().clone()
    }

    /// Locks the record for a short read or update. Never hold the guard
    /// across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        // A panic while holding this lock leaves a record that is still
        // whole (updates are plain field assignments), so go on with it.
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Updates the record and wakes whoever waits for a change.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.send_replace(());
        r
    }

    /// Waits until `done` holds for the record. Changes made through
    /// [`Entry::update`] wake the waiter; none are missed.
    pub async fn wait_for(&self, done: impl Fn(&T) -> bool) {
        let mut rx = self.changed.subscribe();
        loop {
            if done(&self.lock()) {
                return;
            }
            // The sender lives as long as the entry, which we borrow.
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Serialises lifecycle operations on this object.
    pub async fn op(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.op.write().await
    }

    /// Excludes [`Entry::op`] but not other holders of this: what may run
    /// side by side on one object (creating several containers in one
    /// pod) while keeping it from being stopped or removed.
    pub async fn op_shared(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.op.read().await
    }
}

/// All objects of one kind, by id, and their reserved names.
#[derive(Debug)]
pub struct Objects<T> {
    kind: &'static str,
    inner: Mutex<Inner<T>>,
}

#[derive(Debug)]
struct Inner<T> {
    by_id: HashMap<String, Arc<Entry<T>>>,
    names: HashMap<String, String>,
}

impl<T: Clone> Objects<T> {
    /// An empty set; `kind` names the objects in errors ("pod sandbox").
    pub fn new(kind: &'static str) -> Self {
        Objects {
            kind,
            inner: Mutex::new(Inner {
                by_id: HashMap::new(),
                names: HashMap::new(),
            }),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `name` for `id`; `AlreadyExists` naming the holder if taken.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        let mut inner = self.inner();
        if let Some(holder) = inner.names.get(name) {
            return Err(Error::AlreadyExists {
                kind: self.kind,
                name: name.to_string(),
                id: holder.clone(),
            });
        }
        inner.names.insert(name.to_string(), id.to_string());
        Ok(())
    }

    /// Releases a name reserved by `id` (a name held by another id stays).
    pub fn release_name(&self, name: &str, id: &str) {
        let mut inner = self.inner();
        if inner.names.get(name).is_some_and(|holder| holder == id) {
            inner.names.remove(name);
        }
    }

    /// Adds an entry.
    pub fn insert(&self, entry: Arc<Entry<T>>) {
        self.inner().by_id.insert(entry.id().to_string(), entry);
    }

    /// Removes an entry.
    pub fn remove(&self, id: &str) {
        self.inner().by_id.remove(id);
    }

    /// Finds an entry by full id or by a unique id prefix, as crictl and
    /// kubectl users type them.
    pub fn find(&self, id: &str) -> Result<Arc<Entry<T>>> {
        if id.is_empty() {
            return Err(Error::InvalidArgument(format!("{} id is empty", self.kind)));
        }
        let inner = self.inner();
        if let Some(e) = inner.by_id.get(id) {
            return Ok(e.clone());
        }
        let mut matches = inner.by_id.iter().filter(|(k, _)| k.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some((_, e)), None) => Ok(e.clone()),
            (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
                "{} id prefix {id:?} is ambiguous",
                self.kind
            ))),
            _ => Err(Error::not_found(self.kind, id)),
        }
    }

    /// Every entry, in no particular order.
    pub fn all(&self) -> Vec<Arc<Entry<T>>> {
        self.inner().by_id.values().cloned().collect()
    }
}

/// A fresh 64-hex-digit object id, as containerd and CRI-O make them.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness for a new id: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Whether `s` has the form of an id [`new_id`] makes (64 lowercase hex
/// digits): recovery touches a directory, cgroup or runtime state named by
/// an id only when its name has that form.
pub fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Now, in nanoseconds since the Unix epoch, as CRI timestamps are.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exclusive_until_released_by_their_holder() {
        let o: Objects<u32> = Objects::new("pod sandbox");
        o.reserve_name("a", "id1").unwrap();
        let err = o.reserve_name("a", "id2").unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { ref id, .. } if id == "id1"));
        o.release_name("a", "id2");
        assert!(o.reserve_name("a", "id3").is_err());
        o.release_name("a", "id1");
        o.reserve_name("a", "id3").unwrap();
    }

    #[test]
    fn find_by_unique_prefix() {
        let o: Objects<u32> = Objects::new("container");
        o.insert(Entry::new("abc123", 1));
        o.insert(Entry::new("abd456", 2));
        assert_eq!(o.find("abc").unwrap().get(), 1);
        assert_eq!(o.find("abd456").unwrap().get(), 2);
        assert!(matches!(o.find("ab"), Err(Error::InvalidArgument(_))));
        assert!(matches!(o.find("zz"), Err(Error::NotFound { .. })));
        assert!(matches!(o.find(""), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn ids_are_64_hex() {
        let a = new_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_id().unwrap());
    }
}
