//! A map that forgets: least recently used entries go once their weight (roughly the
//! bytes they hold) passes a budget. The server's memory of digests, manifests and
//! `flaky` requests is one of these each, so that no stream of distinct requests grows it
//! without bound; what is forgotten is made again when its tag is asked for.

use std::hash::Hash;
use std::sync::Mutex;

/// An LRU map within `budget` units of weight.
#[derive(Debug)]
pub(crate) struct Bounded<K: Hash + Eq, V> {
    budget: u64,
    weigh: fn(&K, &V) -> u64,
    inner: Mutex<Inner<K, V>>,
}

#[derive(Debug)]
struct Inner<K: Hash + Eq, V> {
    map: lru::LruCache<K, (V, u64)>,
    weight: u64,
}

impl<K: Hash + Eq, V: Clone> Bounded<K, V> {
    pub fn new(budget: u64, weigh: fn(&K, &V) -> u64) -> Self {
        Self {
            budget,
            weigh,
            inner: Mutex::new(Inner {
                map: lru::LruCache::unbounded(),
                weight: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key`, now the most recently used.
    pub fn get(&self, key: &K) -> Option<V> {
        self.lock().map.get(key).map(|(v, _)| v.clone())
    }

    /// Keeps `value` under `key` as the most recently used, dropping the least recently
    /// used beyond the budget. Returns whether `key` was new.
    pub fn put(&self, key: K, value: V) -> bool {
        let weight = (self.weigh)(&key, &value);
        let mut inner = self.lock();
        inner.weight += weight;
        let old = inner.map.put(key, (value, weight));
        if let Some((_, old)) = &old {
            inner.weight -= old;
        }
        while inner.weight > self.budget {
            let Some((_, (_, dropped))) = inner.map.pop_lru() else {
                break;
            };
            inner.weight -= dropped;
        }
        old.is_none()
    }

    /// Keeps `make()` under `key` unless it has a value, which is then only marked used.
    pub fn put_new(&self, key: K, make: impl FnOnce() -> V) {
        if self.lock().map.get(&key).is_none() {
            self.put(key, make());
        }
    }

    /// How many entries are kept, and their weight.
    #[cfg(test)]
    pub fn usage(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.map.len(), inner.weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_go_beyond_the_budget() {
        let map: Bounded<u32, String> = Bounded::new(10, |_, v| v.len() as u64);
        assert!(map.put(1, "aaaa".into()));
        assert!(map.put(2, "bbbb".into()));
        assert_eq!(map.get(&1).as_deref(), Some("aaaa"));
        // 12 > 10: 2 is the least recently used.
        assert!(map.put(3, "cccc".into()));
        assert_eq!(map.get(&2), None);
        assert_eq!(map.usage(), (2, 8));
        assert!(!map.put(3, "cc".into()), "replaced, not added");
        assert_eq!(map.usage(), (2, 6));
        // Heavier than the budget: kept by nobody.
        map.put(4, "x".repeat(11));
        assert_eq!(map.usage(), (0, 0));
        for key in 0..100_000 {
            map.put(key, "y".into());
        }
        assert_eq!(map.usage(), (10, 10));
    }
}
