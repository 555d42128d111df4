//! Pseudo-random numbers for message ids, tokens and jitter, from the standard library's
//! randomly seeded hasher (no crate needed for numbers that guard nothing). Never for secrets:
//! those come from the system's random source. The bottom layer: it imports nothing from this
//! crate.

/// A pseudo-random number for message ids, tokens and jitter (not for secrets).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
