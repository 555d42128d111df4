//! The deciding side of a batch run: each parsed row's profile decided once (the cache, the
//! walks it remembers, the distinct results stored once) and its result formatted as JSON Lines
//! or CSV. Runs on its own thread beside the reading one (`mod.rs`).

use std::collections::HashMap;

use serde_json::Value;

use super::cache::Cache;
use super::row::{Key, KeyHasher};
use super::{Batch, BatchFormat, CACHE_LIMIT, Done, RESULTS_LIMIT, Summary};
use crate::capabilities::Capabilities;
use crate::engine;

/// A decided result, ready to print after a row's id. Many profiles share one: the cache maps
/// a profile to the index of its result, so an entry stays small.
struct Decided {
    /// Index into the run's recommendation counters.
    counter: usize,
    recommendation: String,
    protocols: String,
    unmet: String,
    unmet_empty: bool,
    json_tail: String,
}

// A profile's result in the cache: an index into [`Results::list`], or, with [`FAILED`] set,
// into [`Results::errors`]. Four bytes, not a `Result` with a `String` (24): the cache is most
// of a batch run's memory.

const FAILED: u32 = 1 << 31;

/// The distinct results of a run, each stored once, found by their JSON text.
#[derive(Default)]
struct Results {
    list: Vec<Decided>,
    index: HashMap<String, u32>,
    /// Why a profile cannot be decided (a missing answer), each message once.
    errors: Vec<String>,
}

impl Results {
    fn len(&self) -> usize {
        self.list.len() + self.errors.len()
    }

    /// The index of an error message, stored once.
    fn error(&mut self, message: String) -> u32 {
        let i = self.errors.iter().position(|e| *e == message).unwrap_or_else(|| {
            self.errors.push(message);
            self.errors.len() - 1
        });
        // RESULTS_LIMIT keeps the count far below FAILED.
        u32::try_from(i).unwrap_or(0) | FAILED
    }
}

/// What earlier walks teach about later rows. A walk reads some answers and, at a cover node,
/// maybe the needs, and nothing else: another row that agrees on what a walk read walks the
/// same way. So each walk is remembered under the answers it read (a mask of question nibbles,
/// the row's values under it) and, when it read the needs, the needs; a new profile is looked
/// up under every mask seen so far (a handful). Most of a fleet ends before the needs matter
/// (`network=none`, firmware that cannot speak EnOS, no protocol left), and the rest differ in
/// answers the walk never read (a third-party cloud, once the firmware speaks EnOS): a walk is
/// most of a decision's cost, and this leaves one per distinct path.
#[derive(Default)]
struct Walks<'c> {
    /// Masks seen, each with whether its walks read the needs.
    shapes: Vec<(u64, bool)>,
    /// Walks that never read the needs, by (mask, values under it): an index into `walked`.
    blind: HashMap<(u64, u64), u32, std::hash::BuildHasherDefault<KeyHasher>>,
    /// Those walks and their outcomes; only the verdict (which needs go unmet) differs by row.
    walked: Vec<(engine::Walk<'c>, String)>,
    /// Verdicts of those walks, by (walk, needs): a profile new to the cache is most often a
    /// known walk with a known set of needs.
    verdicts: HashMap<(u32, u64), u32, std::hash::BuildHasherDefault<KeyHasher>>,
    /// Results of walks that read the needs, by (mask, values under it, needs).
    read: HashMap<(u64, u64, u64), u32, std::hash::BuildHasherDefault<KeyHasher>>,
}

impl Walks<'_> {
    fn clear(&mut self) {
        self.shapes.clear();
        self.blind.clear();
        self.walked.clear();
        self.verdicts.clear();
        self.read.clear();
    }
}

/// Decide a profile (the verdict only: a row prints no reasons) and return its result's index.
fn decide_row<'c>(
    caps: &'c Capabilities,
    key: &Key,
    counters: &mut Vec<(String, u64)>,
    results: &mut Results,
    walks: &mut Walks<'c>,
) -> u32 {
    for &(mask, needs_read) in &walks.shapes {
        if needs_read {
            if let Some(&i) = walks.read.get(&(mask, key.values & mask, key.needs)) {
                return i;
            }
        } else if let Some(&w) = walks.blind.get(&(mask, key.values & mask)) {
            if let Some(&i) = walks.verdicts.get(&(w, key.needs)) {
                return i;
            }
            let Some((walked, outcome)) = walks.walked.get(w as usize) else {
                continue;
            };
            let d = engine::verdict(caps, &key.needs(caps), walked, outcome);
            let i = result_index(d, counters, results);
            walks.verdicts.insert((w, key.needs), i);
            return i;
        }
    }
    let answers = key.answers(caps);
    let walked = match engine::walk(caps, &answers, true) {
        Ok(w) => w,
        Err(e) => return results.error(e.to_string()),
    };
    let outcome = match &walked.end {
        engine::End::Outcome(o) => o.clone(),
        engine::End::Pending(_) => {
            let ids = engine::missing(caps, &answers);
            return results.error(format!("missing answers for: {}", ids.join(", ")));
        }
    };
    let d = engine::verdict(caps, answers.need_list(), &walked, &outcome);
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
    let i = result_index(d, counters, results);
    if needs_read {
        walks.read.insert((mask, key.values & mask, key.needs), i);
    } else if let Ok(w) = u32::try_from(walks.walked.len()) {
        walks.blind.insert((mask, key.values & mask), w);
        walks.verdicts.insert((w, key.needs), i);
        walks.walked.push((walked, outcome));
    }
    i
}

