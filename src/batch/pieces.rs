//! The pieces a batch row's result is written from, each stored once: the advice
//! (recommendation, protocols, unmet needs), the caveats and the answers set aside, as JSON and
//! as CSV; the sentences of why an answer was set aside; and why a profile could not be
//! decided. A decided profile is a [`Cell`]: the indexes of its three pieces in one integer.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::row::Key;
use crate::capabilities::Capabilities;
use crate::engine::{Caveat, SetAside};

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

/// The advice of a profile as text.
pub(super) struct Advice {
    /// Index into the run's recommendation counters.
    pub(super) counter: usize,
    pub(super) unmet_empty: bool,
    /// `,"recommendation":…,"protocols":[…],"unmet":[…]`
    pub(super) json: String,
    /// `,recommendation,protocols,unmet`
    pub(super) csv: String,
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

/// The advice pieces by class and unmet needs. Every path of every row asks it for each row it
/// decides, so it is one table for the run rather than one per path: with the shipped model's 11
/// features a class takes 2^11 cells (8 KiB), and the few dozen classes a fleet meets stay in
/// the processor's cache, where a table per path (thousands of them) missed it on most rows.
enum ByClass {
    /// For models of at most 12 features: index plus one at `class << bits | unmet`; 0 is
    /// empty.
    Dense {
        bits: u32,
        cells: Vec<u32>,
    },
    Sparse(HashMap<(u32, u64), u32>),
}

impl ByClass {
    fn new(features: usize) -> Self {
        match u32::try_from(features) {
            Ok(bits) if bits <= 12 => ByClass::Dense {
                bits,
                cells: Vec::new(),
            },
            _ => ByClass::Sparse(HashMap::new()),
        }
    }

    fn clear(&mut self) {
        match self {
            ByClass::Dense { cells, .. } => cells.clear(),
            ByClass::Sparse(m) => m.clear(),
        }
    }

    fn get(&self, class: u32, unmet: u64) -> Option<u32> {
        match self {
            ByClass::Dense { bits, cells } => {
                let i = Self::cell(*bits, class, unmet)?;
                cells.get(i).and_then(|&x| x.checked_sub(1))
            }
            ByClass::Sparse(m) => m.get(&(class, unmet)).copied(),
        }
    }

    /// Remember `advice`; says how many cells the table grew by.
    fn insert(&mut self, class: u32, unmet: u64, advice: u32) -> usize {
        match self {
            ByClass::Dense { bits, cells } => {
                let Some(i) = Self::cell(*bits, class, unmet) else {
                    return 0;
                };
                let before = cells.len();
                if i >= before {
                    // Whole classes at a time.
                    cells.resize(((i >> *bits) + 1) << *bits, 0);
                }
                if let Some(c) = cells.get_mut(i) {
                    *c = advice.saturating_add(1);
                }
                cells.len() - before
            }
            ByClass::Sparse(m) => {
                m.insert((class, unmet), advice);
                1
            }
        }
    }

    fn cell(bits: u32, class: u32, unmet: u64) -> Option<usize> {
        let unmet = usize::try_from(unmet).ok().filter(|&u| u >> bits == 0)?;
        Some((class as usize) << bits | unmet)
    }
}

/// What every advice of a class begins with.
struct Class {
    counter: usize,
    /// `,"recommendation":…,"protocols":[…],"unmet":`
    json: String,
    /// `,recommendation,protocols,`
    csv: String,
}

pub(super) struct Pieces {
    classes: Table<Class>,
    /// Advice by (class, unmet needs).
    by_class: ByClass,
    advice: Table<Advice>,
    caveats: Table<Text>,
    asides: Table<Text>,
    errors: Table<String>,
    /// Rows per recommendation, in the order first seen; kept when the tables start again.
    counters: Vec<(String, u64)>,
    /// The needs the caveat rules name, as bits of a key's needs.
    pub(super) caveat_needs: u64,
    /// Slots the decider's tables hold (see [`Pieces::hold`]).
    held: usize,
}

impl Pieces {
    pub(super) fn new(caps: &Capabilities) -> Self {
        let named: Vec<String> = caps
            .caveats
            .iter()
            .flat_map(|r| r.needs.iter().cloned())
            .collect();
        Pieces {
            classes: Table::default(),
            by_class: ByClass::new(caps.features.len()),
            advice: Table::default(),
            caveats: Table::default(),
            asides: Table::default(),
            errors: Table::default(),
            counters: Vec::new(),
            caveat_needs: Key::needs_mask(caps, &named),
            held: 0,
        }
    }

