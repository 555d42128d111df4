//! The deciding side of a batch run: each parsed row's profile decided once and its result
//! formatted as JSON Lines or CSV. Runs on its own thread beside the reading one (`mod.rs`).
//!
//! A row's result is three pieces, each stored once as text (`pieces.rs`): the advice
//! (recommendation, protocols, unmet needs), the caveats and the answers set aside. A fleet
//! whose rows rarely repeat has hundreds of thousands of profiles (answers and needs) but a few
//! hundred distinct answers, so what a profile's answers decide is worked out once per answers
//! (a [`Row`]) and what its needs add is a lookup in small tables:
//!
//! - The walk depends on the needs only through which protocols open at the cover node carry
//!   each of them: the cover keeps the smallest sets of open protocols that carry every need
//!   any of them carries, and the prefer node chooses among those. So needs with the same
//!   *pattern set* (for each need, the set of open protocols that carry it) walk alike: one
//!   [`Path`] each.
//! - On a path, the advice depends on the needs no open protocol carries (the unmet ones), the
//!   caveats on the needs the caveat rules name (what carries them is the path's), and the
//!   answers set aside on the path alone.
//!
//! The engine decides every path and piece (`engine::walk`, `verdict`, `carriers`, `caveats`,
//! `set_aside`); this file only chooses what to remember them under. `tests/it/advice.rs`
//! checks every row of the whole answer space against `recommend`.

use std::collections::HashMap;

use super::pieces::{Cell, Pieces};
use super::row::{Key, KeyHasher, Layout};
use super::{Batch, BatchFormat, Done, HELD_LIMIT, PIECES_LIMIT, Summary};
use crate::capabilities::Capabilities;
use crate::engine;

type Fast = std::hash::BuildHasherDefault<KeyHasher>;

/// What a row's answers decide, whatever its needs.
enum Row {
    /// The walk never reads the needs (an outcome that is not a direct connection): one path.
    Blind(Path),
    /// The walk reads the needs at a cover node: a path per pattern set.
    Direct(Direct),
    /// The answers cannot be decided (an answer missing): the error's index.
    Failed(u32),
}

/// A direct connection's row: what each need's pattern is over the protocols open at the
/// cover node, and the paths found so far.
struct Direct {
    /// Per feature bit, the bit of its pattern (which open protocols carry it) in a pattern
    /// set; `None` when the open protocols are too many for a pattern set to fit, and each set
    /// of needs then takes a path of its own.
    pattern_bit: Option<Vec<u64>>,
    /// Pattern set to an index into `list`.
    paths: Slots,
    list: Vec<Path>,
}

/// A walk and what the needs that take it add: the advice by the needs left unmet, the
/// caveats by the needs the caveat rules name, and the answers set aside.
struct Path {
    /// The needs this path leaves unmet, as bits of the key's needs.
    unmet_mask: u64,
    /// The chosen protocols (the caveats are worked out from them).
    protocols: Vec<String>,
    /// By the needs the caveat rules name.
    caveats: Slots,
    /// The empty caveats when no rule can apply on this path, whatever the needs.
    no_caveats: Option<u32>,
    /// The recommendation and protocols, the same for every need on this path.
    class: u32,
    aside: u32,
}

impl Path {
    /// What a walk decides for every need that takes it.
    fn new(
        caps: &Capabilities,
        key: &Key,
        walk: &engine::Walk<'_>,
        outcome: &str,
        pieces: &mut Pieces,
    ) -> Path {
        let every = Key::all_needs(caps).needs(caps);
        let v = engine::verdict(caps, &every, walk, outcome);
        let unmet_mask = Key::needs_mask(caps, &v.unmet);
        let answers = key.answers(caps);
        let aside = pieces.aside(engine::set_aside(caps, &answers, walk));
        // With every need, every rule that could apply does: none means none ever will.
        let carriers = engine::carriers(caps, &every, &v.protocols);
        let no_caveats = engine::caveats(caps, &answers, &v.protocols, &carriers)
            .is_empty()
            .then(|| pieces.caveats(Vec::new()));
        Path {
            unmet_mask,
            caveats: Slots::new(pieces.caveat_needs.count_ones(), pieces),
            no_caveats,
            class: pieces.class(&v.recommendation, &v.protocols),
            protocols: v.protocols,
            aside,
        }
    }

