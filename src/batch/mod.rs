//! Batch recommendations: one device per row of CSV (header: optional `id`, question ids,
//! `needs` with feature ids separated by `;`) or JSON Lines, one result per row out, streamed.
//!
//! Fleets repeat themselves: thousands of rows share a few hundred answer profiles. Each row is
//! reduced to a compact key (the index of each answer and a bitmask of needs) and decided once
//! per distinct key; the cache is bounded, so memory stays flat whatever the file size.
//!
//! Why over 600 lines: about 170 of them are the tests, which drive [`run`] end to end beside it;
//! the rows and the shards are files of their own.

use std::collections::HashMap;

use std::io::{BufRead, Write};

use serde_json::Value;

use crate::capabilities::Capabilities;
use crate::engine;

/// Answer profiles remembered at most; past this the cache starts again. A profile costs about
/// 50 bytes (a 16-byte key, an index, the hash table's slack), so the bound is about 13 MB, and
/// it holds every profile of the shipped model (128 answer combinations times 2^11 sets of
/// needs), so a fleet whose rows rarely repeat is still decided once per profile.
const CACHE_LIMIT: usize = 1 << 18;
/// Distinct printed results kept at most (a result is a recommendation, its protocols and its
/// unmet needs; far fewer than profiles).
const RESULTS_LIMIT: usize = 1 << 16;

pub use crate::render::BatchFormat;

mod cache;
mod row;
mod shard;
use cache::Cache;
use row::{Column, Key, KeyHasher, Layout, header, parse_csv_row, parse_json_row};
pub use shard::Shard;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub bad: u64,
    pub with_unmet: u64,
    /// Rows per recommendation, in the order first seen.
    pub by_recommendation: Vec<(String, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("{file}:1: {message}")]
    Header { file: String, message: String },
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the results: {0}")]
    Write(#[source] std::io::Error),
    #[error("{file}:{line}: {message}")]
    Record {
        file: String,
        line: u64,
        message: String,
    },
}

impl crate::base::Help for BatchError {
    fn help(&self) -> Option<String> {
        match self {
            BatchError::Header { .. } => Some(
                "the first line names the columns: id (optional), question ids and needs; `enos-connect questions` lists the ids".into(),
            ),
            BatchError::Read { .. } => Some("check the path given with --batch (`-` reads stdin)".into()),
            BatchError::Record { .. } => Some(
                "a quoted field runs on until its closing quote, across lines: check the quotes on that line".into(),
            ),
            BatchError::Write(_) => None,
        }
    }
}

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

fn write_csv_field(out: &mut dyn Write, s: &str) -> std::io::Result<()> {
    if s.contains([',', '"', '\n', '\r']) {
        write!(out, "\"{}\"", s.replace('"', "\"\""))
    } else {
        out.write_all(s.as_bytes())
    }
}

/// A JSON string; ids rarely need escaping, so the plain case is copied as it is.
fn write_json_string(out: &mut dyn Write, s: &str) -> std::io::Result<()> {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.write_all(b"\"")?;
        out.write_all(s.as_bytes())?;
        out.write_all(b"\"")
    } else {
        out.write_all(Value::from(s).to_string().as_bytes())
    }
}

