//! Measure point history: every value a device posted, with its time (the device's `time`,
//! else its arrival), one value per device, point and time (a later post at the same time
//! replaces it, as EnOS does), kept within the retention of `--retain`. This module holds
//! what both keepers share: [`Retention`], the value as kept ([`Stored`]), one point's values
//! in memory ([`Series`], for a serve without `--data`; the database keeps them otherwise,
//! [`super::store`]), and the HTTP query (`?from=&to=&limit=&format=`) with its JSON and CSV.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// How long values are kept, per point: a duration, a count, or both. A value goes only when
/// it is older than the duration *and* not among the newest `count` values of its point, so
/// the default keeps at least seven days and at least 100,000 values; the newest value of a
/// point always stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub duration: Option<Duration>,
    pub count: Option<u64>,
}

/// The longest `--retain` duration: 100 years.
const MAX_DURATION_S: u64 = 100 * 365 * 86_400;
/// The largest `--retain` count per point.
pub(crate) const MAX_COUNT: u64 = 1_000_000_000;

impl Default for Retention {
    fn default() -> Self {
        Retention {
            duration: Some(Duration::from_secs(7 * 86_400)),
            count: Some(100_000),
        }
    }
}

impl std::str::FromStr for Retention {
    type Err = String;

    /// `7d`, `100000`, `7d,100000`, `12h`, `30m`, `90s`: a duration (s, m, h, d) and/or a
    /// count, comma-separated, each at most once.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut r = Retention {
            duration: None,
            count: None,
        };
        for part in text.split(',').map(str::trim) {
            let unit = match part.chars().last() {
                Some('s') => Some(1),
                Some('m') => Some(60),
                Some('h') => Some(3_600),
                Some('d') => Some(86_400),
                _ => None,
            };
            let digits = if unit.is_some() {
                &part[..part.len() - 1]
            } else {
                part
            };
            let n: u64 = digits.parse().map_err(|_| {
                format!(
                    "`{part}` is neither a duration (7d, 12h, 30m, 90s) nor a count of values (100000); \
                     give one or both, comma-separated: 7d,100000"
                )
            })?;
            match unit {
                Some(scale) => {
                    let secs = n.checked_mul(scale).filter(|s| (1..=MAX_DURATION_S).contains(s));
                    let Some(secs) = secs else {
                        return Err(format!("`{part}`: a duration is 1 s to 100 years"));
                    };
                    if r.duration.replace(Duration::from_secs(secs)).is_some() {
                        return Err(format!("`{text}` gives two durations; give one"));
                    }
                }
                None => {
                    if !(1..=MAX_COUNT).contains(&n) {
                        return Err(format!("`{part}`: a count is 1 to {MAX_COUNT} values per point"));
                    }
                    if r.count.replace(n).is_some() {
                        return Err(format!("`{text}` gives two counts; give one"));
                    }
                }
            }
        }
        Ok(r)
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(d) = self.duration {
            let s = d.as_secs();
            parts.push(match s {
                s if s % 86_400 == 0 => format!("{}d", s / 86_400),
                s if s % 3_600 == 0 => format!("{}h", s / 3_600),
                s if s % 60 == 0 => format!("{}m", s / 60),
                s => format!("{s}s"),
            });
        }
        if let Some(c) = self.count {
            parts.push(c.to_string());
        }
        f.write_str(&parts.join(","))
    }
}

impl Retention {
    /// What may go at `now_ms`: values older than the returned time (ms), beyond the newest
    /// `keep` of their point.
    pub fn bounds(&self, now_ms: i64) -> (i64, u64) {
        let cutoff = match self.duration {
            Some(d) => now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            None => i64::MAX,
        };
        (cutoff, self.count.unwrap_or(1).max(1))
    }

    /// How many values a point gains between two prunings of it in the database: a
    /// sixteenth of the count (at most 4,096), so a point holds at most that many more than
    /// its count; `None` when only a duration bounds it (pruned by time, every minute).
    pub fn prune_step(&self) -> Option<u64> {
        self.count.map(|c| (c / 16).clamp(1, 4_096))
    }
}

/// A value as kept: integers and floats as numbers, anything else (text, bool, a value with
/// its quality, an object) as its JSON text. 16 bytes, where a `serde_json::Value` is 32: the
/// text sits behind one thin pointer (a `Box<str>` would make every value 24 bytes, numbers
/// too, and a device's history in memory is most of what its posts cost serve).
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::box_collection,
    reason = "a thin pointer on purpose: numbers, most of what is kept, stay 16 bytes"
)]
pub enum Stored {
    Int(i64),
    Float(f64),
    Json(Box<String>),
}

