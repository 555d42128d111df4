//! One row of a fleet file, read into a [`Key`]: the answers as choice indexes and the needs as
//! bits, checked against the model, from a CSV record or a JSON Lines object.

use serde_json::Value;

use super::BatchError;
use super::records::Fields;
use crate::answers::Answers;
use crate::capabilities::Capabilities;

pub(super) enum Column {
    Id,
    Question(usize),
    Needs,
}

pub(super) struct Layout<'a> {
    pub(super) caps: &'a Capabilities,
    /// The feature ids, to their bit in [`Key::needs`].
    features: Lookup,
    /// Per question, every spelling of its choices (values, labels, aliases, and the yes/no
    /// words, as [`crate::capabilities::Question::spellings`] lists them for every source of
    /// answers) to the choice's index.
    choices: Vec<Lookup>,
}

/// Short names to small numbers, found with one comparison: a 256-slot table indexed by a
/// hash of the name's [`Print`], which is also what is compared (a few words, no call to
/// `memcmp`). Rows name a dozen features and a few choices per question a million times;
/// comparing each name in turn was a tenth of a batch run, and copying each into words byte
/// by byte half as much again. Written here because a general hash map costs more than the
/// comparisons it saves.
struct Lookup {
    slots: Vec<Vec<Entry>>,
}

struct Entry {
    print: Print,
    /// Past 24 bytes, the whole name (the print covers the first 24).
    long: Box<[u8]>,
    index: u8,
}

/// A name's length and up to three words of it, read with a few loads and no loop: for 8 bytes
/// or more the first and the last eight (overlapping), and the middle eight past 16; for 4 to
/// 7 the first and last four; below that the bytes themselves. Two names of at most 24 bytes
/// are equal exactly when their prints are.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Print {
    len: usize,
    words: [u64; 3],
}

fn print(b: &[u8]) -> Print {
    let n = b.len();
    let word8 = |at: usize| {
        b.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let word4 = |at: usize| {
        b.get(at..at + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map_or(0, |w| u64::from(u32::from_le_bytes(w)))
    };
    let byte = |at: usize| b.get(at).map_or(0, |&x| u64::from(x));
    let words = match n {
        0 => [0, 0, 0],
        1..=3 => [byte(0) | byte(n / 2) << 8 | byte(n - 1) << 16, 0, 0],
        4..=7 => [word4(0), word4(n - 4), 0],
        8..=16 => [word8(0), word8(n - 8), 0],
        _ => [word8(0), word8(n - 8), word8(8)],
    };
    Print { len: n, words }
}

impl Lookup {
    fn new<'n>(names: impl IntoIterator<Item = (&'n str, u8)>) -> Self {
        let mut slots: Vec<Vec<Entry>> = (0..256).map(|_| Vec::new()).collect();
        for (name, index) in names {
            let b = name.as_bytes();
            let print = print(b);
            if let Some(slot) = slots.get_mut(Self::slot(&print)) {
                slot.push(Entry {
                    print,
                    long: if b.len() > 24 { b.into() } else { Box::default() },
                    index,
                });
            }
        }
        Lookup { slots }
    }

    fn slot(p: &Print) -> usize {
        let h =
            (p.words[0] ^ p.words[1].rotate_left(29) ^ (p.len as u64)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 56) as usize
    }

    fn get(&self, b: &[u8]) -> Option<u8> {
        let p = print(b);
        self.slots
            .get(Self::slot(&p))?
            .iter()
            .find(|e| e.print == p && (b.len() <= 24 || *e.long == *b))
            .map(|e| e.index)
    }
}

impl<'a> Layout<'a> {
    pub(super) fn new(caps: &'a Capabilities) -> Self {
        let small = |i: usize| u8::try_from(i).unwrap_or(u8::MAX);
        let choices = caps
            .questions
            .iter()
            .map(|q| {
                let spellings = q.spellings();
                Lookup::new(spellings.iter().map(|(s, i)| (s.as_str(), small(*i))))
            })
            .collect();
        Layout {
            caps,
            features: Lookup::new(caps.feature_ids().enumerate().map(|(i, f)| (f, small(i)))),
            choices,
        }
    }

    pub(super) fn column(&self, name: &str) -> Option<Column> {
        match name {
            "id" => Some(Column::Id),
            "needs" => Some(Column::Needs),
            q => self
                .caps
                .questions
                .iter()
                .position(|x| x.id == q)
                .map(Column::Question),
        }
    }
}

