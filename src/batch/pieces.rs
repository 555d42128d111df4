//! The pieces a batch row's result is written from, each stored once: the advice
//! (recommendation, protocols, unmet needs), the caveats and the answers set aside, as JSON and
//! as CSV; the sentences of why an answer was set aside; and why a profile could not be
//! decided. A decided profile is a [`Cell`]: the indexes of its three pieces in one integer.

use std::collections::HashMap;

use serde_json::Value;

use super::row::Key;
use crate::answers::Answers;
use crate::capabilities::Capabilities;
use crate::engine::{self, Carrier, SetAside, Verdict};

/// A decided profile in the cache: the advice's index plus one in bits 0 to 20 (so a decided
/// cell is never 0, the empty cell), the caveats' in bits 21 to 41, the set-aside answers' in
/// 42 to 62; or, with bit 63 set, the index of why it could not be decided.
#[derive(Clone, Copy)]
pub(super) struct Cell(pub(super) u64);

const BITS: u32 = 21;
const FIELD: u64 = (1 << BITS) - 1;
const FAILED: u64 = 1 << 63;
/// Pieces of one kind a cell can name.
const MAX_PIECES: usize = (1 << BITS) - 2;
const _: () = assert!(super::PIECES_LIMIT < MAX_PIECES);

impl Cell {
    pub(super) fn new(advice: u32, caveats: u32, aside: u32) -> Cell {
        let field = |i: u32| u64::from(i) & FIELD;
        Cell(field(advice + 1) | field(caveats) << BITS | field(aside) << (2 * BITS))
    }

    pub(super) fn failed(error: u32) -> Cell {
        Cell(FAILED | u64::from(error))
    }

    /// The advice, caveats and set-aside indexes, or `None` for a profile that failed.
    pub(super) fn pieces(self) -> Option<(u32, u32, u32)> {
        if self.0 & FAILED != 0 || self.0 & FIELD == 0 {
            return None;
        }
        let field = |shift: u32| ((self.0 >> shift) & FIELD) as u32;
        Some((field(0) - 1, field(BITS), field(2 * BITS)))
    }
}

/// The advice of a profile as text, with what the caveats are worked out from.
pub(super) struct Advice {
    /// Index into the run's recommendation counters.
    pub(super) counter: usize,
    pub(super) unmet_empty: bool,
    /// `,"recommendation":…,"protocols":[…],"unmet":[…]`
    pub(super) json: String,
    /// `,recommendation,protocols,unmet`
    pub(super) csv: String,
    protocols: Vec<String>,
    carriers: Vec<Carrier>,
}

/// The caveats or the set-aside answers of a profile as text.
pub(super) struct Text {
    pub(super) empty: bool,
    /// `,"caveats":[…]` or `,"set_aside":[…]`
    pub(super) json: String,
    /// `,cell`
    pub(super) csv: String,
}

/// Texts stored once, found by their own text.
struct Table<T> {
    list: Vec<T>,
    index: HashMap<String, u32>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            list: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T> Table<T> {
    /// The index of the item whose text is `key`, made by `make` the first time.
    fn intern(&mut self, key: String, make: impl FnOnce() -> T) -> u32 {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.list.push(make());
        self.index.insert(key, i);
        i
    }
}

pub(super) struct Pieces {
    advice: Table<Advice>,
    caveats: Table<Text>,
    asides: Table<Text>,
    whys: Table<String>,
    errors: Table<String>,
    /// Rows per recommendation, in the order first seen; kept when the tables start again.
    counters: Vec<(String, u64)>,
    /// The nibbles of the questions the caveats read.
    pub(super) caveat_mask: u64,
}

impl Pieces {
    pub(super) fn new(caps: &Capabilities) -> Self {
        let caveat_mask = caps
            .caveats
            .iter()
            .filter_map(|r| caps.questions.iter().position(|q| q.id == r.question))
            .fold(0, |m, q| m | Key::nibble_mask(q));
        Pieces {
            advice: Table::default(),
            caveats: Table::default(),
            asides: Table::default(),
            whys: Table::default(),
            errors: Table::default(),
            counters: Vec::new(),
            caveat_mask,
        }
    }

