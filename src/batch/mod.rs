//! Batch recommendations: one device per row of CSV (header: optional `id`, question ids,
//! `needs` with feature ids separated by `;`) or JSON Lines, one result per row out, streamed.
//!
//! Each row is reduced to a compact key (the index of each answer and a bitmask of needs).
//! Fleets repeat their answers far more than their needs: what a row's answers decide is worked
//! out once, and what its needs add is a lookup in small tables (`decide.rs`); the memory held
//! is bounded, so it stays flat whatever the file size.
//!
//! Two threads: this module reads and parses the rows and writes the results in order; the
//! deciding side (`decide.rs`) decides each row and formats its result from pieces stored once
//! (`pieces.rs`). The rows' keys are in `row.rs`, shards in `shard.rs`.

use std::io::{BufRead, Write};

use crate::capabilities::Capabilities;

/// What a run remembers at most, in 4-byte slots of its tables (16 MiB); past this it starts
/// again. The shipped model needs far fewer (its 432 answer combinations, each with the paths
/// its needs take), so a fleet whose rows rarely repeat is walked once per path.
const HELD_LIMIT: usize = 1 << 22;
/// Pieces of one kind (advice, caveats, answers set aside) kept at most; far fewer than
/// profiles, and below what a cell can name.
const PIECES_LIMIT: usize = 1 << 18;

pub use crate::render::BatchFormat;

mod decide;
mod pieces;
mod records;
mod row;
mod shard;
use decide::Decider;
use records::{RecordError, Records};
use row::{Column, Key, Layout, header, parse_csv_row, parse_json_row};
pub use shard::Shard;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub bad: u64,
    pub with_unmet: u64,
    pub with_caveats: u64,
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
    if format == BatchFormat::Csv && shard.is_first() {
        out.write_all(b"id,recommendation,protocols,unmet,caveats,set_aside\n")
            .map_err(BatchError::Write)?;
    }
    let layout = Layout::new(caps);
    // Two threads: this one reads and parses the rows (the records, the keys), the other
    // decides them and formats the results, a batch of rows at a time, and this one writes
    // the results in order. On two cores a million rows take about half the time.
    // The buffers go round (a batch back to the reader, a result's bytes back to the decider)
    // rather than being freed and allocated again: at a megabyte each, every new one was
    // fresh pages from the kernel, faulted in and zeroed.
    std::thread::scope(|scope| {
        let (to_decide, batches) = std::sync::mpsc::sync_channel::<Batch>(2);
        let (to_write, decided) = std::sync::mpsc::channel::<Done>();
        let (give_back, returned) = std::sync::mpsc::channel::<Batch>();
        let (recycle, recycled) = std::sync::mpsc::channel::<Vec<u8>>();
        let decider = scope.spawn(move || {
            let mut d = Decider::new(caps, file, format);
            for batch in batches {
                let done = d.batch(&batch, recycled.try_recv().ok());
                if to_write.send(done).is_err() {
                    break;
                }
                let _ = give_back.send(batch);
            }
            d.finish()
        });
        let mut writer = Writer {
            out: &mut *out,
            bad: &mut *bad,
            decided,
            pending: 0,
            recycle,
        };
        let read = read_rows(&layout, file, input, shard, &mut |batch| {
            writer.send(&to_decide, batch)?;
            Ok(returned.try_recv().map(Batch::emptied).unwrap_or_default())
        });
        drop(to_decide);
        let written = writer.finish();
        let summary = decider
            .join()
            .map_err(|_| BatchError::Write(std::io::Error::other("the deciding thread failed")))?;
        read?;
        written?;
        Ok(summary)
    })
}

/// The rows of `input` that belong to `shard`, parsed, handed to `send` a batch at a time;
/// when the input fails, the rows read before it still go out (their results print first).
fn read_rows(
    layout: &Layout<'_>,
    file: &str,
    input: &mut dyn BufRead,
    shard: Shard,
    send: &mut dyn FnMut(Batch) -> Result<Batch, BatchError>,
) -> Result<(), BatchError> {
    let mut batch = Batch::default();
    let read = read_batches(layout, file, input, shard, &mut batch, send);
    let rest = if batch.rows.is_empty() {
        Ok(())
    } else {
        send(batch).map(drop)
    };
    read.and(rest)
}

