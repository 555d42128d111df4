//! The decided profiles of a batch run: a profile's key to its result's index, bounded.
//!
//! Rows of a fleet whose needs rarely repeat make a cache of a few hundred thousand profiles,
//! and a hash table that large is looked up with a cache miss per row (a fifth of a batch
//! run, measured). Most of a profile's key is its needs, a dozen bits, and its answers take a
//! few hundred values at most; so the answers pick a row (a small hash table) and the needs a
//! cell of that row in one flat array, which for the shipped model (11 features: 16 KiB a row)
//! stays in the processor's cache. A model with more features than [`DENSE_FEATURES`] uses a
//! plain hash table.

use std::collections::HashMap;

use super::row::{Key, KeyHasher};

type Fast = std::hash::BuildHasherDefault<KeyHasher>;

/// The most features a row of cells is made for: 2^12 cells of 8 bytes, 32 KiB a row.
const DENSE_FEATURES: usize = 12;
/// A cell no profile was decided for (a decided result is never 0).
const EMPTY: u64 = 0;

pub(super) enum Cache {
    Dense {
        /// Cells per row, a power of two: 2^features.
        width: usize,
        rows: HashMap<u64, usize, Fast>,
        cells: Vec<u64>,
        decided: usize,
    },
    Sparse(HashMap<Key, u64, Fast>),
}

impl Cache {
    pub(super) fn new(features: usize) -> Self {
        if features <= DENSE_FEATURES {
            Cache::Dense {
                width: 1 << features,
                rows: HashMap::default(),
                cells: Vec::new(),
                decided: 0,
            }
        } else {
            Cache::Sparse(HashMap::default())
        }
    }

    /// The memory held, in cells of 8 bytes: what the run's bound counts. A hash table's
    /// entry counts as four (key, value and the table's own share).
    pub(super) fn len(&self) -> usize {
        match self {
            Cache::Dense { cells, .. } => cells.len(),
            Cache::Sparse(m) => m.len().saturating_mul(4),
        }
    }

    pub(super) fn clear(&mut self) {
        match self {
            Cache::Dense {
                rows, cells, decided, ..
            } => {
                rows.clear();
                cells.clear();
                *decided = 0;
            }
            Cache::Sparse(m) => m.clear(),
        }
    }

    /// The result of `key`, decided by `decide` the first time. A result is never 0 (the
    /// empty cell).
    pub(super) fn get_or_decide(&mut self, key: Key, decide: impl FnOnce(&Key) -> u64) -> u64 {
        match self {
            Cache::Dense {
                width,
                rows,
                cells,
                decided,
            } => {
                // Needs past the row's width cannot occur (a key sets bits of known features
                // only), but a wrong cell must never be read: decide without caching.
                let Ok(needs) = usize::try_from(key.needs) else {
                    return decide(&key);
                };
                if needs >= *width {
                    return decide(&key);
                }
                let next = rows.len();
                let row = *rows.entry(key.values).or_insert(next);
                let at = row.saturating_mul(*width).saturating_add(needs);
                if at >= cells.len() {
                    cells.resize(row.saturating_add(1).saturating_mul(*width), EMPTY);
                }
                match cells.get_mut(at) {
                    Some(cell) if *cell != EMPTY => *cell,
                    Some(cell) => {
                        let result = decide(&key);
                        *cell = result;
                        *decided += 1;
                        result
                    }
                    None => decide(&key),
                }
            }
            Cache::Sparse(m) => *m.entry(key).or_insert_with_key(decide),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(values: u64, needs: u64) -> Key {
        Key { values, needs }
    }

    #[test]
    fn each_profile_is_decided_once_dense_or_sparse() {
        for features in [11, 20] {
            let mut cache = Cache::new(features);
            let calls = std::cell::Cell::new(0);
            let decide = |k: &Key| {
                calls.set(calls.get() + 1);
                k.values * 10_000 + k.needs
            };
            for round in 0..2 {
                for values in [0x21, 0x3121, 0x21] {
                    for needs in [0, 5, 2047] {
                        let got = cache.get_or_decide(key(values, needs), decide);
                        assert_eq!(got, values * 10_000 + needs, "round {round}");
                    }
                }
            }
            assert_eq!(
                calls.get(),
                6,
                "{features} features: two answers times three needs"
            );
            cache.clear();
            assert_eq!(cache.len(), 0);
            cache.get_or_decide(key(1, 1), decide);
            assert_eq!(calls.get(), 7, "decided again after a clear");
        }
    }

    #[test]
    fn needs_past_the_width_are_decided_not_cached() {
        let mut cache = Cache::new(3);
        let mut calls = 0;
        for _ in 0..2 {
            cache.get_or_decide(key(1, 8), |_| {
                calls += 1;
                7
            });
        }
        assert_eq!(calls, 2);
    }
}