    /// The advice for `key`'s needs on this path.
    fn advice(&self, caps: &Capabilities, key: &Key, pieces: &mut Pieces) -> u32 {
        // The needs left unmet are `unmet_mask`'s (what the verdict says, for any needs on
        // this path), so the advice is the path's class with those.
        pieces.advice(caps, self.class, key.needs & self.unmet_mask)
    }

    /// The caveats for `key`'s answers and needs on this path (its row's answers are fixed).
    fn caveats(&mut self, caps: &Capabilities, key: &Key, named: u64, pieces: &mut Pieces) -> u32 {
        if let Some(none) = self.no_caveats {
            return none;
        }
        let slot = compress(key.needs, named);
        if let Some(c) = self.caveats.get(slot) {
            return c;
        }
        let only = Key {
            values: key.values,
            needs: key.needs & named,
        };
        let carriers = engine::carriers(caps, &only.needs(caps), &self.protocols);
        let found = engine::caveats(caps, &key.answers(caps), &self.protocols, &carriers);
        let c = pieces.caveats(found);
        self.caveats.insert(slot, c);
        c
    }
}

impl Row {
    /// Walk `key`'s answers (with its needs) and say what kind of row they make.
    fn new(caps: &Capabilities, key: &Key, pieces: &mut Pieces) -> Row {
        let (walk, outcome) = match walk(caps, key) {
            Ok(w) => w,
            Err(message) => return Row::Failed(pieces.error(message)),
        };
        let open = walk.visits.iter().find_map(|v| match v.step {
            engine::Step::Covered { .. } => Some(v.open.clone()),
            _ => None,
        });
        let Some(open) = open else {
            return Row::Blind(Path::new(caps, key, &walk, &outcome, pieces));
        };
        // A need's pattern: a bit per open protocol that carries it; a pattern set has a bit
        // per pattern, so it fits 64 bits for up to 6 open protocols.
        let patterns = 1u32.checked_shl(u32::try_from(open.len()).unwrap_or(u32::MAX));
        let pattern_bit = (open.len() <= 6).then(|| {
            caps.features
                .iter()
                .map(|f| {
                    let pattern = open
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| f.support_for(p).covers())
                        .fold(0u32, |m, (i, _)| m | 1 << i);
                    1u64 << pattern
                })
                .collect()
        });
        // A pattern set has a bit per pattern: 2^open of them.
        let set_bits = match (&pattern_bit, patterns) {
            (Some(_), Some(n)) => n,
            _ => u32::MAX,
        };
        let mut direct = Direct {
            pattern_bit,
            paths: Slots::new(set_bits, pieces),
            list: vec![Path::new(caps, key, &walk, &outcome, pieces)],
        };
        let set = direct.pattern_set(key);
        direct.paths.insert(set, 0);
        Row::Direct(direct)
    }

    /// The pieces of `key`, whose answers are this row's.
    fn decide(&mut self, caps: &Capabilities, key: &Key, pieces: &mut Pieces) -> Cell {
        let named = pieces.caveat_needs;
        let path = match self {
            Row::Failed(e) => return Cell::failed(*e),
            Row::Blind(path) => path,
            Row::Direct(d) => {
                let set = d.pattern_set(key);
                let index = match d.paths.get(set) {
                    Some(i) => i,
                    None => match walk(caps, key) {
                        Ok((walk, outcome)) => {
                            let i = u32::try_from(d.list.len()).unwrap_or(u32::MAX);
                            d.list.push(Path::new(caps, key, &walk, &outcome, pieces));
                            d.paths.insert(set, i);
                            i
                        }
                        Err(message) => return Cell::failed(pieces.error(message)),
                    },
                };
                match d.list.get_mut(index as usize) {
                    Some(path) => path,
                    None => return Cell::failed(pieces.error("a path was lost".into())),
                }
            }
        };
        let advice = path.advice(caps, key, pieces);
        let caveats = path.caveats(caps, key, named, pieces);
        Cell::new(advice, caveats, path.aside)
    }
}