impl Stored {
    pub fn from_value(v: &Value) -> Self {
        match v {
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Stored::Int(i),
                // Beyond i64 (a u64): kept exact, as text.
                (None, _) if n.is_u64() => Stored::Json(Box::new(n.to_string())),
                (None, Some(f)) => Stored::Float(f),
                (None, None) => Stored::Json(Box::new(n.to_string())),
            },
            other => Stored::Json(Box::new(other.to_string())),
        }
    }

    /// The value as posted; text that is not JSON (only a damaged file could hold it) comes
    /// back as a string.
    pub fn to_value(&self) -> Value {
        match self {
            Stored::Int(i) => Value::from(*i),
            Stored::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Stored::Json(text) => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
            }
        }
    }

    /// The value in a CSV cell: a number as JSON writes it, text as itself, anything else as
    /// its JSON.
    fn csv_cell(&self) -> String {
        match self.to_value() {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }
}

/// One value with its time (ms since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub time: i64,
    pub value: Stored,
}

/// One point's values in memory, oldest first, one per time.
#[derive(Debug, Default, Clone)]
pub(crate) struct Series {
    values: VecDeque<Sample>,
}

impl Series {
    /// Keep `value` at `time`, replacing a value at the same time; `true` when the series grew.
    pub(crate) fn put(&mut self, time: i64, value: Stored) -> bool {
        // Devices post in time order: the new value is almost always the last.
        let at = match self.values.back() {
            Some(last) if last.time < time => self.values.len(),
            _ => self.values.partition_point(|s| s.time < time),
        };
        match self.values.get_mut(at) {
            Some(s) if s.time == time => {
                s.value = value;
                false
            }
            _ => {
                // Grown by a quarter, not doubled: a device's few values in memory would
                // otherwise keep up to as much room again unused, per point of every device.
                if self.values.len() == self.values.capacity() {
                    self.values.reserve_exact((self.values.len() / 4).max(4));
                }
                self.values.insert(at, Sample { time, value });
                true
            }
        }
    }

    /// Drop what `retention` lets go at `now_ms`; how many values went.
    pub(crate) fn prune(&mut self, retention: &Retention, now_ms: i64) -> usize {
        let (cutoff, keep) = retention.bounds(now_ms);
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        let mut gone = 0;
        while self.values.len() > keep && self.values.front().is_some_and(|s| s.time < cutoff) {
            self.values.pop_front();
            gone += 1;
        }
        gone
    }

    /// Drop the oldest value (when more than one is kept): room for a new one when the
    /// values in memory reach their bound.
    pub(crate) fn drop_oldest(&mut self) -> bool {
        self.values.len() > 1 && self.values.pop_front().is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// The newest `q.limit` values from `q.from` to `q.to`, oldest first.
    pub(crate) fn range(&self, q: &Query) -> Vec<Sample> {
        let start = self.values.partition_point(|s| s.time < q.from);
        let end = self.values.partition_point(|s| s.time <= q.to);
        let start = start.max(end.saturating_sub(q.limit));
        self.values.range(start..end.max(start)).cloned().collect()
    }
}

/// The answer's format: `?format=json` (the default) or `?format=csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// What `GET /twin/devices/{pk}/{dk}/history/{point}` asks: the values from `from` to `to`
/// (ms, both included), at most the newest `limit` of them, in a format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub from: i64,
    pub to: i64,
    pub limit: usize,
    pub format: Format,
}

/// The values one answer holds unless `?limit=` says otherwise.
pub(crate) const DEFAULT_LIMIT: usize = 10_000;
/// The most values one answer holds.
pub(crate) const MAX_LIMIT: usize = 1_000_000;

impl Query {
    /// Read `from`, `to`, `limit` and `format` from a query string (other keys are not
    /// history's: the console's token); `Err` says which is wrong and how.
    pub fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut q = Query {
            from: 0,
            to: i64::MAX,
            limit: DEFAULT_LIMIT,
            format: Format::Json,
        };
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let ms = || {
                value
                    .parse::<i64>()
                    .map_err(|_| format!("{key}={value}: give a time in milliseconds since the epoch"))
            };
            match key {
                "from" => q.from = ms()?,
                "to" => q.to = ms()?,
                "limit" => {
                    q.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| format!("limit={value}: give 1 to {MAX_LIMIT} values"))?;
                }
                "format" => {
                    q.format = match value {
                        "json" => Format::Json,
                        "csv" => Format::Csv,
                        _ => return Err(format!("format={value}: give json or csv")),
                    };
                }
                _ => {}
            }
        }
        if q.from > q.to {
            return Err(format!("from={} is after to={}", q.from, q.to));
        }
        Ok(q)
    }
}

/// `{"point", "values": [{"time", "value"}...]}`.
pub(crate) fn json(point: &str, samples: &[Sample]) -> Vec<u8> {
    let values: Vec<Value> = samples
        .iter()
        .map(|s| serde_json::json!({"time": s.time, "value": s.value.to_value()}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"point": point, "values": values})).unwrap_or_default()
}

