//! The CSV records of a fleet file, read fast. A line without a quote (nearly every line of a
//! fleet) is split at its commas with `memchr`, straight from the read buffer; a record with a
//! quote goes to `csv_core`, the csv crate's own parser (quoted fields, doubled quotes, fields
//! that run across lines). Written here because reading every byte through the csv crate's
//! state machine was the largest single cost of a batch run (a sixth of it, more than the
//! decisions), and a fleet file rarely has a quote.
//!
//! What a record is, as the csv crate reads it: fields end at a comma, records at `\n`, `\r`
//! or `\r\n`; empty lines are no record; a UTF-8 byte order mark before the first record is
//! dropped. A record may not run past [`MAX_RECORD`] bytes (one unclosed quote would otherwise
//! take in the rest of the file).

use std::io::BufRead;

/// The longest CSV record read, in bytes.
pub(super) const MAX_RECORD: usize = 1 << 20;
/// Bytes read at a time.
const CHUNK: usize = 1 << 18;

/// One record's fields: field `i` is `bytes[ends[i - 1] + gap..ends[i]]` (from 0 for the
/// first), where `gap` is 1 for a line split in place (the comma between) and 0 for csv_core's
/// output (fields one after another).
pub(super) struct Fields<'a> {
    bytes: &'a [u8],
    ends: &'a [usize],
    gap: usize,
}

impl<'a> Fields<'a> {
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let (bytes, gap) = (self.bytes, self.gap);
        self.ends.iter().scan(0, move |start, &end| {
            let field = bytes.get(*start..end).unwrap_or_default();
            *start = end + gap;
            Some(field)
        })
    }
}

#[derive(Debug)]
pub(super) enum RecordError {
    Io(std::io::Error),
    /// A record longer than [`MAX_RECORD`], starting on this line.
    TooLong(u64),
}

pub(super) struct Records<'r> {
    input: &'r mut dyn BufRead,
    buf: Vec<u8>,
    /// `buf[pos..len]` is read and not yet taken.
    pos: usize,
    len: usize,
    eof: bool,
    /// Line feeds taken so far: a record starting here is on line `lines + 1`.
    lines: u64,
    core: csv_core::Reader,
    /// A quoted record's fields, unescaped, and every record's field ends.
    out: Vec<u8>,
    ends: Vec<usize>,
    first: bool,
}

impl<'r> Records<'r> {
    /// Records of `input`, whose first `lines` lines were already taken.
    pub(super) fn new(input: &'r mut dyn BufRead, lines: u64) -> Self {
        Self::with_chunk(input, lines, CHUNK)
    }

    /// The same, reading `chunk` bytes at a time (tests make records straddle reads).
    fn with_chunk(input: &'r mut dyn BufRead, lines: u64, chunk: usize) -> Self {
        Records {
            input,
            buf: vec![0; chunk.max(1)],
            pos: 0,
            len: 0,
            eof: false,
            lines,
            core: csv_core::Reader::new(),
            out: vec![0; 1024],
            ends: vec![0; 64],
            first: true,
        }
    }

