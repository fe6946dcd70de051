//! The in-isolate verdict cache: a bounded LRU with a time-to-live. Bounded
//! so that 100,000 distinct IPs cannot grow the isolate's memory without
//! limit; short-lived so a profile change reaches the request path quickly.

use std::num::NonZeroUsize;

use lru::LruCache;

pub struct TtlLru<V> {
    map: LruCache<String, (V, f64)>,
    ttl_ms: f64,
}

impl<V: Clone> TtlLru<V> {
    pub fn new(capacity: usize, ttl_ms: f64) -> TtlLru<V> {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        TtlLru { map: LruCache::new(cap), ttl_ms }
    }

    /// The value stored for `key` if it is younger than the TTL at `now`.
    pub fn get(&mut self, key: &str, now: f64) -> Option<V> {
        match self.map.get(key) {
            Some((v, at)) if now - *at <= self.ttl_ms => Some(v.clone()),
            Some(_) => {
                self.map.pop(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&mut self, key: &str, value: V, now: f64) {
        self.map.put(key.to_string(), (value, now));
    }

    pub fn remove(&mut self, key: &str) {
        self.map.pop(key);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.map.cap().get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_bound() {
        let mut c = TtlLru::new(3, 1000.0);
        c.put("a", 1, 0.0);
        assert_eq!(c.get("a", 1000.0), Some(1));
        assert_eq!(c.get("a", 1000.5), None, "expired");
        assert!(c.is_empty(), "expired entries are dropped");
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            c.put(k, i, 0.0);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("a", 0.0), None, "least recently used went first");
        c.get("b", 0.0);
        c.put("e", 9, 0.0);
        assert_eq!(c.get("b", 0.0), Some(1), "b was used, c was evicted");
        assert_eq!(c.get("c", 0.0), None);
        c.remove("b");
        assert_eq!(c.get("b", 0.0), None);
        assert_eq!(TtlLru::<u8>::new(0, 1.0).capacity(), 1);
    }

    #[test]
    fn stays_bounded_under_many_keys() {
        let mut c = TtlLru::new(1000, 5000.0);
        for i in 0..100_000 {
            c.put(&format!("198.51.{}.{}", i / 256, i % 256), i, f64::from(i));
        }
        assert_eq!(c.len(), 1000);
    }
}