impl Direct {
    /// The set of patterns of `key`'s needs (the needs themselves when patterns do not fit).
    fn pattern_set(&self, key: &Key) -> u64 {
        let Some(bits) = &self.pattern_bit else {
            return key.needs;
        };
        let mut set = 0;
        let mut needs = key.needs;
        while needs != 0 {
            let i = needs.trailing_zeros() as usize;
            set |= bits.get(i).copied().unwrap_or(0);
            needs &= needs - 1;
        }
        set
    }
}

/// Small keys (bit sets of a few bits) to indexes: a flat array when the keys take at most
/// 2^12 values (a lookup is one read of a small array, which stays in the processor's cache),
/// else a hash table.
enum Slots {
    /// Index plus one; 0 is empty.
    Dense(Vec<u32>),
    Sparse(HashMap<u64, u32, Fast>),
}

impl Slots {
    /// For keys below 2^`bits`; counts what it holds in `pieces`.
    fn new(bits: u32, pieces: &mut Pieces) -> Slots {
        if bits <= 12 {
            pieces.hold(1 << bits);
            Slots::Dense(vec![0; 1 << bits])
        } else {
            Slots::Sparse(HashMap::default())
        }
    }

    fn get(&self, key: u64) -> Option<u32> {
        match self {
            Slots::Dense(v) => {
                let i = usize::try_from(key).ok()?;
                v.get(i).and_then(|&x| x.checked_sub(1))
            }
            Slots::Sparse(m) => m.get(&key).copied(),
        }
    }

    fn insert(&mut self, key: u64, value: u32) {
        match self {
            Slots::Dense(v) => {
                if let Some(slot) = usize::try_from(key).ok().and_then(|i| v.get_mut(i)) {
                    *slot = value.saturating_add(1);
                }
            }
            Slots::Sparse(m) => {
                m.insert(key, value);
            }
        }
    }
}

/// The bits of `bits` under `mask`, packed together (what `pext` does): a small key.
fn compress(bits: u64, mask: u64) -> u64 {
    let (mut out, mut at, mut m) = (0u64, 0u32, mask);
    while m != 0 {
        let b = m.trailing_zeros();
        out |= ((bits >> b) & 1) << at;
        at += 1;
        m &= m - 1;
    }
    out
}

/// The engine's walk of a profile, or why it cannot be decided.
fn walk<'c>(caps: &'c Capabilities, key: &Key) -> Result<(engine::Walk<'c>, String), String> {
    let answers = key.answers(caps);
    let walked = engine::walk(caps, &answers, true).map_err(|e| e.to_string())?;
    match &walked.end {
        engine::End::Outcome(o) => {
            let outcome = o.clone();
            Ok((walked, outcome))
        }
        engine::End::Pending(_) => {
            let ids = engine::missing(caps, &answers);
            Err(format!("missing answers for: {}", ids.join(", ")))
        }
    }
}

/// The deciding thread's state: what each row's answers decide, the pieces, the counts.
pub(super) struct Decider<'a> {
    caps: &'a Capabilities,
    /// To read a CSV row's needs field.
    layout: Layout<'a>,
    file: &'a str,
    /// What each distinct set of answers decides, found by the answers.
    rows: Vec<Row>,
    rows_by_answers: HashMap<u64, u32, Fast>,
    pieces: Pieces,
    summary: Summary,
    format: BatchFormat,
}

impl<'a> Decider<'a> {
    pub(super) fn new(caps: &'a Capabilities, file: &'a str, format: BatchFormat) -> Self {
        Decider {
            caps,
            layout: Layout::new(caps),
            file,
            rows: Vec::new(),
            rows_by_answers: HashMap::default(),
            pieces: Pieces::new(caps),
            summary: Summary::default(),
            format,
        }
    }

