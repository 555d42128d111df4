//! A small map from names to values for what a device holds per measure point (its last
//! value, its history in memory): a sorted vector of boxed names, as long as it holds.
//! `BTreeMap` allocates a whole node of eleven entries for the first key, which made a
//! device that posts one point cost 1.8 KB more in `serve` (tests/held_memory.rs); a device
//! holds at most `twin::MAX_KEYS` points, so a binary search over a vector serves.

use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub(crate) struct Keyed<V>(Vec<(Box<str>, V)>);

impl<V> Default for Keyed<V> {
    fn default() -> Self {
        Keyed(Vec::new())
    }
}

impl<V> Keyed<V> {
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key))
    }

    /// Room for one more key, and no more: a vector's first growth makes room for four, and
    /// most devices post one or two points.
    fn grow(&mut self) {
        self.0.reserve_exact(1);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }

    /// Keep `value` under `key`, replacing what was there.
    pub(crate) fn insert(&mut self, key: &str, value: V) {
        match self.find(key) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => {
                self.grow();
                self.0.insert(i, (key.into(), value));
            }
        }
    }

    /// The value under `key`, a default one put there first when there is none.
    pub(crate) fn get_or_default(&mut self, key: &str) -> &mut V
    where
        V: Default,
    {
        let i = match self.find(key) {
            Ok(i) => i,
            Err(i) => {
                self.grow();
                self.0.insert(i, (key.into(), V::default()));
                i
            }
        };
        &mut self.0[i].1
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    /// The map as `GET /twin/devices` shows it.
    pub(crate) fn to_map(&self) -> BTreeMap<String, V>
    where
        V: Clone,
    {
        self.0.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }
}

impl<V> From<BTreeMap<String, V>> for Keyed<V> {
    fn from(map: BTreeMap<String, V>) -> Self {
        // A BTreeMap iterates in key order: the vector is sorted as it is built.
        Keyed(map.into_iter().map(|(k, v)| (k.into_boxed_str(), v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::Keyed;

    #[test]
    fn keeps_keys_sorted_and_replaces_a_value() {
        let mut m = Keyed::default();
        m.insert("b", 2);
        m.insert("a", 1);
        m.insert("c", 3);
        m.insert("b", 20);
        *m.get_or_default("d") += 4;
        *m.get_or_default("a") += 10;
        assert_eq!(m.len(), 4);
        assert_eq!(m.get("b"), Some(&20));
        assert_eq!(m.get("e"), None);
        assert!(m.contains_key("d"));
        let map = m.to_map();
        assert_eq!(
            map.into_iter().collect::<Vec<_>>(),
            [
                ("a".to_string(), 11),
                ("b".to_string(), 20),
                ("c".to_string(), 3),
                ("d".to_string(), 4)
            ]
        );
    }
}
