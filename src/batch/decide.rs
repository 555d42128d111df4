//! The deciding side of a batch run: each parsed row's profile decided once and its result
//! formatted as JSON Lines or CSV. Runs on its own thread beside the reading one (`mod.rs`).
//!
//! A row's result is three pieces, each stored once as text and written one after another:
//! the advice (recommendation, protocols, unmet needs), the caveats and the answers set aside.
//! They depend on different things, so each is remembered under what it depends on, and a
//! profile new to the cache is most often three lookups (`pieces.rs` holds the tables).

use std::collections::HashMap;

use super::cache::Cache;
use super::pieces::{Cell, Pieces};
use super::row::{Key, KeyHasher};
use super::{Batch, BatchFormat, CACHE_LIMIT, Done, PIECES_LIMIT, Summary};
use crate::answers::Answers;
use crate::capabilities::Capabilities;
use crate::engine;

type Fast = std::hash::BuildHasherDefault<KeyHasher>;

/// A walk as far as later rows need it: the answers it read (a mask of question nibbles), its
/// outcome, the advice when the walk read the needs (then the walk is for those needs only),
/// and why each question it did not read could not change the outcome.
struct Walked<'c> {
    mask: u64,
    /// Kept for walks that never read the needs: their advice is worked out per set of needs.
    walk: Option<(engine::Walk<'c>, String)>,
    /// For a walk that read the needs: its advice.
    advice: Option<u32>,
    /// Per question the walk did not read: why, as an index into [`Pieces::whys`].
    whys: Vec<(usize, u32)>,
}

/// What earlier walks teach about later rows. A walk reads some answers and, at a cover node,
/// maybe the needs, and nothing else: another row that agrees on what a walk read walks the
/// same way. So each walk is remembered under the answers it read (a mask of question
/// nibbles, the row's values under it) and, when it read the needs, the needs; a new profile
/// is looked up under every mask seen so far (a handful). A walk is most of a decision's cost,
/// and this leaves one per distinct path.
#[derive(Default)]
struct Walks<'c> {
    /// Masks seen, each with whether its walks read the needs.
    shapes: Vec<(u64, bool)>,
    /// Walks that never read the needs, by (mask, values under it).
    blind: HashMap<(u64, u64), u32, Fast>,
    /// Walks that read the needs, by (mask, values under it, needs).
    read: HashMap<(u64, u64, u64), u32, Fast>,
    list: Vec<Walked<'c>>,
    /// The advice of walks that never read the needs, by (walk, needs).
    advice: HashMap<(u32, u64), u32, Fast>,
    /// Caveats by (advice, the answers of the caveats' questions).
    caveats: HashMap<(u32, u64), u32, Fast>,
    /// Answers set aside by (walk, the answers it did not read).
    asides: HashMap<(u32, u64), u32, Fast>,
}

impl Walks<'_> {
    fn clear(&mut self) {
        *self = Walks::default();
    }
}

/// The walk a profile takes: remembered, or walked now. `Err` is why it cannot be decided.
fn walk_for<'c>(
    caps: &'c Capabilities,
    key: &Key,
    pieces: &mut Pieces,
    walks: &mut Walks<'c>,
) -> Result<u32, String> {
    for &(mask, needs_read) in &walks.shapes {
        let found = if needs_read {
            walks.read.get(&(mask, key.values & mask, key.needs))
        } else {
            walks.blind.get(&(mask, key.values & mask))
        };
        if let Some(&w) = found {
            return Ok(w);
        }
    }
    let answers = key.answers(caps);
    let walked = engine::walk(caps, &answers, true).map_err(|e| e.to_string())?;
    let outcome = match &walked.end {
        engine::End::Outcome(o) => o.clone(),
        engine::End::Pending(_) => {
            let ids = engine::missing(caps, &answers);
            return Err(format!("missing answers for: {}", ids.join(", ")));
        }
    };
    let needs_read = walked
        .visits
        .iter()
        .any(|v| matches!(v.step, engine::Step::Covered { .. }));
    let mask = walked
        .answers
        .iter()
        .filter_map(|a| caps.questions.iter().position(|q| q.id == a.question))
        .fold(0u64, |m, q| m | Key::nibble_mask(q));
    if !walks.shapes.contains(&(mask, needs_read)) {
        walks.shapes.push((mask, needs_read));
    }
    let whys = caps
        .questions
        .iter()
        .enumerate()
        .filter(|(q, _)| Key::nibble_mask(*q) & mask == 0)
        .map(|(q, question)| (q, pieces.why(engine::set_aside_why(caps, &walked, &question.id))))
        .collect();
    let w = u32::try_from(walks.list.len()).unwrap_or(u32::MAX);
    let mut entry = Walked {
        mask,
        walk: None,
        advice: None,
        whys,
    };
    if needs_read {
        entry.advice = Some(advice_of(caps, &answers, &walked, &outcome, pieces));
        walks.read.insert((mask, key.values & mask, key.needs), w);
    } else {
        entry.walk = Some((walked, outcome));
        walks.blind.insert((mask, key.values & mask), w);
    }
    walks.list.push(entry);
    Ok(w)
}

