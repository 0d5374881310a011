//! Values kept in memory between queries within a byte budget, least recently used first out: opened
//! full-text indexes (`text_search::IndexCache`) and bloom filters (`bloom_filters`).

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Mutex;

/// The entries with their sizes, and the bytes they hold.
type Entries<K, V> = (lru::LruCache<K, (V, u64)>, u64);

pub struct ByteLru<K: Hash + Eq, V: Clone> {
    budget: u64,
    entries: Mutex<Entries<K, V>>,
}

impl<K: Hash + Eq, V: Clone> ByteLru<K, V> {
    /// A cache of at most `budget` bytes (0: nothing is kept).
    pub fn new(budget: u64) -> ByteLru<K, V> {
        ByteLru { budget, entries: Mutex::new((lru::LruCache::unbounded(), 0)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K, V>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.lock().0.get(key).map(|(v, _)| v.clone())
    }

    /// Keeps `value` (of `bytes`), dropping the least recently used entries over the budget; a value
    /// larger than the whole budget is not kept.
    pub fn put(&self, key: K, value: V, bytes: u64) {
        if bytes > self.budget {
            return;
        }
        let mut guard = self.lock();
        let (lru, used) = &mut *guard;
        if let Some((_, old)) = lru.put(key, (value, bytes)) {
            *used -= old;
        }
        *used += bytes;
        while *used > self.budget {
            match lru.pop_lru() {
                Some((_, (_, b))) => *used -= b,
                None => break,
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.lock().1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_values_go_first_and_the_budget_holds() {
        let c: ByteLru<String, u32> = ByteLru::new(10);
        c.put("a".into(), 1, 4);
        c.put("b".into(), 2, 4);
        assert_eq!(c.get("a"), Some(1), "a is now the most recently used");
        c.put("c".into(), 3, 4);
        assert_eq!((c.get("a"), c.get("b"), c.get("c")), (Some(1), None, Some(3)));
        assert_eq!(c.bytes(), 8);
        c.put("a".into(), 5, 2);
        assert_eq!((c.get("a"), c.bytes()), (Some(5), 6), "a replaced value is counted once");
        c.put("huge".into(), 9, 11);
        assert_eq!((c.get("huge"), c.bytes()), (None, 6), "larger than the budget: not kept, nothing evicted");
        let off: ByteLru<String, u32> = ByteLru::new(0);
        off.put("a".into(), 1, 1);
        assert_eq!(off.get("a"), None);
    }
}