    /// Read more input behind what is not yet taken; false at the end of the input.
    fn refill(&mut self) -> Result<bool, RecordError> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        if self.len == self.buf.len() {
            // A line longer than the buffer: grow it, up to the longest record allowed.
            if self.buf.len() > MAX_RECORD + CHUNK {
                return Err(RecordError::TooLong(self.lines + 1));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.len += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(RecordError::Io(e)),
            }
        }
    }

    /// The next record and the line it starts on, or `None` at the end of the input.
    pub(super) fn next(&mut self) -> Result<Option<(u64, Fields<'_>)>, RecordError> {
        loop {
            let newline = memchr::memchr(b'\n', &self.buf[self.pos..self.len]);
            if newline.is_none() && !self.eof {
                self.refill()?;
                continue;
            }
            // The line is `buf[from..to]`, without its line feed.
            let (mut from, line_end) = (self.pos, self.pos + newline.unwrap_or(self.len - self.pos));
            if newline.is_none() && from == line_end {
                return Ok(None);
            }
            if self.first && self.buf[from..line_end].starts_with(b"\xef\xbb\xbf") {
                from += 3;
            }
            let line = &self.buf[from..line_end];
            // One pass for the commas, and for a quote or a carriage return before the line's
            // end (a record terminator of its own): those are csv_core's to read.
            self.ends.clear();
            let mut plain = true;
            for at in memchr::memchr3_iter(b',', b'"', b'\r', line) {
                match line[at] {
                    b',' => self.ends.push(at),
                    b'\r' if at + 1 == line.len() => {}
                    _ => {
                        plain = false;
                        break;
                    }
                }
            }
            if !plain {
                return self.quoted();
            }
            let to = if line.ends_with(b"\r") {
                line_end - 1
            } else {
                line_end
            };
            let line_no = self.lines + 1;
            self.pos = line_end + usize::from(newline.is_some());
            self.lines += u64::from(newline.is_some());
            self.first = false;
            if from == to {
                continue;
            }
            // The commas were found above; the last field ends with the line.
            let line = &self.buf[from..to];
            self.ends.push(line.len());
            return Ok(Some((
                line_no,
                Fields {
                    bytes: line,
                    ends: &self.ends,
                    gap: 1,
                },
            )));
        }
    }

    /// A record with a quote (or a lone `\r` inside a line), read by `csv_core` from the
    /// record's start, refilling as it asks for more.
    fn quoted(&mut self) -> Result<Option<(u64, Fields<'_>)>, RecordError> {
        let line_no = self.lines + 1;
        let (mut nout, mut nend, mut taken) = (0usize, 0usize, 0usize);
        // The fast path leaves `ends` holding its last record; csv_core writes into it.
        let room = self.ends.len().max(64);
        self.ends.resize(room, 0);
        loop {
            let input = &self.buf[self.pos..self.len];
            let (res, nin, o, e) =
                self.core
                    .read_record(input, &mut self.out[nout..], &mut self.ends[nend..]);
            self.lines += memchr::memchr_iter(b'\n', &input[..nin]).count() as u64;
            self.pos += nin;
            taken += nin;
            nout += o;
            nend += e;
            self.first = false;
            if taken > MAX_RECORD {
                return Err(RecordError::TooLong(line_no));
            }
            match res {
                csv_core::ReadRecordResult::Record => break,
                csv_core::ReadRecordResult::End => return Ok(None),
                csv_core::ReadRecordResult::OutputFull => self.out.resize(self.out.len().max(512) * 2, 0),
                csv_core::ReadRecordResult::OutputEndsFull => {
                    self.ends.resize(self.ends.len().max(32) * 2, 0)
                }
                csv_core::ReadRecordResult::InputEmpty => {
                    if self.pos < self.len {
                        continue;
                    }
                    if !self.refill()? {
                        // The end of the input ends the record: csv_core says so when given
                        // nothing more.
                        let (res, _, o, e) =
                            self.core
                                .read_record(&[], &mut self.out[nout..], &mut self.ends[nend..]);
                        nout += o;
                        nend += e;
                        match res {
                            csv_core::ReadRecordResult::Record => break,
                            _ => return Ok(None),
                        }
                    }
                }
            }
        }
        Ok(Some((
            line_no,
            Fields {
                bytes: &self.out[..nout],
                ends: &self.ends[..nend],
                gap: 0,
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record as (line, fields), read by `Records` with reads of `chunk` bytes.
    fn ours(input: &[u8], chunk: usize) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut reader = input;
        let mut records = Records::with_chunk(&mut reader, 0, chunk);
        let mut out = Vec::new();
        while let Some((line, fields)) = records.next().expect("reads") {
            out.push((line, fields.iter().map(<[u8]>::to_vec).collect()));
        }
        out
    }

    /// The same by the csv crate, whose reading `Records` must match.
    fn theirs(input: &[u8]) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let mut record = csv::ByteRecord::new();
        let mut out = Vec::new();
        while reader.read_byte_record(&mut record).expect("reads") {
            let line = record.position().map_or(0, |p| p.line());
            out.push((line, record.iter().map(<[u8]>::to_vec).collect()));
        }
        out
    }

    /// The same fields as the csv crate, and the same lines where it counts them right: it
    /// falls behind after a blank line and after `\r\n`, where a record's line here is still
    /// its true first line.
    fn same(input: &[u8], chunk: usize) {
        let (a, b) = (ours(input, chunk), theirs(input));
        let fields = |r: &[(u64, Vec<Vec<u8>>)]| r.iter().map(|x| x.1.clone()).collect::<Vec<_>>();
        let text = String::from_utf8_lossy(input);
        assert_eq!(fields(&a), fields(&b), "{text:?} read {chunk} bytes at a time");
        let blank = input.starts_with(b"\n") || input.windows(2).any(|w| w == b"\n\n");
        if !input.contains(&b'\r') && !blank {
            assert_eq!(a, b, "{text:?} read {chunk} bytes at a time");
        }
    }

    #[test]
    fn records_are_read_as_the_csv_crate_reads_them() {
        let cases: &[&[u8]] = &[
            b"a,b,c\n1,2,3\n",
            b"a,b\r\n1,2\r\n\r\n3,4",
            b"\xef\xbb\xbfid,x\n1,\n",
            b"\n\nid,x\n\n1,2\n",
            b"id,x\n\"a,b\",\"q\"\"q\"\n\"multi\nline\",z\nlast,row",
            b"id,x\nlone\rcr,y\n",
            b"id,x\n\"unclosed,y\nmore,z\n",
            b",,\n,\n",
            b"  ,  \n",
        ];
        for case in cases {
            for chunk in [1, 2, 3, 7, 64, CHUNK] {
                same(case, chunk);
            }
        }
        // The csv crate counts a line on each `\n` it meets inside its state machine, and
        // after a `\r\n` it is behind; a record's line here is its true first line.
        let lines = |input: &[u8]| ours(input, 3).iter().map(|r| r.0).collect::<Vec<u64>>();
        assert_eq!(lines(b"a,b\r\n1,2\r\n\r\n3,4"), [1, 2, 4]);
        assert_eq!(lines(b"\n\nid,x\n\n1,2\n"), [3, 5]);
        assert_eq!(lines(b"id\n\"two\nlines\"\nnext\n"), [1, 2, 4]);
        // Random mixes of the bytes that matter, against the csv crate.
        let alphabet = b"ab,\"\r\n ";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut text = Vec::new();
            for _ in 0..(seed % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            for chunk in [1, 5, CHUNK] {
                same(&text, chunk);
            }
        }
    }

    #[test]
    fn a_record_past_the_limit_is_refused_with_its_line() {
        let mut text = b"id\nfine\n\"".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_RECORD + 10));
        let mut reader = text.as_slice();
        let mut records = Records::with_chunk(&mut reader, 0, 4096);
        assert!(records.next().expect("header").is_some());
        assert!(records.next().expect("row").is_some());
        match records.next() {
            Err(RecordError::TooLong(line)) => assert_eq!(line, 3),
            other => panic!("expected TooLong, got {:?}", other.map(|r| r.map(|(l, _)| l))),
        }
    }
}