/// The advice piece of a walk for the needs in `answers`.
fn advice_of(
    caps: &Capabilities,
    answers: &Answers,
    walked: &engine::Walk<'_>,
    outcome: &str,
    pieces: &mut Pieces,
) -> u32 {
    let needs = answers.need_list();
    let v = engine::verdict(caps, needs, walked, outcome);
    let carriers = engine::carriers(caps, needs, &v.protocols);
    pieces.advice(v, carriers)
}

/// Decide a profile: the indexes of its three pieces.
fn decide_row<'c>(caps: &'c Capabilities, key: &Key, pieces: &mut Pieces, walks: &mut Walks<'c>) -> Cell {
    let w = match walk_for(caps, key, pieces, walks) {
        Ok(w) => w,
        Err(message) => return Cell::failed(pieces.error(message)),
    };
    let Some(entry) = walks.list.get(w as usize) else {
        return Cell::failed(pieces.error("a walk was lost".into()));
    };
    let advice = match (&entry.walk, entry.advice) {
        (_, Some(a)) => a,
        (Some((walked, outcome)), None) => match walks.advice.get(&(w, key.needs)) {
            Some(&a) => a,
            None => {
                let a = advice_of(caps, &key.answers(caps), walked, outcome, pieces);
                walks.advice.insert((w, key.needs), a);
                a
            }
        },
        (None, None) => return Cell::failed(pieces.error("a walk was lost".into())),
    };
    let caveat_answers = key.values & pieces.caveat_mask;
    let caveats = match walks.caveats.get(&(advice, caveat_answers)) {
        Some(&c) => c,
        None => {
            let c = pieces.caveats(caps, advice, &key.answers(caps));
            walks.caveats.insert((advice, caveat_answers), c);
            c
        }
    };
    let unread = key.values & !entry.mask;
    let aside = match walks.asides.get(&(w, unread)) {
        Some(&c) => c,
        None => {
            let c = pieces.aside(caps, key, &entry.whys);
            walks.asides.insert((w, unread), c);
            c
        }
    };
    Cell::new(advice, caveats, aside)
}

/// The deciding thread's state: decisions cached by key, the pieces, the counts.
pub(super) struct Decider<'a> {
    caps: &'a Capabilities,
    file: &'a str,
    cache: Cache,
    pieces: Pieces,
    walks: Walks<'a>,
    summary: Summary,
    format: BatchFormat,
}

impl<'a> Decider<'a> {
    pub(super) fn new(caps: &'a Capabilities, file: &'a str, format: BatchFormat) -> Self {
        Decider {
            caps,
            file,
            cache: Cache::new(caps.features.len()),
            pieces: Pieces::new(caps),
            walks: Walks::default(),
            summary: Summary::default(),
            format,
        }
    }

    pub(super) fn batch(&mut self, batch: &Batch) -> Done {
        let mut done = Done {
            out: Vec::with_capacity(batch.rows.len() * 128),
            bad: Vec::new(),
        };
        for row in &batch.rows {
            let id = row.id.clone().and_then(|r| batch.ids.get(r));
            let key = row.key.as_ref().copied().map_err(String::as_str);
            self.row(row.lineno, id, key, &mut done);
        }
        done
    }

    pub(super) fn finish(self) -> Summary {
        let mut summary = self.summary;
        summary.by_recommendation = self.pieces.counters().filter(|(_, n)| *n > 0).collect();
        summary
    }

    /// Decide one parsed row (from the cache when its answers were seen) and format it.
    fn row(&mut self, lineno: u64, id: Option<&str>, key: Result<Key, &str>, done: &mut Done) {
        let key = match key {
            Ok(k) => k,
            Err(message) => {
                self.summary.bad += 1;
                done.bad.push(format!("{}:{lineno}: {message}", self.file));
                return;
            }
        };
        if self.cache.len() >= CACHE_LIMIT || self.pieces.len() >= PIECES_LIMIT {
            // All start again together: a cached cell always points at kept pieces. The
            // counters of recommendations survive it.
            self.cache.clear();
            self.pieces.clear();
            self.walks.clear();
        }
        let (caps, pieces, walks) = (self.caps, &mut self.pieces, &mut self.walks);
        let cell = self
            .cache
            .get_or_decide(key, |k| decide_row(caps, k, pieces, walks).0);
        let found = Cell(cell).pieces().and_then(|(a, c, s)| {
            Some((
                self.pieces.advice_piece(a)?,
                self.pieces.caveats_piece(c)?,
                self.pieces.aside_piece(s)?,
            ))
        });
        let Some((advice, caveats, aside)) = found else {
            let message = self.pieces.error_text(Cell(cell)).to_string();
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