/// The index of a verdict's printed result, stored once.
fn result_index(d: engine::Verdict, counters: &mut Vec<(String, u64)>, results: &mut Results) -> u32 {
    let json_tail = format!(
        ",\"recommendation\":{},\"protocols\":{},\"unmet\":{}}}",
        Value::from(d.recommendation.as_str()),
        serde_json::to_string(&d.protocols).unwrap_or_default(),
        serde_json::to_string(&d.unmet).unwrap_or_default(),
    );
    if let Some(&i) = results.index.get(&json_tail) {
        return i;
    }
    let counter = match counters.iter().position(|(r, _)| *r == d.recommendation) {
        Some(i) => i,
        None => {
            counters.push((d.recommendation.clone(), 0));
            counters.len() - 1
        }
    };
    // RESULTS_LIMIT keeps the count far below FAILED.
    let i = u32::try_from(results.list.len()).unwrap_or(0);
    results.index.insert(json_tail.clone(), i);
    results.list.push(Decided {
        counter,
        protocols: d.protocols.join(";"),
        unmet: d.unmet.join(";"),
        unmet_empty: d.unmet.is_empty(),
        recommendation: d.recommendation,
        json_tail,
    });
    i
}

fn write_csv_field(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.push(b'"');
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// A JSON string; ids rarely need escaping, so the plain case is copied as it is.
fn write_json_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(Value::from(s).to_string().as_bytes());
    }
}

/// The deciding thread's state: decisions cached by key, counts, and the results' text.
pub(super) struct Decider<'a> {
    caps: &'a Capabilities,
    file: &'a str,
    cache: Cache,
    results: Results,
    walks: Walks<'a>,
    counters: Vec<(String, u64)>,
    summary: Summary,
    format: BatchFormat,
}

impl<'a> Decider<'a> {
    pub(super) fn new(caps: &'a Capabilities, file: &'a str, format: BatchFormat) -> Self {
        Decider {
            caps,
            file,
            cache: Cache::new(caps.features.len()),
            results: Results::default(),
            walks: Walks::default(),
            counters: Vec::new(),
            summary: Summary::default(),
            format,
        }
    }

    pub(super) fn batch(&mut self, batch: &Batch) -> Done {
        let mut done = Done {
            out: Vec::with_capacity(batch.rows.len() * 96),
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
        summary.by_recommendation = self.counters.into_iter().filter(|(_, n)| *n > 0).collect();
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
        if self.cache.len() >= CACHE_LIMIT || self.results.len() >= RESULTS_LIMIT {
            // Both start again together: a cached index always points at a kept result.
            self.cache.clear();
            self.results = Results::default();
            self.walks.clear();
        }
        let (caps, counters, results, walks) =
            (self.caps, &mut self.counters, &mut self.results, &mut self.walks);
        let decided = self
            .cache
            .get_or_decide(key, |k| decide_row(caps, k, counters, results, walks));
        let found = if decided & FAILED == 0 {
            self.results.list.get(decided as usize).ok_or("")
        } else {
            Err(self
                .results
                .errors
                .get((decided & !FAILED) as usize)
                .map_or("", String::as_str))
        };
        let d = match found {
            Ok(d) => d,
            Err(message) => {
                self.summary.bad += 1;
                done.bad.push(format!("{}:{lineno}: {message}", self.file));
                return;
            }
        };
        self.summary.rows += 1;
        if !d.unmet_empty {
            self.summary.with_unmet += 1;
        }
        if let Some(c) = self.counters.get_mut(d.counter) {
            c.1 += 1;
        }
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
                write_json_string(out, id);
                out.extend_from_slice(d.json_tail.as_bytes());
                out.push(b'\n');
            }
            BatchFormat::Csv => {
                write_csv_field(out, id);
                out.push(b',');
                out.extend_from_slice(d.recommendation.as_bytes());
                out.push(b',');
                write_csv_field(out, &d.protocols);
                out.push(b',');
                write_csv_field(out, &d.unmet);
                out.push(b'\n');
            }
        }
    }
}
