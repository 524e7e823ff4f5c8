//! Single-use, expiring tokens that stand for a registered request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tokens this long (bytes of randomness, hex-encoded in the URL).
const TOKEN_BYTES: usize = 16;
/// At most this many pending requests; the oldest are evicted beyond it so a
/// client that asks and never comes cannot grow the map without bound.
const MAX_PENDING: usize = 4096;

/// Pending requests by token.
pub(crate) struct TokenCache<T> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, T)>>,
}

impl<T> TokenCache<T> {
    /// An empty cache whose tokens live for `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        TokenCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `value` and returns its new token.
    pub(crate) fn insert(&self, value: T) -> String {
        self.insert_at(value, Instant::now())
    }

    fn insert_at(&self, value: T, now: Instant) -> String {
        let token = hex::encode(rand::random::<[u8; TOKEN_BYTES]>());
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (expires, _)| *expires > now);
        if map.len() >= MAX_PENDING {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (expires, _))| *expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(token.clone(), (now + self.ttl, value));
        token
    }

    /// Takes the request for `token`: `None` when unknown, already used or
    /// expired. A token works once.
    pub(crate) fn consume(&self, token: &str) -> Option<T> {
        self.consume_at(token, Instant::now())
    }

    fn consume_at(&self, token: &str, now: Instant) -> Option<T> {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (expires, value) = map.remove(token)?;
        (expires > now).then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_once() {
        let c = TokenCache::new(Duration::from_secs(60));
        let t = c.insert(7);
        assert_eq!(t.len(), TOKEN_BYTES * 2);
        assert_eq!(c.consume(&t), Some(7));
        assert_eq!(c.consume(&t), None);
        assert_eq!(c.consume("nope"), None);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let c = TokenCache::new(Duration::from_secs(60));
        let now = Instant::now();
        let t = c.insert_at(1, now);
        assert_eq!(c.consume_at(&t, now + Duration::from_secs(61)), None);
        let t2 = c.insert_at(2, now);
        assert_eq!(c.consume_at(&t2, now + Duration::from_secs(59)), Some(2));
    }

    #[test]
    fn tokens_are_distinct_and_the_map_is_bounded() {
        let c = TokenCache::new(Duration::from_secs(60));
        let mut seen = std::collections::HashSet::new();
        for i in 0..(MAX_PENDING + 10) {
            assert!(seen.insert(c.insert(i)));
        }
        assert!(c.entries.lock().unwrap().len() <= MAX_PENDING);
    }
}