/// Every row of `input` that belongs to `shard`, into `batch`, handed to `send` when full.
fn read_batches(
    layout: &Layout<'_>,
    file: &str,
    input: &mut dyn BufRead,
    shard: Shard,
    batch: &mut Batch,
    send: &mut dyn FnMut(Batch) -> Result<Batch, BatchError>,
) -> Result<(), BatchError> {
    let mut push = |batch: &mut Batch, lineno: u64, row: Row<'_>, key: Result<Key, String>| {
        batch.push(lineno, row, key);
        if batch.rows.len() >= BATCH_ROWS {
            let full = std::mem::take(batch);
            *batch = send(full)?;
        }
        Ok(())
    };
    let (jsonl, skipped_lines) = first_byte(input).map_err(|source| read_error(file, source))?;
    if jsonl {
        read_jsonl(layout, file, input, shard, skipped_lines, batch, &mut push)
    } else {
        read_csv(layout, file, input, shard, skipped_lines, batch, &mut push)
    }
}

/// How a row is handed on: into the batch, which goes out when full.
type Push<'p> = dyn FnMut(&mut Batch, u64, Row<'_>, Result<Key, String>) -> Result<(), BatchError> + 'p;

fn read_error(file: &str, source: std::io::Error) -> BatchError {
    BatchError::Read {
        file: file.to_string(),
        source,
    }
}

/// Skip the leading blank lines (counted, so line numbers stay the file's own) and say whether
/// the first byte after them opens JSON Lines (`{`), with the lines skipped.
fn first_byte(input: &mut dyn BufRead) -> std::io::Result<(bool, u64)> {
    let mut skipped_lines = 0u64;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok((false, skipped_lines));
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let first = buf[i];
                let blank = buf[..i].iter().rposition(|&b| b == b'\n').map_or(0, |j| j + 1);
                skipped_lines += buf[..blank].iter().filter(|&&b| b == b'\n').count() as u64;
                input.consume(blank);
                return Ok((first == b'{', skipped_lines));
            }
            None => {
                let n = buf.len();
                skipped_lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
                input.consume(n);
            }
        }
    }
}

/// JSON Lines: one object per line; a blank line is no record.
fn read_jsonl(
    layout: &Layout<'_>,
    file: &str,
    input: &mut dyn BufRead,
    shard: Shard,
    skipped_lines: u64,
    batch: &mut Batch,
    push: &mut Push<'_>,
) -> Result<(), BatchError> {
    let mut positions = shard.positions();
    let mut line = String::new();
    let mut lineno = skipped_lines;
    loop {
        line.clear();
        if input.read_line(&mut line).map_err(|e| read_error(file, e))? == 0 {
            return Ok(());
        }
        lineno += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() || !positions.take() {
            continue;
        }
        match parse_json_row(layout, text) {
            Ok((id, key)) => {
                let row = Row {
                    id: id.as_deref().map(str::as_bytes),
                    needs: None,
                };
                push(batch, lineno, row, Ok(key))?
            }
            Err(message) => push(batch, lineno, Row::default(), Err(message))?,
        }
    }
}

/// CSV: quoted fields, doubled quotes and fields that span lines, with each record's first
/// line for the messages (`records.rs`); the first record names the columns.
fn read_csv(
    layout: &Layout<'_>,
    file: &str,
    input: &mut dyn BufRead,
    shard: Shard,
    skipped_lines: u64,
    batch: &mut Batch,
    push: &mut Push<'_>,
) -> Result<(), BatchError> {
    let mut positions = shard.positions();
    let mut records = Records::new(input, skipped_lines);
    let mut columns: Option<Vec<Column>> = None;
    loop {
        let (lineno, fields) = match records.next() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(RecordError::TooLong(line)) => {
                return Err(BatchError::Record {
                    file: file.to_string(),
                    line,
                    message: format!(
                        "a record runs past {} MiB: an unclosed quote?",
                        records::MAX_RECORD >> 20
                    ),
                });
            }
            Err(RecordError::Io(source)) => return Err(read_error(file, source)),
        };
        let Some(cols) = &columns else {
            columns = Some(header(layout, file, &fields)?);
            continue;
        };
        if !positions.take() {
            continue;
        }
        match parse_csv_row(layout, cols, &fields) {
            Ok((id, needs, key)) => push(batch, lineno, Row { id, needs }, Ok(key))?,
            Err(message) => push(batch, lineno, Row::default(), Err(message))?,
        }
    }
}