    /// The most pieces of one kind: what the run's bound counts.
    pub(super) fn len(&self) -> usize {
        [
            self.advice.list.len(),
            self.caveats.list.len(),
            self.asides.list.len(),
            self.whys.list.len(),
            self.errors.list.len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    /// Start again, keeping the counters.
    pub(super) fn clear(&mut self) {
        self.advice = Table::default();
        self.caveats = Table::default();
        self.asides = Table::default();
        self.whys = Table::default();
        self.errors = Table::default();
    }

    pub(super) fn counters(self) -> impl Iterator<Item = (String, u64)> {
        self.counters.into_iter()
    }

    pub(super) fn count(&mut self, counter: usize) {
        if let Some(c) = self.counters.get_mut(counter) {
            c.1 += 1;
        }
    }

    pub(super) fn error(&mut self, message: String) -> u32 {
        self.errors.intern(message.clone(), || message)
    }

    pub(super) fn error_text(&self, cell: Cell) -> &str {
        let i = (cell.0 & !FAILED) as usize;
        self.errors.list.get(i).map_or("", String::as_str)
    }

    pub(super) fn why(&mut self, text: String) -> u32 {
        self.whys.intern(text.clone(), || text)
    }

    pub(super) fn advice_piece(&self, i: u32) -> Option<&Advice> {
        self.advice.list.get(i as usize)
    }

    pub(super) fn caveats_piece(&self, i: u32) -> Option<&Text> {
        self.caveats.list.get(i as usize)
    }

    pub(super) fn aside_piece(&self, i: u32) -> Option<&Text> {
        self.asides.list.get(i as usize)
    }

    /// The advice of a verdict whose protocols carry the needs as `carriers` say.
    pub(super) fn advice(&mut self, v: Verdict, carriers: Vec<Carrier>) -> u32 {
        let json = format!(
            ",\"recommendation\":{},\"protocols\":{},\"unmet\":{}",
            Value::from(v.recommendation.as_str()),
            serde_json::to_string(&v.protocols).unwrap_or_default(),
            serde_json::to_string(&v.unmet).unwrap_or_default(),
        );
        // Two profiles with the same text may still differ in what carries which need, and so
        // in their caveats.
        let mut key = json.clone();
        for c in &carriers {
            key.push_str(&format!("|{}>{}", c.need, c.protocol));
        }
        let counter = match self.counters.iter().position(|(r, _)| *r == v.recommendation) {
            Some(i) => i,
            None => {
                self.counters.push((v.recommendation.clone(), 0));
                self.counters.len() - 1
            }
        };
        self.advice.intern(key, || {
            let mut csv = String::from(",");
            csv_field(&mut csv, &v.recommendation);
            csv.push(',');
            csv_field(&mut csv, &v.protocols.join(";"));
            csv.push(',');
            csv_field(&mut csv, &v.unmet.join(";"));
            Advice {
                counter,
                unmet_empty: v.unmet.is_empty(),
                json,
                csv,
                protocols: v.protocols,
                carriers,
            }
        })
    }

    /// The caveats of an advice for these answers.
    pub(super) fn caveats(&mut self, caps: &Capabilities, advice: u32, answers: &Answers) -> u32 {
        let found = match self.advice.list.get(advice as usize) {
            Some(a) => engine::caveats(caps, answers, &a.protocols, &a.carriers),
            None => Vec::new(),
        };
        let json = format!(
            ",\"caveats\":{}",
            serde_json::to_string(&found).unwrap_or_default()
        );
        self.caveats.intern(json.clone(), || {
            let cells: Vec<String> = found
                .iter()
                .map(|c| {
                    let over = c.need.as_ref().map_or(String::new(), |n| format!("{n} -> "));
                    format!("{over}{} ({}={})", c.protocol, c.question, c.answer)
                })
                .collect();
            let mut csv = String::from(",");
            csv_field(&mut csv, &cells.join(";"));
            Text {
                empty: found.is_empty(),
                json,
                csv,
            }
        })
    }

    /// The answers of `key` among `whys`' questions (those the walk did not read), set aside.
    pub(super) fn aside(&mut self, caps: &Capabilities, key: &Key, whys: &[(usize, u32)]) -> u32 {
        let found: Vec<SetAside> = whys
            .iter()
            .filter_map(|&(q, why)| {
                let question = caps.questions.get(q)?;
                let value = question.choices.get(key.value(q)?)?;
                Some(SetAside {
                    question: question.id.clone(),
                    value: value.value.clone(),
                    why: self.whys.list.get(why as usize)?.clone(),
                })
            })
            .collect();
        let json = format!(
            ",\"set_aside\":{}",
            serde_json::to_string(&found).unwrap_or_default()
        );
        self.asides.intern(json.clone(), || {
            let cells: Vec<String> = found
                .iter()
                .map(|a| format!("{}={}", a.question, a.value))
                .collect();
            let mut csv = String::from(",");
            csv_field(&mut csv, &cells.join(";"));
            Text {
                empty: found.is_empty(),
                json,
                csv,
            }
        })
    }
}

fn csv_field(out: &mut String, s: &str) {
    if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

pub(super) fn write_csv_field(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        let mut text = String::new();
        csv_field(&mut text, s);
        out.extend_from_slice(text.as_bytes());
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// A JSON string; ids rarely need escaping, so the plain case is copied as it is.
pub(super) fn write_json_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(Value::from(s).to_string().as_bytes());
    }
}