/// One row's answers as indexes: 4 bits per question (0 = unanswered, else choice + 1) and a
/// bit per needed feature, packed in one integer that is cheap to hash and compare.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) values: u64,
    pub(super) needs: u64,
}

/// Questions and choices a packed key can hold; larger models fall back to "bad row" errors.
pub(super) const MAX_QUESTIONS: usize = 16;
pub(super) const MAX_CHOICES: usize = 15;

/// A multiply-xor hasher: the keys are small integers made here, not attacker-chosen strings.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // A multiplication carries bits only upwards, and the table picks a bucket by the low
        // bits: without this fold the bucket ignored the later questions' answers, and lookups
        // in a cache of 200,000 random profiles walked long probe chains (a quarter of a
        // batch run). The finalizer of MurmurHash3's fmix64.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Key {
    pub(super) fn new() -> Self {
        Key { values: 0, needs: 0 }
    }

    pub(super) fn value(&self, q: usize) -> Option<usize> {
        // A model with more than MAX_QUESTIONS questions never sets the ones past it.
        let shift = u32::try_from(q.checked_mul(4)?).ok()?;
        let v = self.values.checked_shr(shift)? & 0xf;
        (v != 0).then(|| v as usize - 1)
    }

    pub(super) fn set(&mut self, layout: &Layout<'_>, q: usize, value: &[u8]) -> Result<(), String> {
        let question = &layout.caps.questions[q];
        let value = value.trim_ascii();
        if value.is_empty() {
            return Ok(());
        }
        let lookup = layout.choices.get(q);
        // Values as written in the model are found at once; `TCP`, `EnOS  2` are normalized
        // (lower case, single spaces) and looked up again.
        let found = lookup.and_then(|c| c.get(value)).or_else(|| {
            let norm = crate::capabilities::normalize(std::str::from_utf8(value).ok()?)?;
            lookup?.get(norm.as_bytes())
        });
        match found.map(usize::from) {
            Some(i) if q < MAX_QUESTIONS && i < MAX_CHOICES => {
                self.values |= ((i as u64) + 1) << (q * 4);
                Ok(())
            }
            Some(_) => Err(format!(
                "the model has more questions or choices than a batch key holds ({MAX_QUESTIONS}/{MAX_CHOICES})"
            )),
            // The slow path builds the usual message, with its suggestion.
            None => Err(Answers::default()
                .set(
                    layout.caps,
                    &question.id,
                    &String::from_utf8_lossy(value),
                    &question.id,
                )
                .err()
                .map_or_else(
                    || format!("bad value `{}`", String::from_utf8_lossy(value)),
                    |e| first_line(&e.to_string()),
                )),
        }
    }

    /// The needs of one field, separated by `;`.
    pub(super) fn needs_field(&mut self, layout: &Layout<'_>, field: &[u8]) -> Result<(), String> {
        // Split with memchr: `str::split(';')` goes through a char searcher, and this runs for
        // every row.
        let mut start = 0;
        let ends = memchr::memchr_iter(b';', field).chain(std::iter::once(field.len()));
        for end in ends {
            let part = field.get(start..end).unwrap_or_default();
            start = end + 1;
            let part = part.trim_ascii();
            if part.is_empty() {
                continue;
            }
            match layout.features.get(part) {
                Some(i) if i < 64 => self.needs |= 1 << i,
                _ => self.need(layout, &String::from_utf8_lossy(part))?,
            }
        }
        Ok(())
    }

    pub(super) fn need(&mut self, layout: &Layout<'_>, id: &str) -> Result<(), String> {
        let id = id.trim_ascii();
        if id.is_empty() {
            return Ok(());
        }
        let found = layout.features.get(id.as_bytes()).or_else(|| {
            let norm = crate::capabilities::normalize(id)?;
            layout.features.get(norm.as_bytes())
        });
        match found {
            Some(i) if i < 64 => {
                self.needs |= 1 << i;
                Ok(())
            }
            _ => Err(Answers::default()
                .add_needs(layout.caps, [id], "needs")
                .err()
                .map_or_else(
                    || format!("unknown feature `{id}`"),
                    |e| first_line(&e.to_string()),
                )),
        }
    }

    /// The needs, in the model's order.
    pub(super) fn needs(&self, caps: &Capabilities) -> Vec<String> {
        caps.features
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < 64 && self.needs & (1 << i) != 0)
            .map(|(_, f)| f.id.clone())
            .collect()
    }

    /// A key that needs every feature (its answers unset).
    pub(super) fn all_needs(caps: &Capabilities) -> Key {
        let n = caps.features.len().min(64);
        Key {
            values: 0,
            needs: if n == 64 { u64::MAX } else { (1u64 << n) - 1 },
        }
    }

    /// The bits of these feature ids in a key's needs.
    pub(super) fn needs_mask(caps: &Capabilities, ids: &[String]) -> u64 {
        caps.features
            .iter()
            .enumerate()
            .filter(|(i, f)| *i < 64 && ids.contains(&f.id))
            .fold(0, |m, (i, _)| m | 1 << i)
    }

    pub(super) fn answers(&self, caps: &Capabilities) -> Answers {
        let mut a = Answers::default();
        for (q, question) in caps.questions.iter().enumerate().take(MAX_QUESTIONS) {
            if let Some(v) = self.value(q).and_then(|v| question.choices.get(v)) {
                a.values.insert(question.id.clone(), v.value.clone());
            }
        }
        a.needs = Some(self.needs(caps));
        a
    }
}

