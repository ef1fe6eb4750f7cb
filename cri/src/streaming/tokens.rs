//! Single-use, expiring tokens for streaming requests: Exec, Attach and
//! PortForward answer with a URL holding one, and the streaming server
//! trades it for the request exactly once, within its lifetime (the
//! kubelet's request cache: one minute, at most 1000 waiting).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

/// How long a token is valid (as the kubelet's).
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// How many unused tokens may wait at once (as the kubelet's).
pub const MAX_IN_FLIGHT: usize = 1000;
/// Random bytes in a token: 128 bits, unguessable.
const TOKEN_BYTES: usize = 16;

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Too many unused tokens are waiting.
    #[error("too many streaming requests in flight ({0}); try again")]
    TooMany(usize),
    /// The system random source failed.
    #[error("random token: {0}")]
    Random(String),
}

struct Waiting<T> {
    request: T,
    expires: Instant,
}

/// Requests waiting for their client, by token.
pub struct TokenCache<T> {
    ttl: Duration,
    max: usize,
    waiting: Mutex<HashMap<String, Waiting<T>>>,
}

impl<T> std::fmt::Debug for TokenCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<T> TokenCache<T> {
    /// A cache whose tokens live `ttl`, at most `max` at once.
    pub fn new(ttl: Duration, max: usize) -> Self {
        TokenCache {
            ttl,
            max,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting<T>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `request` and returns its token (URL-safe).
    pub fn insert(&self, request: T) -> Result<String, TokenError> {
        self.insert_at(request, Instant::now())
    }

    /// [`TokenCache::insert`] as of `now`.
    pub fn insert_at(&self, request: T, now: Instant) -> Result<String, TokenError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut waiting = self.waiting();
        waiting.retain(|_, w| w.expires > now);
        if waiting.len() >= self.max {
            return Err(TokenError::TooMany(self.max));
        }
        waiting.insert(
            token.clone(),
            Waiting {
                request,
                expires: now + self.ttl,
            },
        );
        Ok(token)
    }

    /// Trades `token` for its request: once, before it expires.
    pub fn consume(&self, token: &str) -> Option<T> {
        self.consume_at(token, Instant::now())
    }

    /// [`TokenCache::consume`] as of `now`.
    pub fn consume_at(&self, token: &str, now: Instant) -> Option<T> {
        let w = self.waiting().remove(token)?;
        (w.expires > now).then_some(w.request)
    }

    /// How many tokens wait (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.waiting().len()
    }

    /// No tokens wait.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_once() {
        let cache = TokenCache::new(DEFAULT_TTL, 10);
        let t = cache.insert("pod-a").unwrap();
        assert_eq!(t.len(), 22);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(cache.consume(&t), Some("pod-a"));
        assert_eq!(cache.consume(&t), None);
        assert_eq!(cache.consume("made-up"), None);
    }

    #[test]
    fn tokens_expire() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let t = cache.insert_at(1, t0).unwrap();
        assert_eq!(cache.consume_at(&t, t0 + Duration::from_secs(60)), None);
        let t = cache.insert_at(2, t0).unwrap();
        assert_eq!(cache.consume_at(&t, t0 + Duration::from_secs(59)), Some(2));
    }

    #[test]
    fn tokens_differ_and_are_bounded() {
        let cache = TokenCache::new(DEFAULT_TTL, 3);
        let t0 = Instant::now();
        let a = cache.insert_at((), t0).unwrap();
        let b = cache.insert_at((), t0).unwrap();
        assert_ne!(a, b);
        cache.insert_at((), t0).unwrap();
        assert!(matches!(
            cache.insert_at((), t0),
            Err(TokenError::TooMany(3))
        ));
        // Expired tokens make room.
        cache
            .insert_at((), t0 + DEFAULT_TTL + Duration::from_secs(1))
            .unwrap();
        assert_eq!(cache.len(), 1);
    }
}