/// Recommend for every row of `input` (CSV with a header, or JSON Lines: the first non-blank
/// byte decides) that belongs to `shard`, writing one result per row to `out` and each bad
/// row, with its line in the whole file, to `bad`.
pub fn run(
    caps: &Capabilities,
    file: &str,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    bad: &mut dyn FnMut(String),
    format: BatchFormat,
    shard: Shard,
) -> Result<Summary, BatchError> {
    let read_err = |source| BatchError::Read {
        file: file.to_string(),
        source,
    };
    let mut rows = Rows {
        caps,
        layout: Layout::new(caps),
        file,
        cache: Cache::new(caps.features.len()),
        results: Results::default(),
        walks: Walks::default(),
        counters: Vec::new(),
        summary: Summary::default(),
        out,
        bad,
        format,
    };
    if format == BatchFormat::Csv && shard.is_first() {
        rows.out
            .write_all(b"id,recommendation,protocols,unmet\n")
            .map_err(BatchError::Write)?;
    }
    // Leading blank lines are skipped but counted, so line numbers stay the file's own.
    let mut skipped_lines = 0u64;
    let jsonl = loop {
        let buf = input.fill_buf().map_err(read_err)?;
        if buf.is_empty() {
            break false;
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let first = buf[i];
                let blank = buf[..i].iter().rposition(|&b| b == b'\n').map_or(0, |j| j + 1);
                skipped_lines += buf[..blank].iter().filter(|&&b| b == b'\n').count() as u64;
                input.consume(blank);
                break first == b'{';
            }
            None => {
                let n = buf.len();
                skipped_lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
                input.consume(n);
            }
        }
    };
    let mut positions = shard.positions();
    if jsonl {
        let mut line = String::new();
        let mut lineno = skipped_lines;
        loop {
            line.clear();
            if input.read_line(&mut line).map_err(read_err)? == 0 {
                break;
            }
            lineno += 1;
            let text = line.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            if !positions.take() {
                continue;
            }
            let parsed = parse_json_row(&rows.layout, text);
            rows.row(
                lineno,
                parsed
                    .as_ref()
                    .map(|(id, key)| (id.as_deref(), *key))
                    .map_err(String::as_str),
            )?;
        }
    } else {
        // The csv crate reads the records: quoted fields, doubled quotes and fields that span
        // lines, with each record's first line for the messages. The reader under it stops a
        // record that runs past MAX_RECORD bytes (one unclosed quote would otherwise take in
        // the rest of the file).
        let record_start = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let bounded = Bounded {
            inner: input,
            read: 0,
            record_start: record_start.clone(),
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1 << 16)
            .from_reader(bounded);
        let mut record = csv::StringRecord::new();
        let mut columns: Option<Vec<Column>> = None;
        loop {
            let starts_at = reader.position().line() + skipped_lines;
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => record_start.set(reader.position().byte()),
                Err(e) => {
                    let line = e.position().map_or(starts_at, |p| p.line() + skipped_lines);
                    let message = e.to_string();
                    match e.into_kind() {
                        csv::ErrorKind::Io(source) if source.kind() == std::io::ErrorKind::InvalidData => {
                            return Err(BatchError::Record {
                                file: file.to_string(),
                                line: starts_at,
                                message: source.to_string(),
                            });
                        }
                        csv::ErrorKind::Io(source) => return Err(read_err(source)),
                        _ => {
                            record_start.set(reader.position().byte());
                            // A record that cannot be read still takes its position (after
                            // the header), so every shard counts the same records.
                            if columns.is_some() && !positions.take() {
                                continue;
                            }
                            rows.summary.bad += 1;
                            (rows.bad)(format!("{file}:{line}: {message}"));
                            continue;
                        }
                    }
                }
            }
            let lineno = record.position().map_or(0, |p| p.line()) + skipped_lines;
            let Some(cols) = &columns else {
                columns = Some(header(&rows.layout, file, &record)?);
                continue;
            };
            if !positions.take() {
                continue;
            }
            let parsed = parse_csv_row(&rows.layout, cols, &record);
            rows.row(
                lineno,
                parsed
                    .as_ref()
                    .map(|(id, key)| (*id, *key))
                    .map_err(String::as_str),
            )?;
        }
    }
    rows.out.flush().map_err(BatchError::Write)?;
    let mut summary = rows.summary;
    summary.by_recommendation = rows.counters.into_iter().filter(|(_, n)| *n > 0).collect();
    Ok(summary)
}

/// The longest CSV record read, in bytes.
const MAX_RECORD: u64 = 1 << 20;

/// The reader under the csv crate: it counts bytes and refuses to run more than MAX_RECORD
/// (plus the csv reader's own buffer) past the start of the record being read.
struct Bounded<R> {
    inner: R,
    read: u64,
    record_start: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: std::io::Read> std::io::Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read.saturating_sub(self.record_start.get()) > MAX_RECORD + (1 << 16) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a record runs past {} MiB: an unclosed quote?", MAX_RECORD >> 20),
            ));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// The state of one batch run: decisions cached by key, counts, and where rows go.
