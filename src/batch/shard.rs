//! `--shard K/N`: which records of a fleet one machine takes.

/// One slice of a fleet: shard `index` (zero-based) of `count` takes the records whose
/// zero-based position `i` has `i % count == index`. Records are counted whether or not they
/// parse, so every shard agrees on the positions, and N shards together process every record
/// once. Interleaving, not contiguous slices: each shard gets an even share of the file without
/// knowing its length in advance, and stdin can be split as well as a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub(super) index: u64,
    pub(super) count: u64,
}

impl Shard {
    /// The whole file.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `k` (1-based, as written on the command line) of `n`.
    pub fn new(k: u64, n: u64) -> Option<Shard> {
        (n >= 1 && (1..=n).contains(&k)).then(|| Shard {
            index: k - 1,
            count: n,
        })
    }

    /// Whether the record at zero-based position `i` belongs to this shard.
    pub(super) fn takes(self, i: u64) -> bool {
        i % self.count == self.index
    }

    /// A counter of records that says, record by record, whether this shard takes it.
    pub(super) fn positions(self) -> Positions {
        Positions { shard: self, next: 0 }
    }

    /// The first shard writes what is written once per run (the CSV header), so the shards'
    /// outputs concatenate to one file.
    pub fn is_first(self) -> bool {
        self.index == 0
    }
}

pub(super) struct Positions {
    shard: Shard,
    next: u64,
}

impl Positions {
    /// Count one more record; true when it is this shard's.
    pub(super) fn take(&mut self) -> bool {
        let i = self.next;
        self.next += 1;
        self.shard.takes(i)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("`{s}` is not a shard: write K/N with 1 <= K <= N, e.g. 2/8");
        let (k, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let k: u64 = k.trim().parse().map_err(|_| bad())?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        Shard::new(k, n).ok_or_else(bad)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}