    /// Decide a batch of rows into `out` (a buffer used before, or a new one).
    pub(super) fn batch(&mut self, batch: &Batch, out: Option<Vec<u8>>) -> Done {
        let mut done = Done {
            out: out.unwrap_or_else(|| Vec::with_capacity(batch.rows.len() * 320)),
            bad: Vec::new(),
        };
        for row in &batch.rows {
            let id = row.id.clone().and_then(|r| batch.texts.get(r));
            let mut key = row.key.as_ref().copied().map_err(|e| e.clone());
            if let (Ok(k), Some(needs)) = (&mut key, row.needs.clone().and_then(|r| batch.texts.get(r)))
                && let Err(message) = k.needs_field(&self.layout, needs)
            {
                key = Err(message);
            }
            let key = key.as_ref().copied().map_err(String::as_str);
            // The reading thread leaves the id's UTF-8 check to this one, which copies the id
            // out anyway: the work is shared more evenly between the two.
            let (id, key) = match id.map(std::str::from_utf8) {
                None => (None, key),
                Some(Ok(id)) => (Some(id), key),
                Some(Err(_)) => (None, Err("the id is not UTF-8 text")),
            };
            self.row(row.lineno, id, key, &mut done);
        }
        done
    }

    pub(super) fn finish(self) -> Summary {
        let mut summary = self.summary;
        summary.by_recommendation = self.pieces.counters().filter(|(_, n)| *n > 0).collect();
        summary
    }

    /// Decide one parsed row and format it.
    fn row(&mut self, lineno: u64, id: Option<&str>, key: Result<Key, &str>, done: &mut Done) {
        let key = match key {
            Ok(k) => k,
            Err(message) => {
                self.summary.bad += 1;
                done.bad.push(format!("{}:{lineno}: {message}", self.file));
                return;
            }
        };
        if self.pieces.held() >= HELD_LIMIT || self.pieces.len() >= PIECES_LIMIT {
            // All start again together: a row's tables always point at kept pieces. The
            // counters of recommendations survive it.
            self.pieces.clear();
            self.rows.clear();
            self.rows_by_answers.clear();
        }
        let caps = self.caps;
        let index = match self.rows_by_answers.get(&key.values) {
            Some(&i) => i,
            None => {
                let i = u32::try_from(self.rows.len()).unwrap_or(u32::MAX);
                self.rows.push(Row::new(caps, &key, &mut self.pieces));
                self.rows_by_answers.insert(key.values, i);
                i
            }
        };
        let cell = match self.rows.get_mut(index as usize) {
            Some(row) => row.decide(caps, &key, &mut self.pieces),
            None => Cell::failed(self.pieces.error("a row was lost".into())),
        };
        self.write(lineno, id, cell, done);
    }

    /// Count a decided row and write its result.
    fn write(&mut self, lineno: u64, id: Option<&str>, cell: Cell, done: &mut Done) {
        let found = cell.pieces().and_then(|(a, c, s)| {
            Some((
                self.pieces.advice_piece(a)?,
                self.pieces.caveats_piece(c)?,
                self.pieces.aside_piece(s)?,
            ))
        });
        let Some((advice, caveats, aside)) = found else {
            let message = self.pieces.error_text(cell).to_string();
            self.summary.bad += 1;
            done.bad.push(format!("{}:{lineno}: {message}", self.file));
            return;
        };
        self.summary.rows += 1;
        if !advice.unmet_empty {
            self.summary.with_unmet += 1;
        }
        if !caveats.empty {
            self.summary.with_caveats += 1;
        }
        let counter = advice.counter;
        let mut numbered;
        let id = match id {
            Some(id) => id,
            None => {
                numbered = itoa::Buffer::new();
                numbered.format(lineno)
            }
        };
        let out = &mut done.out;
        match self.format {
            BatchFormat::Jsonl => {
                out.extend_from_slice(b"{\"line\":");
                out.extend_from_slice(itoa::Buffer::new().format(lineno).as_bytes());
                out.extend_from_slice(b",\"id\":");
                super::pieces::write_json_string(out, id);
                out.extend_from_slice(advice.json.as_bytes());
                out.extend_from_slice(caveats.json.as_bytes());
                out.extend_from_slice(aside.json.as_bytes());
                out.extend_from_slice(b"}\n");
            }
            BatchFormat::Csv => {
                super::pieces::write_csv_field(out, id);
                out.extend_from_slice(advice.csv.as_bytes());
                out.extend_from_slice(caveats.csv.as_bytes());
                out.extend_from_slice(aside.csv.as_bytes());
                out.push(b'\n');
            }
        }
        self.pieces.count(counter);
    }
}