/// " (did you mean `needs`?)" for a column or key that is nearly a known one.
fn did_you_mean(layout: &Layout<'_>, name: &str) -> String {
    let known = ["id", "needs"].into_iter().chain(layout.caps.question_ids());
    crate::source::nearest(name, known).map_or(String::new(), |n| format!(" (did you mean `{n}`?)"))
}

pub(super) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

pub(super) fn header(
    layout: &Layout<'_>,
    file: &str,
    record: &Fields<'_>,
) -> Result<Vec<Column>, BatchError> {
    record
        .iter()
        .map(|n| {
            let n = String::from_utf8_lossy(n);
            let n = n.trim().trim_start_matches('\u{feff}').trim();
            layout.column(n).ok_or_else(|| BatchError::Header {
                file: file.into(),
                message: format!(
                    "unknown column `{n}`{}: the header takes id, needs and the question ids ({})",
                    did_you_mean(layout, n),
                    layout.caps.question_ids().collect::<Vec<_>>().join(", ")
                ),
            })
        })
        .collect()
}

/// A CSV row read: its id and needs fields, as bytes, and its answers' key.
type CsvRow<'r> = (Option<&'r [u8]>, Option<&'r [u8]>, Key);

pub(super) fn parse_csv_row<'r>(
    layout: &Layout<'_>,
    cols: &[Column],
    record: &Fields<'r>,
) -> Result<CsvRow<'r>, String> {
    if record.len() != cols.len() {
        let spans = record.iter().any(|f| f.contains(&b'\n'));
        return Err(format!(
            "{} fields, but the header has {}{}",
            record.len(),
            cols.len(),
            if spans {
                " (a quoted field runs across lines: an unclosed quote?)"
            } else {
                ""
            }
        ));
    }
    let (mut key, mut id, mut needs) = (Key::new(), None, None);
    for (col, value) in cols.iter().zip(record.iter()) {
        match col {
            Column::Id => id = Some(value.trim_ascii()),
            Column::Question(q) => key.set(layout, *q, value)?,
            // Read into the key by the deciding thread (`Key::needs_field`).
            Column::Needs => needs = Some(value),
        }
    }
    Ok((id, needs, key))
}

pub(super) fn parse_json_row(layout: &Layout<'_>, text: &str) -> Result<(Option<String>, Key), String> {
    let value: serde_json::Map<String, Value> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
    let mut key = Key::new();
    let mut id = None;
    for (k, v) in &value {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
            Value::Array(items) if k == "needs" => {
                for item in items {
                    key.need(layout, item.as_str().ok_or("`needs` holds strings")?)?;
                }
                continue;
            }
            Value::Null => continue,
            other => return Err(format!("`{k}` must be a string, not {other}")),
        };
        match layout.column(k) {
            Some(Column::Id) => id = Some(text),
            Some(Column::Question(q)) => key.set(layout, q, text.as_bytes())?,
            Some(Column::Needs) => key.needs_field(layout, text.as_bytes())?,
            None => {
                return Err(format!(
                    "unknown key `{k}`{}: rows take id, needs and the question ids",
                    did_you_mean(layout, k)
                ));
            }
        }
    }
    Ok((id, key))
}