    /// The most pieces of one kind: what the run's bound counts.
    pub(super) fn len(&self) -> usize {
        [
            self.advice.list.len(),
            self.caveats.list.len(),
            self.asides.list.len(),
            self.errors.list.len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    /// Count `slots` more slots held by the decider's tables (what the run's bound counts).
    pub(super) fn hold(&mut self, slots: usize) {
        self.held = self.held.saturating_add(slots);
    }

    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// Start again, keeping the counters.
    pub(super) fn clear(&mut self) {
        self.held = 0;
        self.classes = Table::default();
        self.by_class.clear();
        self.advice = Table::default();
        self.caveats = Table::default();
        self.asides = Table::default();
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

    pub(super) fn advice_piece(&self, i: u32) -> Option<&Advice> {
        self.advice.list.get(i as usize)
    }

    pub(super) fn caveats_piece(&self, i: u32) -> Option<&Text> {
        self.caveats.list.get(i as usize)
    }

    pub(super) fn aside_piece(&self, i: u32) -> Option<&Text> {
        self.asides.list.get(i as usize)
    }

    /// The class of an advice: its recommendation and protocols (an index), the same for
    /// every set of needs on a path.
    pub(super) fn class(&mut self, recommendation: &str, protocols: &[String]) -> u32 {
        let counter = match self.counters.iter().position(|(r, _)| r == recommendation) {
            Some(i) => i,
            None => {
                self.counters.push((recommendation.to_string(), 0));
                self.counters.len() - 1
            }
        };
        let json = format!(
            ",\"recommendation\":{},\"protocols\":{},\"unmet\":",
            Value::from(recommendation),
            serde_json::to_string(protocols).unwrap_or_default(),
        );
        self.classes.intern(json.clone(), || {
            let mut csv = String::from(",");
            csv_field(&mut csv, recommendation);
            csv.push(',');
            csv_field(&mut csv, &protocols.join(";"));
            csv.push(',');
            Class { counter, json, csv }
        })
    }

    /// The advice of a class with these needs (bits of a key's) unmet.
    pub(super) fn advice(&mut self, caps: &Capabilities, class: u32, unmet: u64) -> u32 {
        if let Some(a) = self.by_class.get(class, unmet) {
            return a;
        }
        let Some(c) = self.classes.list.get(class as usize) else {
            return 0;
        };
        let ids: Vec<&str> = caps
            .feature_ids()
            .enumerate()
            .filter(|(i, _)| *i < 64 && unmet >> i & 1 == 1)
            .map(|(_, f)| f)
            .collect();
        let json = format!("{}{}", c.json, serde_json::to_string(&ids).unwrap_or_default());
        let (counter, csv_head) = (c.counter, c.csv.clone());
        let a = self.advice.intern(json.clone(), || {
            let mut csv = csv_head;
            csv_field(&mut csv, &ids.join(";"));
            Advice {
                counter,
                unmet_empty: ids.is_empty(),
                json,
                csv,
            }
        });
        let grown = self.by_class.insert(class, unmet, a);
        self.hold(grown);
        a
    }

    /// The piece of these caveats: each as `recommend -f json` gives it, but for its `why`,
    /// the same sentence for every row it applies to (a fleet's output would be most of it).
    pub(super) fn caveats(&mut self, found: Vec<Caveat>) -> u32 {
        let list: Vec<Value> = found
            .iter()
            .map(|c| json!({"need": c.need, "protocol": c.protocol, "question": c.question, "answer": c.answer}))
            .collect();
        let json = format!(",\"caveats\":{}", Value::Array(list));
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

    /// The piece of these answers set aside, without their `why` (as the caveats).
    pub(super) fn aside(&mut self, found: Vec<SetAside>) -> u32 {
        let list: Vec<Value> = found
            .iter()
            .map(|a| json!({"question": a.question, "value": a.value}))
            .collect();
        let json = format!(",\"set_aside\":{}", Value::Array(list));
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

#[cfg(test)]
mod tests {
    use super::ByClass;

    #[test]
    fn advice_by_class_keeps_each_class_and_needs_apart() {
        let mut t = ByClass::new(3);
        assert!(matches!(t, ByClass::Dense { .. }));
        assert_eq!(t.insert(0, 0b101, 7), 8, "a class takes 2^3 cells");
        assert_eq!(t.insert(2, 0b101, 9), 16, "and the classes before it");
        assert_eq!(t.insert(2, 0b001, 0), 0);
        assert_eq!(t.get(0, 0b101), Some(7));
        assert_eq!(t.get(2, 0b101), Some(9));
        assert_eq!(t.get(2, 0b001), Some(0), "advice 0 is not the empty cell");
        assert_eq!(t.get(1, 0b101), None);
        assert_eq!(t.get(0, 0b100), None);
        assert_eq!(t.get(5, 0b101), None, "past the table");
        assert_eq!(t.get(0, 0b1000), None, "needs past the model's features");
        t.clear();
        assert_eq!(t.get(0, 0b101), None);
        let mut big = ByClass::new(40);
        assert!(matches!(big, ByClass::Sparse(_)));
        big.insert(3, 1 << 39, 4);
        assert_eq!(big.get(3, 1 << 39), Some(4));
        assert_eq!(big.get(2, 1 << 39), None);
    }
}