/// `time,value` and a row per value (the csv crate quotes what needs it).
pub(crate) fn csv(samples: &[Sample]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(16 * samples.len() + 16));
    // Writing to a Vec fails only on memory: an answer cut short then, not a panic.
    let _ = w.write_record(["time", "value"]);
    let mut time = itoa::Buffer::new();
    for s in samples {
        let _ = w.write_record([time.format(s.time), s.value.csv_cell().as_str()]);
    }
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_in_memory_is_24_bytes_and_a_series_grows_by_a_quarter() {
        assert_eq!(std::mem::size_of::<Stored>(), 16);
        assert_eq!(std::mem::size_of::<Sample>(), 24);
        let mut s = Series::default();
        let caps: Vec<usize> = (0..25)
            .map(|t| {
                s.put(t, Stored::Int(t));
                s.values.capacity()
            })
            .collect();
        assert_eq!(s.len(), 25);
        // Room for 4 more, then a quarter more: never twice what is kept.
        assert!(
            caps.iter()
                .enumerate()
                .all(|(i, &c)| c > i && c <= (i + 1).max(4) * 5 / 4 + 4),
            "{caps:?}"
        );
        assert_eq!(caps[8], 12, "{caps:?}");
    }

    #[test]
    fn retention_reads_a_duration_a_count_or_both() {
        let r: Retention = "7d,100000".parse().expect("both");
        assert_eq!(r, Retention::default());
        assert_eq!(r.to_string(), "7d,100000");
        let r: Retention = "90s".parse().expect("a duration");
        assert_eq!((r.duration, r.count), (Some(Duration::from_secs(90)), None));
        let r: Retention = "500".parse().expect("a count");
        assert_eq!((r.duration, r.count), (None, Some(500)));
        for bad in ["", "7x", "0", "0s", "7d,8d", "1,2", "-5", "99999999999999999999d"] {
            assert!(bad.parse::<Retention>().is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn a_value_goes_only_when_both_old_and_beyond_the_count() {
        let r: Retention = "10s,3".parse().expect("retention");
        let mut s = Series::default();
        for t in 0..6 {
            s.put(t * 1000, Stored::Int(t));
        }
        // At 12 s, values before 2 s are old; the newest 3 stay whatever their age.
        assert_eq!(s.prune(&r, 12_000), 2);
        assert_eq!(s.len(), 4);
        // Much later every value is old: the newest 3 stay.
        assert_eq!(s.prune(&r, 1_000_000), 1);
        assert_eq!(s.len(), 3);
        // A duration alone keeps the newest value.
        let only_time: Retention = "1s".parse().expect("retention");
        s.prune(&only_time, 1_000_000);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn the_same_time_keeps_the_last_value_and_order_is_by_time() {
        let mut s = Series::default();
        assert!(s.put(20, Stored::Int(2)));
        assert!(s.put(10, Stored::Int(1)), "a resumed older value goes before");
        assert!(!s.put(20, Stored::Float(2.5)), "same time: replaced");
        let all = s.range(&Query::parse(None).expect("query"));
        assert_eq!(
            all,
            vec![
                Sample {
                    time: 10,
                    value: Stored::Int(1)
                },
                Sample {
                    time: 20,
                    value: Stored::Float(2.5)
                }
            ]
        );
    }

    #[test]
    fn a_range_answers_the_newest_values_within_it_oldest_first() {
        let mut s = Series::default();
        for t in 1..=10 {
            s.put(t, Stored::Int(t));
        }
        let q = Query::parse(Some("from=3&to=8&limit=2")).expect("query");
        let times: Vec<i64> = s.range(&q).iter().map(|x| x.time).collect();
        assert_eq!(times, vec![7, 8]);
        let q = Query::parse(Some("from=20")).expect("query");
        assert!(s.range(&q).is_empty());
        for bad in ["from=x", "limit=0", "limit=2000000", "format=xml", "from=5&to=4"] {
            assert!(Query::parse(Some(bad)).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn values_keep_their_json_and_csv_quotes_what_needs_it() {
        for text in [
            "19",
            "21.5",
            "-3",
            "true",
            "\"on\"",
            "{\"value\":1,\"quality\":0}",
            "18446744073709551615",
        ] {
            let v: Value = serde_json::from_str(text).expect("json");
            assert_eq!(Stored::from_value(&v).to_value(), v, "{text}");
        }
        let samples = vec![
            Sample {
                time: 1,
                value: Stored::Float(21.5),
            },
            Sample {
                time: 2,
                value: Stored::from_value(&Value::String("a,b".into())),
            },
        ];
        assert_eq!(
            String::from_utf8_lossy(&csv(&samples)),
            "time,value\n1,21.5\n2,\"a,b\"\n"
        );
        assert_eq!(
            String::from_utf8_lossy(&json("temp", &samples[..1])),
            r#"{"point":"temp","values":[{"time":1,"value":21.5}]}"#
        );
    }
}
