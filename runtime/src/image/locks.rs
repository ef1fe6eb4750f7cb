//! Per-key async locks (one per blob digest, one per chain id), so that
//! concurrent pulls sharing content download and unpack it once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// A set of named locks; a lock lives only while someone holds or waits
/// for it.
#[derive(Debug, Default)]
pub struct KeyLocks {
    locks: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl KeyLocks {
    /// Waits for and takes the lock named `key`.
    pub async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            match locks.get(key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    // Forget locks nobody holds any more before adding one.
                    locks.retain(|_, l| l.strong_count() > 0);
                    let lock = Arc::new(AsyncMutex::new(()));
                    locks.insert(key.to_string(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_key_excludes_other_keys_do_not() {
        let locks = KeyLocks::default();
        let a = locks.lock("a").await;
        let _b = locks.lock("b").await;
        let locks = Arc::new(locks);
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _a = l2.lock("a").await;
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        waiter.await.unwrap();
    }
}