/// Rows handed from the reading thread to the deciding one at a time: small enough that a
/// batch's results (about 250 KiB) leave the deciding side's tables in the processor's cache.
const BATCH_ROWS: usize = 1024;

/// Parsed rows: each row's line, its id and its CSV needs field (ranges of `texts`) and its
/// key, or why it is bad. The deciding thread checks that an id is UTF-8 as it writes it and
/// reads a CSV row's needs into its key: a third of the reading was those, and moving them
/// shares the work more evenly between the two threads.
#[derive(Default)]
struct Batch {
    texts: Vec<u8>,
    rows: Vec<Parsed>,
}

struct Parsed {
    lineno: u64,
    id: Option<std::ops::Range<usize>>,
    needs: Option<std::ops::Range<usize>>,
    key: Result<Key, String>,
}

impl Batch {
    /// This batch with no rows, its memory kept for the next.
    fn emptied(mut self) -> Batch {
        self.texts.clear();
        self.rows.clear();
        self
    }

    fn push(&mut self, lineno: u64, row: Row<'_>, key: Result<Key, String>) {
        let mut keep = |text: Option<&[u8]>| {
            text.map(|t| {
                let start = self.texts.len();
                self.texts.extend_from_slice(t);
                start..self.texts.len()
            })
        };
        let (id, needs) = (keep(row.id), keep(row.needs));
        self.rows.push(Parsed {
            lineno,
            id,
            needs,
            key,
        });
    }
}

/// What a row carries besides its key: its id, and a CSV row's needs field not yet read.
#[derive(Default)]
struct Row<'r> {
    id: Option<&'r [u8]>,
    needs: Option<&'r [u8]>,
}

/// A decided batch: the results' bytes and the bad rows' messages, in the rows' order.
struct Done {
    out: Vec<u8>,
    bad: Vec<String>,
}

/// The reading thread's side of the results: it writes each decided batch as it comes back.
struct Writer<'w> {
    out: &'w mut dyn Write,
    bad: &'w mut dyn FnMut(String),
    decided: std::sync::mpsc::Receiver<Done>,
    /// Batches sent and not yet written.
    pending: usize,
    /// Where written results' buffers go back to the deciding thread.
    recycle: std::sync::mpsc::Sender<Vec<u8>>,
}

impl Writer<'_> {
    /// Hand a batch to the deciding thread (waiting while two are queued), then write what it
    /// has decided so far.
    fn send(&mut self, to: &std::sync::mpsc::SyncSender<Batch>, batch: Batch) -> Result<(), BatchError> {
        to.send(batch)
            .map_err(|_| BatchError::Write(std::io::Error::other("the deciding thread stopped")))?;
        self.pending += 1;
        while let Ok(done) = self.decided.try_recv() {
            self.write(done)?;
        }
        Ok(())
    }

    /// Write every batch still due (the deciding thread ends when the reading is done).
    fn finish(&mut self) -> Result<(), BatchError> {
        while self.pending > 0 {
            let Ok(done) = self.decided.recv() else {
                break;
            };
            self.write(done)?;
        }
        self.out.flush().map_err(BatchError::Write)
    }

    fn write(&mut self, done: Done) -> Result<(), BatchError> {
        self.pending = self.pending.saturating_sub(1);
        for message in done.bad {
            (self.bad)(message);
        }
        self.out.write_all(&done.out).map_err(BatchError::Write)?;
        let mut buffer = done.out;
        buffer.clear();
        let _ = self.recycle.send(buffer);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::embedded;
    use serde_json::Value;

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
            "id,recommendation,protocols,unmet,caveats,set_aside\na,edge_gateway,,ota,,\n2,mqtt,mqtt,,,\n"
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