struct Rows<'a, 'o> {
    caps: &'a Capabilities,
    layout: Layout<'a>,
    file: &'a str,
    cache: Cache,
    results: Results,
    walks: Walks<'a>,
    counters: Vec<(String, u64)>,
    summary: Summary,
    out: &'o mut dyn Write,
    bad: &'o mut dyn FnMut(String),
    format: BatchFormat,
}

impl Rows<'_, '_> {
    /// Decide one parsed row (from the cache when its answers were seen) and write it.
    fn row(&mut self, lineno: u64, parsed: Result<(Option<&str>, Key), &str>) -> Result<(), BatchError> {
        let (id, key) = match parsed {
            Ok(r) => r,
            Err(message) => {
                self.summary.bad += 1;
                (self.bad)(format!("{}:{lineno}: {message}", self.file));
                return Ok(());
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
                (self.bad)(format!("{}:{lineno}: {message}", self.file));
                return Ok(());
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
        let out = &mut *self.out;
        let written = match self.format {
            BatchFormat::Jsonl => out
                .write_all(b"{\"line\":")
                .and_then(|()| out.write_all(itoa::Buffer::new().format(lineno).as_bytes()))
                .and_then(|()| out.write_all(b",\"id\":"))
                .and_then(|()| write_json_string(out, id))
                .and_then(|()| out.write_all(d.json_tail.as_bytes()))
                .and_then(|()| out.write_all(b"\n")),
            BatchFormat::Csv => write_csv_field(out, id)
                .and_then(|()| write!(out, ",{},", d.recommendation))
                .and_then(|()| write_csv_field(out, &d.protocols))
                .and_then(|()| out.write_all(b","))
                .and_then(|()| write_csv_field(out, &d.unmet))
                .and_then(|()| out.write_all(b"\n")),
        };
        written.map_err(BatchError::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::embedded;

    fn batch(input: &str, format: BatchFormat) -> (String, Vec<String>, Summary) {
        sharded(input, format, Shard::ALL)
    }

    fn sharded(input: &str, format: BatchFormat, shard: Shard) -> (String, Vec<String>, Summary) {
        let caps = embedded().expect("caps");
        let mut out = Vec::new();
        let mut bad = Vec::new();
        let summary = run(
            &caps,
            "t.csv",
            &mut input.as_bytes(),
            &mut out,
            &mut |m| bad.push(m),
            format,
            shard,
        )
        .expect("runs");
        (String::from_utf8(out).expect("utf-8"), bad, summary)
    }

    #[test]
    fn csv_rows_become_json_lines_and_bad_rows_are_reported_by_line() {
        let input = "id,network,enos_format,enos_version,needs\n\
                     d1,tcp,yes,2,ota;file_upload\n\
                     d2,tpc,yes,2,\n\
                     \"d,3\",udp,yes,2,report_data\n\
                     d4,tcp,yes,,\n";
        let (out, bad, summary) = batch(input, BatchFormat::Jsonl);
        let rows: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["id"], "d1");
        assert_eq!(rows[0]["protocols"], serde_json::json!(["mqtt", "http"]));
        assert_eq!(rows[1]["id"], "d,3");
        assert_eq!(rows[1]["recommendation"], "coap");
        assert_eq!(bad.len(), 2);
        assert!(
            bad[0].starts_with("t.csv:3:") && bad[0].contains("did you mean `tcp`"),
            "{bad:?}"
        );
        assert!(
            bad[1].starts_with("t.csv:5:") && bad[1].contains("enos_version"),
            "{bad:?}"
        );
        assert_eq!((summary.rows, summary.bad), (2, 2));
    }

    #[test]
    fn json_lines_in_and_csv_out() {
        let input = "{\"id\":\"a\",\"network\":\"none\",\"needs\":[\"ota\"]}\n{\"network\":\"tcp\",\"enos_format\":true,\"enos_version\":3}\n";
        let (out, bad, summary) = batch(input, BatchFormat::Csv);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            out,
            "id,recommendation,protocols,unmet\na,edge_gateway,,ota\n2,mqtt,mqtt,\n"
        );
        assert_eq!(summary.with_unmet, 1);
        assert!(summary.by_recommendation.contains(&("mqtt".to_string(), 1)));
    }

    #[test]
    fn true_and_false_answer_yes_no_questions_as_on_the_command_line() {
        let rows =
            "id,network,enos_format,enos_version\na,tcp,true,2\nb,tcp,yes,2\nc,tcp,false,2\nd,tcp,no,2\n";
        let (out, bad, _) = batch(rows, BatchFormat::Csv);
        assert!(bad.is_empty(), "{bad:?}");
        let recs: Vec<&str> = out
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap_or(""))
            .collect();
        assert_eq!(recs[0], recs[1], "{out}");
        assert_eq!(recs[2], recs[3], "{out}");
        assert_ne!(recs[0], recs[2], "{out}");
    }

    #[test]
    fn an_unknown_column_stops_at_the_header() {
        let caps = embedded().expect("caps");
        let mut out = Vec::new();
        let err = run(
            &caps,
            "t.csv",
            &mut "id,netwrok\n".as_bytes(),
            &mut out,
            &mut |_| {},
            BatchFormat::Csv,
            Shard::ALL,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.starts_with("t.csv:1: unknown column `netwrok`"), "{err}");
    }

    #[test]
    fn shards_parse_and_refuse_what_is_not_k_of_n() {
        assert_eq!("2/8".parse::<Shard>(), Ok(Shard { index: 1, count: 8 }));
        assert_eq!(" 1/1 ".parse::<Shard>(), Ok(Shard::ALL));
        assert_eq!("3/8".parse::<Shard>().map(|s| s.to_string()), Ok("3/8".into()));
        for bad in [
            "0/4",
            "5/4",
            "1/0",
            "x/4",
            "1/",
            "/4",
            "4",
            "-1/4",
            "1/99999999999999999999",
        ] {
            let err = bad.parse::<Shard>().expect_err(bad);
            assert!(err.contains("K/N"), "{bad}: {err}");
        }
    }

    /// Every shard together: each record once, bad ones included, with the whole file's lines.
    #[test]
    fn shards_partition_the_records_and_keep_the_file_lines() {
        let mut csv = String::from("id,network,enos_format,enos_version,needs\n");
        let mut jsonl = String::new();
        for i in 0..23 {
            let network = if i % 7 == 3 {
                "tpc"
            } else {
                ["tcp", "udp", "none"][i % 3]
            };
            csv.push_str(&format!("d{i},{network},yes,2,\n"));
            jsonl.push_str(&format!("{{\"id\":\"d{i}\",\"network\":\"{network}\",\"enos_format\":\"yes\",\"enos_version\":\"2\"}}\n"));
            if i == 10 {
                jsonl.push('\n'); // a blank line is not a record
            }
        }
        for (input, format) in [
            (csv.as_str(), BatchFormat::Jsonl),
            (jsonl.as_str(), BatchFormat::Jsonl),
            (csv.as_str(), BatchFormat::Csv),
        ] {
            let (whole, whole_bad, whole_summary) = batch(input, format);
            let mut lines: Vec<String> = Vec::new();
            let mut bad: Vec<String> = Vec::new();
            let (mut rows, mut bads) = (0, 0);
            for k in 1..=4 {
                let (out, b, summary) = sharded(input, format, Shard::new(k, 4).expect("shard"));
                lines.extend(out.lines().map(str::to_string));
                bad.extend(b);
                rows += summary.rows;
                bads += summary.bad;
            }
            let mut expected: Vec<String> = whole.lines().map(str::to_string).collect();
            expected.sort();
            lines.sort();
            assert_eq!(lines, expected, "{format:?}");
            let mut whole_bad = whole_bad;
            whole_bad.sort();
            bad.sort();
            assert_eq!(bad, whole_bad);
            assert_eq!((rows, bads), (whole_summary.rows, whole_summary.bad));
            assert!(whole_summary.bad >= 3, "the test has bad rows: {whole_bad:?}");
        }
        // Shard 2 of 4 holds the records at positions 1, 5, 9, ...: d1, d5, d9.
        let (out, _, _) = sharded(&csv, BatchFormat::Csv, Shard::new(2, 4).expect("shard"));
        assert!(
            out.starts_with("d1,coap,") && !out.contains("id,recommendation"),
            "{out}"
        );
        assert!(out.contains("\nd5,") && out.contains("\nd9,"), "{out}");
    }
}
