//! A bounded least-recently-used map: the decision caches (trace ID -> decided) and the
//! `string_attribute` regex result cache. Written here because no crate of the tree has
//! one and the need is small: `get` refreshes, `put` inserts or refreshes and evicts the
//! least recently used entry beyond `capacity`. It must never grow past `capacity`.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

#[derive(Debug)]
pub struct Lru<K, V> {
    capacity: usize,
    entries: HashMap<K, (V, u64)>,
    /// Use stamp -> key, oldest first.
    order: BTreeMap<u64, K>,
    next_stamp: u64,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// A cache of at most `capacity` entries; 0 keeps nothing.
    pub fn new(capacity: usize) -> Lru<K, V> {
        Lru {
            capacity,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_stamp: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The value of `key`, marked as the most recently used.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let stamp = self.next_stamp;
        let entry = self.entries.get_mut(key)?;
        let old_stamp = std::mem::replace(&mut entry.1, stamp);
        self.next_stamp += 1;
        if let Some(k) = self.order.remove(&old_stamp) {
            self.order.insert(stamp, k);
        }
        self.entries.get(key).map(|(value, _)| value)
    }

    /// Inserts or replaces `key`, evicting the least recently used entry when full.
    pub fn put(&mut self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        if let Some((_, old_stamp)) = self.entries.insert(key.clone(), (value, stamp)) {
            self.order.remove(&old_stamp);
        }
        self.order.insert(stamp, key);
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut lru = Lru::new(2);
        lru.put("a", 1);
        lru.put("b", 2);
        assert_eq!(lru.get(&"a"), Some(&1)); // "b" is now the oldest
        lru.put("c", 3);
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.get(&"b"), None);
        assert_eq!(lru.get(&"a"), Some(&1));
        assert_eq!(lru.get(&"c"), Some(&3));
        lru.put("a", 10); // refresh with a new value: "c" is the oldest
        lru.put("d", 4);
        assert_eq!(lru.get(&"c"), None);
        assert_eq!(lru.get(&"a"), Some(&10));
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut lru = Lru::new(0);
        lru.put(1u8, ());
        assert_eq!(lru.len(), 0);
        assert!(lru.get(&1).is_none());
    }
}
