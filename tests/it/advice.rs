//! Advice that never contradicts itself, over every device the questions can describe: every
//! value of every question (and "not answered" for a question with a default) times a spread
//! of needs (none, every feature alone, every pair, the combinations that force two
//! protocols, all of them). Each device is decided in-process through every route a person
//! has (`recommend` flags, an answers file, a batch row, the `ask` questionnaire), and the
//! invariants are checked on the JSON `recommend -f json` prints. Every violation is counted
//! by invariant, so a failure says how many devices break which promise.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde_json::Value;

use crate::common::caps;
use enos_connect::answers::Answers;
use enos_connect::batch::{self, BatchFormat, Shard};
use enos_connect::capabilities::Capabilities;
use enos_connect::engine;
use enos_connect::render::json::decision_value;
use enos_connect::render::{Format, Style};
use enos_connect::source::SourceFile;

/// One device: an answer (or none) per question, and its needs.
#[derive(Debug, Clone)]
struct Device {
    given: Vec<(String, String)>,
    needs: Vec<String>,
}

impl Device {
    fn given(&self, q: &str) -> Option<&str> {
        self.given.iter().find(|(k, _)| k == q).map(|(_, v)| v.as_str())
    }

    /// The answer the device has: given, else the question's default.
    fn effective<'a>(&'a self, caps: &'a Capabilities, q: &str) -> Option<&'a str> {
        self.given(q)
            .or_else(|| caps.question(q).and_then(|x| x.default.as_deref()))
    }

    fn flags(&self) -> Vec<String> {
        self.given.iter().map(|(q, v)| format!("{q}={v}")).collect()
    }
}

/// Every answer combination (a question with a default may also be left unanswered) times the
/// spread of needs.
fn the_whole_space(caps: &Capabilities) -> Vec<Device> {
    let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for q in &caps.questions {
        let mut values: Vec<Option<&str>> = q.values().map(Some).collect();
        if q.default.is_some() {
            values.push(None);
        }
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    if let Some(v) = v {
                        c.push((q.id.clone(), v.to_string()));
                    }
                    c
                })
            })
            .collect();
    }
    let mut devices = Vec::new();
    for given in combos {
        for needs in need_spread(caps) {
            devices.push(Device {
                given: given.clone(),
                needs,
            });
        }
    }
    devices
}

/// No needs, every feature alone, every pair, every triple that needs two protocols even with
/// every protocol open, and every feature.
fn need_spread(caps: &Capabilities) -> Vec<Vec<String>> {
    let ids: Vec<String> = caps.feature_ids().map(str::to_string).collect();
    let mut spread = vec![Vec::new()];
    spread.extend(ids.iter().map(|f| vec![f.clone()]));
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            spread.push(vec![a.clone(), b.clone()]);
        }
    }
    let one_carries = |set: &[&String]| {
        caps.protocols.iter().any(|p| {
            set.iter()
                .all(|f| caps.feature(f).is_some_and(|f| f.support_for(&p.id).covers()))
        })
    };
    for (i, a) in ids.iter().enumerate() {
        for (j, b) in ids.iter().enumerate().skip(i + 1) {
            for c in &ids[j + 1..] {
                if !one_carries(&[a, b, c]) && (one_carries(&[a, b]) || one_carries(&[b, c])) {
                    spread.push(vec![a.clone(), b.clone(), c.clone()]);
                }
            }
        }
    }
    spread.push(ids);
    spread
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn objects<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn text<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The violations found, by invariant: how many, on how many devices, the first few.
#[derive(Default)]
struct Violations {
    found: BTreeMap<&'static str, Found>,
    /// The device being checked.
    device: usize,
}

#[derive(Default)]
struct Found {
    violations: usize,
    devices: BTreeSet<usize>,
    examples: Vec<String>,
}

impl Violations {
    fn add(&mut self, invariant: &'static str, device: &Device, detail: String) {
        let entry = self.found.entry(invariant).or_default();
        entry.violations += 1;
        entry.devices.insert(self.device);
        if entry.examples.len() < 3 {
            entry
                .examples
                .push(format!("{:?} needs {:?}: {detail}", device.given, device.needs));
        }
    }
}

/// The sentences that say every need is met.
fn claims_coverage(reason: &str) -> bool {
    ["covers its needs", "covers every need", "covers all", "Needed: "]
        .iter()
        .any(|p| reason.contains(p))
}

/// The rows of a table: each label with the lines of its value.
fn table_rows(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut label = String::new();
    for line in text.lines().take_while(|l| !l.is_empty()) {
        let Some(inner) = line.strip_prefix('│').and_then(|l| l.strip_suffix('│')) else {
            continue;
        };
        let Some((l, v)) = inner.split_once('┆') else {
            continue;
        };
        if !l.trim().is_empty() {
            label = l.trim().to_string();
        }
        rows.entry(label.clone()).or_default().push(v.trim().to_string());
    }
    rows
}

/// The answers, the decision and its JSON for a device's flags.
fn by_flags(caps: &Capabilities, device: &Device) -> (Answers, engine::Decision, Value) {
    let mut a = Answers::default();
    a.apply_flags(caps, &device.flags(), &device.needs)
        .unwrap_or_else(|e| panic!("{device:?}: {e}"));
    let d = engine::decide(caps, &a).unwrap_or_else(|e| panic!("{device:?}: {e}"));
    let v = decision_value(caps, &d);
    (a, d, v)
}

/// Invariant 1: no reason claims coverage while a need is unmet; the table, the reasons, the
/// path and `carriers` agree on which protocol carries which need.
fn check_agreement(
    caps: &Capabilities,
    device: &Device,
    d: &engine::Decision,
    v: &Value,
    tables: &mut Tables,
    found: &mut Violations,
) {
    let title = |p: &str| caps.protocol_title(p).to_string();
    let (needs, unmet, protocols) = (
        strings(&v["needs"]),
        strings(&v["unmet"]),
        strings(&v["protocols"]),
    );
    let reasons = strings(&v["reasons"]);
    if !unmet.is_empty()
        && let Some(r) = reasons.iter().find(|r| claims_coverage(r))
    {
        found.add(
            "false coverage: a reason says the needs are met",
            device,
            r.to_string(),
        );
    }
    let carriers: Vec<(&str, &str)> = objects(v, "carriers")
        .iter()
        .map(|c| (text(c, "need"), text(c, "protocol")))
        .collect();
    let mut disagree = Vec::new();
    let direct = v["outcome"] == "direct";
    for n in &needs {
        let carried: Vec<&str> = carriers.iter().filter(|(c, _)| c == n).map(|(_, p)| *p).collect();
        let is_unmet = unmet.contains(n);
        match (carried.as_slice(), is_unmet) {
            ([p], false) if protocols.contains(p) => {
                if !caps.feature(n).is_some_and(|f| f.support_for(p).covers()) {
                    disagree.push(format!("{n} carried by {p}, which does not support it"));
                }
            }
            ([], true) => {}
            ([], false) if !direct => {}
            other => disagree.push(format!("{n}: carried by {:?}, unmet {}", other.0, other.1)),
        }
    }
    if !direct && let Some(o) = caps.outcome(v["outcome"].as_str().unwrap_or_default()) {
        let expected: Vec<&str> = needs
            .iter()
            .copied()
            .filter(|n| !o.supports.iter().any(|s| s == n))
            .collect();
        if expected != unmet {
            disagree.push(format!(
                "outcome {} leaves {expected:?} unmet, JSON says {unmet:?}",
                o.id
            ));
        }
    }
    // The path: the cover node's branch and the protocols it left open; the outcome last.
    let trace = objects(v, "trace");
    if let Some(last) = trace.last()
        && last["branch"] != v["outcome"]
    {
        disagree.push(format!(
            "the path ends at {} but the outcome is {}",
            last["branch"], v["outcome"]
        ));
    }
    for step in trace.iter().filter(|s| s["kind"] == "cover") {
        let covered = step["branch"] == "covered";
        if covered != unmet.is_empty() {
            disagree.push(format!("the path says {} with unmet {unmet:?}", step["branch"]));
        }
        let open = strings(&step["open"]);
        if let Some(p) = protocols.iter().find(|p| !open.contains(p)) {
            disagree.push(format!("{p} chosen but not open at the cover node"));
        }
    }
    let read: BTreeSet<(&str, &str)> = objects(v, "answers")
        .iter()
        .map(|a| (text(a, "question"), text(a, "value")))
        .collect();
    for step in trace {
        if let (Some(q), Some(a)) = (step["question"].as_str(), step["answer"].as_str())
            && !read.contains(&(q, a))
        {
            disagree.push(format!("the path reads {q}={a}, `answers` does not"));
        }
    }
    // The reasons: "<Protocol> carries a, b" lists exactly that protocol's carriers.
    for p in &protocols {
        let said = format!("{} carries ", title(p));
        let mine: Vec<&str> = carriers.iter().filter(|(_, c)| c == p).map(|(n, _)| *n).collect();
        for r in reasons.iter().filter(|r| r.starts_with(&said)) {
            let listed: Vec<&str> = r[said.len()..].split(", ").collect();
            if listed != mine {
                disagree.push(format!("`{r}` but carriers give {mine:?}"));
            }
        }
    }
    // The table: the same carriers, protocols, unmet needs and caveats.
    let rows = tables.rows(caps, d);
    let shown_carriers = rows.get("Needs carried").cloned().unwrap_or_default();
    let expected: Vec<String> = carriers
        .iter()
        .map(|(n, p)| format!("{n} -> {}", title(p)))
        .collect();
    if shown_carriers != expected {
        disagree.push(format!("the table carries {shown_carriers:?}, JSON {expected:?}"));
    }
    let shown_unmet = rows.get("Unmet needs").map(|l| l.join(" ")).unwrap_or_default();
    let expected_unmet = if unmet.is_empty() {
        "none".to_string()
    } else {
        unmet.join(", ")
    };
    if !shown_unmet.starts_with(&expected_unmet) {
        disagree.push(format!("the table's unmet needs `{shown_unmet}`, JSON {unmet:?}"));
    }
    let shown_protocols = rows.get("Protocols").map(|l| l.join(" ")).unwrap_or_default();
    let expected_protocols: Vec<String> = protocols.iter().map(|p| title(p)).collect();
    if shown_protocols != expected_protocols.join(" + ") {
        disagree.push(format!(
            "the table's protocols `{shown_protocols}`, JSON {protocols:?}"
        ));
    }
    let shown_caveats = rows.get("Caveats").map_or(0, Vec::len);
    if shown_caveats != objects(v, "caveats").len() {
        disagree.push(format!(
            "the table shows {shown_caveats} caveats, JSON {}",
            objects(v, "caveats").len()
        ));
    }
    for d in disagree {
        found.add("disagreement: table, reasons, path and carriers", device, d);
    }
}

/// The table renderer's rows, rendered once per distinct thing they show.
#[derive(Default)]
struct Tables(HashMap<String, BTreeMap<String, Vec<String>>>);

impl Tables {
    fn rows(&mut self, caps: &Capabilities, d: &engine::Decision) -> &BTreeMap<String, Vec<String>> {
        let key = format!(
            "{:?}{:?}{:?}{:?}{}",
            d.protocols, d.carriers, d.unmet, d.caveats, d.recommendation
        );
        self.0.entry(key).or_insert_with(|| {
            let text = Format::Table.renderer(Style::default()).decision(caps, d);
            table_rows(&text)
        })
    }
}

/// Invariant 2: every answer given is read by the decision (`answers`) or set aside with why.
fn check_answers_accounted(device: &Device, v: &Value, found: &mut Violations) {
    let read: Vec<(String, String, bool)> = objects(v, "answers")
        .iter()
        .map(|a| {
            (
                a["question"].as_str().unwrap_or_default().to_string(),
                a["value"].as_str().unwrap_or_default().to_string(),
                a["by_default"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    let aside: Vec<(String, String, String)> = objects(v, "set_aside")
        .iter()
        .map(|a| {
            (
                a["question"].as_str().unwrap_or_default().to_string(),
                a["value"].as_str().unwrap_or_default().to_string(),
                a["why"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (q, value) in &device.given {
        let is_read = read.iter().any(|(rq, rv, d)| rq == q && rv == value && !d);
        let is_aside = aside
            .iter()
            .any(|(sq, sv, why)| sq == q && sv == value && !why.is_empty());
        if is_read == is_aside {
            found.add(
                "dropped answer: neither read nor set aside (or both)",
                device,
                format!("{q}={value} read {is_read}, set aside {is_aside}"),
            );
        }
    }
    for (q, value, _) in &aside {
        if device.given(q) != Some(value.as_str()) {
            found.add(
                "dropped answer: neither read nor set aside (or both)",
                device,
                format!("{q}={value} set aside but not given"),
            );
        }
    }
}

/// Invariant 3: a carrier that conflicts with an answer is a caveat, or the need is unmet.
/// The conflicts the EnOS docs and SDKs establish, written here apart from the data so that a
/// rule dropped from capabilities.toml fails this test; then every rule of the data as well.
fn check_conflicts(caps: &Capabilities, device: &Device, v: &Value, found: &mut Violations) {
    let caveats = objects(v, "caveats");
    let unmet = strings(&v["unmet"]);
    let protocols = strings(&v["protocols"]);
    let has = |need: Option<&str>, protocol: &str, q: &str, a: &str| {
        caveats.iter().any(|c| {
            c["protocol"] == protocol
                && c["question"] == q
                && c["answer"] == a
                && need.is_none_or(|n| c["need"] == n)
                && !c["why"].as_str().unwrap_or_default().is_empty()
        })
    };
    let mut expected: Vec<(Option<String>, String, String, String)> = Vec::new();
    if device.effective(caps, "long_connection") == Some("no") {
        for c in objects(v, "carriers") {
            let need = c["need"].as_str().unwrap_or_default();
            if c["protocol"] == "mqtt"
                && ["downlink_commands", "passthrough_down", "ota"].contains(&need)
                && !unmet.contains(&need)
            {
                expected.push((
                    Some(need.into()),
                    "mqtt".into(),
                    "long_connection".into(),
                    "no".into(),
                ));
            }
        }
    }
    if device.effective(caps, "constrained") == Some("yes") {
        for p in protocols.iter().filter(|p| **p == "mqtt" || **p == "http") {
            expected.push((None, p.to_string(), "constrained".into(), "yes".into()));
        }
    }
    for rule in caps.caveats.iter() {
        if device.effective(caps, &rule.question) != Some(rule.answer.as_str())
            || !protocols.contains(&rule.protocol.as_str())
        {
            continue;
        }
        if rule.needs.is_empty() {
            expected.push((
                None,
                rule.protocol.clone(),
                rule.question.clone(),
                rule.answer.clone(),
            ));
        }
        for c in objects(v, "carriers") {
            let need = c["need"].as_str().unwrap_or_default();
            if c["protocol"] == rule.protocol.as_str() && rule.needs.iter().any(|n| n == need) {
                expected.push((
                    Some(need.into()),
                    rule.protocol.clone(),
                    rule.question.clone(),
                    rule.answer.clone(),
                ));
            }
        }
    }
    if expected
        .iter()
        .any(|(need, p, q, a)| !has(need.as_deref(), p, q, a))
    {
        found.add("silent conflict (any kind)", device, String::new());
    }
    for (need, p, q, a) in &expected {
        if !has(need.as_deref(), p, q, a) {
            found.add(
                match q.as_str() {
                    "long_connection" => "silent conflict: long_connection=no, downlink or OTA over MQTT",
                    "constrained" => "silent conflict: constrained=yes, MQTT or HTTP chosen",
                    _ => "silent conflict: a carrier against an answer (capabilities.toml's caveats)",
                },
                device,
                format!("{need:?} over {p} with {q}={a}"),
            );
        }
    }
    for c in caveats {
        let q = c["question"].as_str().unwrap_or_default();
        let sound = device.effective(caps, q) == c["answer"].as_str()
            && protocols.iter().any(|p| c["protocol"] == *p);
        if !sound {
            found.add("spurious caveat", device, c.to_string());
        }
    }
}

/// A person answering the questionnaire as this device would: each question with the
/// device's answer, or its default (pressing Enter); the needs with its needs.
struct Scripted<'d> {
    caps: &'d Capabilities,
    device: &'d Device,
}

/// Why the scripted questionnaire stopped.
#[derive(Debug)]
struct Stopped(String);

impl From<engine::EngineError> for Stopped {
    fn from(e: engine::EngineError) -> Self {
        Stopped(e.to_string())
    }
}

impl From<enos_connect::answers::AnswersError> for Stopped {
    fn from(e: enos_connect::answers::AnswersError) -> Self {
        Stopped(e.to_string())
    }
}

impl engine::Prompt for Scripted<'_> {
    type Error = Stopped;

    fn question(&mut self, q: &enos_connect::capabilities::Question) -> Result<String, Stopped> {
        self.device
            .effective(self.caps, &q.id)
            .map(str::to_string)
            .ok_or_else(|| Stopped(format!("the device has no answer to {}", q.id)))
    }

    fn needs(&mut self, _: &Capabilities) -> Result<Vec<String>, Stopped> {
        Ok(self.device.needs.clone())
    }
}

/// The `ask` questionnaire (`engine::interview`, as `ask` runs it, without defaults), then its
/// decision; and whether it asked for the needs. The same for every device with the same
/// effective answers, so each is run once.
fn by_ask(caps: &Capabilities, device: &Device, asked: &mut Asks) -> (engine::Decision, bool) {
    let key = (
        caps.question_ids()
            .map(|q| device.effective(caps, q).map(str::to_string))
            .collect::<Vec<_>>(),
        device.needs.clone(),
    );
    asked
        .0
        .entry(key)
        .or_insert_with(|| {
            let mut a = Answers::default();
            let mut prompt = Scripted { caps, device };
            let done = engine::interview(caps, &mut a, false, &mut prompt)
                .unwrap_or_else(|e| panic!("{device:?}: {}", e.0));
            (engine::decide(caps, &a).expect("decides"), done.needs)
        })
        .clone()
}

type AskKey = (Vec<Option<String>>, Vec<String>);

#[derive(Default)]
struct Asks(HashMap<AskKey, (engine::Decision, bool)>);

/// The fields a batch row and the decision both have.
const ADVICE: [&str; 5] = ["recommendation", "protocols", "unmet", "caveats", "set_aside"];

/// Invariant 4: the same device, the same advice through every route.
fn check_routes(
    caps: &Capabilities,
    device: &Device,
    (answers, d, v): (&Answers, &engine::Decision, &Value),
    row: Option<&Value>,
    asks: &mut Asks,
    found: &mut Violations,
) {
    // The answers file `ask --save` writes, read back: the same answers, so the same
    // decision (the engine is a pure function of them).
    let text = answers.to_toml(caps);
    match Answers::parse(caps, &SourceFile::new("device.toml", text.clone())) {
        Ok(a) if a == *answers => {}
        other => found.add(
            "routes differ: answers file",
            device,
            format!("{text}: {:?}", other.map_err(|e| e.to_string())),
        ),
    }
    match row {
        Some(row) => {
            for key in ADVICE {
                // A batch row leaves out each caveat's and set-aside answer's `why`: the same
                // sentence for every row, most of a fleet's output.
                let expected = v.get(key).map(|x| match x {
                    Value::Array(items) => Value::Array(
                        items
                            .iter()
                            .map(|item| {
                                let mut item = item.clone();
                                if let Value::Object(m) = &mut item {
                                    m.remove("why");
                                }
                                item
                            })
                            .collect(),
                    ),
                    other => other.clone(),
                });
                if row.get(key) != expected.as_ref() {
                    found.add(
                        "routes differ: batch row",
                        device,
                        format!("{key}: row {:?}, recommend {:?}", row.get(key), v.get(key)),
                    );
                }
            }
        }
        None => found.add("routes differ: batch row", device, "no row".into()),
    }
    let (asked, needs_asked) = by_ask(caps, device, asks);
    if !needs_asked && !device.needs.is_empty() {
        found.add(
            "ask hides needs: never asked them",
            device,
            format!("outcome {}", asked.outcome),
        );
    }
    let advice = |x: &engine::Decision| {
        (
            x.recommendation.clone(),
            x.protocols.clone(),
            x.carriers.clone(),
            x.unmet.clone(),
            x.caveats.clone(),
        )
    };
    if advice(&asked) != advice(d) {
        found.add(
            "routes differ: ask",
            device,
            format!("ask {:?}, recommend {:?}", advice(&asked), advice(d)),
        );
    }
    // `ask` answers only what it asks, so it sets aside at most what `recommend` does, or an
    // answer it asked for a caveat that the device left at its default.
    for a in &asked.set_aside {
        let left_at_default = device.given(&a.question).is_none()
            && device.effective(caps, &a.question) == Some(a.value.as_str());
        if !d.set_aside.contains(a) && !left_at_default {
            found.add(
                "routes differ: ask",
                device,
                format!("ask sets aside {a:?}, recommend does not"),
            );
        }
    }
}

/// Every device as one batch file, decided in-process; the rows by device index.
fn by_batch(caps: &Capabilities, devices: &[Device]) -> Vec<Option<Value>> {
    let mut csv = String::from("id");
    for q in &caps.questions {
        csv.push(',');
        csv.push_str(&q.id);
    }
    csv.push_str(",needs\n");
    for (i, d) in devices.iter().enumerate() {
        csv.push_str(&i.to_string());
        for q in &caps.questions {
            csv.push(',');
            csv.push_str(d.given(&q.id).unwrap_or_default());
        }
        csv.push(',');
        csv.push_str(&d.needs.join(";"));
        csv.push('\n');
    }
    let mut out = Vec::new();
    let mut bad = Vec::new();
    batch::run(
        caps,
        "space.csv",
        &mut csv.as_bytes(),
        &mut out,
        &mut |m| bad.push(m),
        BatchFormat::Jsonl,
        Shard::ALL,
    )
    .expect("the batch runs");
    assert!(bad.is_empty(), "bad rows: {bad:?}");
    let mut rows = vec![None; devices.len()];
    for line in String::from_utf8_lossy(&out).lines() {
        let row: Value = serde_json::from_str(line).expect("a JSON line");
        if let Some(i) = row["id"].as_str().and_then(|s| s.parse::<usize>().ok()) {
            rows[i] = Some(row);
        }
    }
    rows
}

/// The checks of one device.
fn check(
    caps: &Capabilities,
    device: &Device,
    row: Option<&Value>,
    (tables, asks): (&mut Tables, &mut Asks),
    found: &mut Violations,
) {
    let (answers, d, v) = by_flags(caps, device);
    check_agreement(caps, device, &d, &v, tables, found);
    check_answers_accounted(device, &v, found);
    check_conflicts(caps, device, &v, found);
    check_routes(caps, device, (&answers, &d, &v), row, asks, found);
}

#[test]
fn advice_never_contradicts_itself_over_every_device_the_questions_describe() {
    let caps = caps();
    let start = Instant::now();
    let devices = the_whole_space(&caps);
    let rows = by_batch(&caps, &devices);
    // The devices split between the cores: the engine is pure, each thread checks its share.
    let threads = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(1, 4);
    let share = devices.len().div_ceil(threads);
    let found: Vec<Violations> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (caps, devices, rows) = (&caps, &devices, &rows);
                scope.spawn(move || {
                    let mut found = Violations::default();
                    let (mut tables, mut asks) = (Tables::default(), Asks::default());
                    let range = t * share..((t + 1) * share).min(devices.len());
                    for i in range {
                        found.device = i;
                        check(
                            caps,
                            &devices[i],
                            rows[i].as_ref(),
                            (&mut tables, &mut asks),
                            &mut found,
                        );
                    }
                    found
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a checking thread"))
            .collect()
    });
    let mut all = Violations::default();
    for part in found {
        for (invariant, f) in part.found {
            let entry = all.found.entry(invariant).or_default();
            entry.violations += f.violations;
            entry.devices.extend(f.devices);
            entry.examples.extend(
                f.examples
                    .into_iter()
                    .take(3usize.saturating_sub(entry.examples.len())),
            );
        }
    }
    let took = start.elapsed();
    let spread = need_spread(&caps).len();
    let mut report = format!(
        "{} devices ({} answer combinations x {spread} sets of needs) in {:.2} s on {threads} threads\n",
        devices.len(),
        devices.len() / spread,
        took.as_secs_f64()
    );
    for (invariant, f) in &all.found {
        let answered = f
            .devices
            .iter()
            .filter(|i| devices[**i].given.len() == caps.questions.len())
            .count();
        report.push_str(&format!(
            "{:6} devices ({} with every question answered; {} violations): {invariant}\n",
            f.devices.len(),
            answered,
            f.violations
        ));
        for e in &f.examples {
            report.push_str(&format!("         e.g. {e}\n"));
        }
    }
    eprintln!("{report}");
    assert!(all.found.is_empty(), "{report}");
}

/// How people write answers, and the value each one means.
const TYPED: &[(&str, &str, &str)] = &[
    ("network", "TCP", "tcp"),
    ("network", " Udp ", "udp"),
    ("network", "TCP only", "tcp"),
    ("enos_format", "Y", "yes"),
    ("enos_format", "true", "yes"),
    ("enos_format", "1", "yes"),
    ("enos_format", "n", "no"),
    ("enos_format", "FALSE", "no"),
    ("enos_format", "0", "no"),
    ("enos_version", "2.x", "2"),
    ("enos_version", "2.X", "2"),
    ("enos_version", "EnOS 2", "2"),
    ("enos_version", "enos  2.x", "2"),
    ("enos_version", "3.0", "3"),
    ("enos_version", "EnOS 3.x", "3"),
    ("constrained", "YES", "yes"),
    ("long_connection", "No", "no"),
];

#[test]
fn values_are_read_as_people_type_them_in_flags_files_and_batch_rows() {
    let caps = caps();
    for (q, typed, meant) in TYPED {
        let mut a = Answers::default();
        a.apply_flags(&caps, &[format!("{q}={typed}")], &[])
            .unwrap_or_else(|e| panic!("-a {q}={typed}: {e}"));
        assert_eq!(
            a.values.get(*q).map(String::as_str),
            Some(*meant),
            "-a {q}={typed}"
        );
        let file = format!("{q} = \"{typed}\"\n");
        let a = Answers::parse(&caps, &SourceFile::new("a.toml", file.as_str()))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(a.values.get(*q).map(String::as_str), Some(*meant), "{file}");
    }
    // A batch row gives the same result written either way.
    let header = "id,network,enos_format,enos_version,constrained,long_connection,needs\n";
    let typed = "a,TCP,Y,EnOS 2,YES,No,OTA;File_Upload\nb, udp ,true,2.X,1,0,report_data\n";
    let plain = "a,tcp,yes,2,yes,no,ota;file_upload\nb,udp,yes,2,yes,no,report_data\n";
    let run = |rows: &str| {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        batch::run(
            &caps,
            "t.csv",
            &mut format!("{header}{rows}").as_bytes(),
            &mut out,
            &mut |m| bad.push(m),
            BatchFormat::Jsonl,
            Shard::ALL,
        )
        .expect("runs");
        assert!(bad.is_empty(), "{bad:?}");
        String::from_utf8(out).expect("utf-8")
    };
    assert_eq!(run(typed), run(plain));
    // TOML's own booleans and numbers mean the same.
    let a = Answers::parse(
        &caps,
        &SourceFile::new(
            "b.toml",
            "enos_format = true\nenos_version = 3.0\nconstrained = 1\n",
        ),
    )
    .expect("parses");
    let values: Vec<(&str, &str)> = a.values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        values,
        [
            ("constrained", "yes"),
            ("enos_format", "yes"),
            ("enos_version", "3")
        ]
    );
}

#[test]
fn a_wrong_value_is_still_refused_with_did_you_mean() {
    let caps = caps();
    for (flag, hint) in [
        ("network=tpc", "did you mean `tcp`"),
        ("network=TPC", "did you mean `tcp`"),
        ("enos_format=yess", "did you mean `yes`"),
        ("enos_version=4.x", "`enos_version` takes one of 2, 3"),
    ] {
        let err = Answers::default()
            .apply_flags(&caps, &[flag.to_string()], &[])
            .expect_err(flag);
        let shown = format!(
            "{err}; {}",
            enos_connect::base::Help::help(&err).unwrap_or_default()
        );
        assert!(shown.contains(hint), "{flag}: {shown}");
    }
    // An unknown key of an answers file suggests the nearest key, `needs` included.
    let err = Answers::parse(
        &caps,
        &SourceFile::new("c.toml", "network = \"tcp\"\nneed = [\"ota\"]\n"),
    )
    .expect_err("need is not a key");
    assert!(
        err.to_string().starts_with("c.toml:2:1:") && err.to_string().contains("did you mean `needs`"),
        "{err}"
    );
    // The same rule for a batch row and its header.
    let mut out = Vec::new();
    let mut bad = Vec::new();
    batch::run(
        &caps,
        "t.csv",
        &mut "network,enos_format,enos_version\nTPC,yes,2\n".as_bytes(),
        &mut out,
        &mut |m| bad.push(m),
        BatchFormat::Jsonl,
        Shard::ALL,
    )
    .expect("runs");
    assert!(bad.len() == 1 && bad[0].contains("did you mean `tcp`"), "{bad:?}");
    let err = batch::run(
        &caps,
        "t.csv",
        &mut "network,need\n".as_bytes(),
        &mut out,
        &mut |_| {},
        BatchFormat::Jsonl,
        Shard::ALL,
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("did you mean `needs`"), "{err}");
}

/// Reasons, caveats, hints and the decision path wrap between words: at the terminal's width,
/// and at 100 columns when piped; nothing is cut, and only the table is laid out in columns.
#[test]
fn free_text_wraps_at_word_boundaries_to_the_width() {
    let caps = caps();
    let mut a = Answers::default();
    a.apply_flags(
        &caps,
        &[
            "network=udp".into(),
            "enos_format=yes".into(),
            "enos_version=2".into(),
            "third_party_cloud=yes".into(),
        ],
        &["report_data".into(), "ota".into()],
    )
    .expect("valid");
    let d = engine::decide(&caps, &a).expect("decides");
    let long = d
        .hints
        .iter()
        .chain(&d.set_aside.iter().map(|s| s.why.clone()).collect::<Vec<_>>())
        .any(|h| h.len() > 100);
    assert!(
        long,
        "the test needs a sentence longer than a line: {:?}",
        d.hints
    );
    for (style, width) in [
        (Style::default(), 100),
        (
            Style {
                terminal: true,
                color: false,
                width: 60,
            },
            60,
        ),
    ] {
        let text = Format::Table.renderer(style).decision(&caps, &d);
        let free: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with(['┌', '│', '└', '╞', '├']))
            .collect();
        for line in &free {
            assert!(line.chars().count() <= width, "{width}: `{line}` in\n{text}");
        }
        // Every word is still there, in order: wrapped, not cut.
        let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let flat = words(&free.join(" "));
        for sentence in d.reasons.iter().chain(&d.hints) {
            let w = words(sentence);
            assert!(
                flat.windows(w.len()).any(|x| x == w.as_slice()),
                "{width}: `{sentence}` is not whole in\n{text}"
            );
        }
        // Later lines of an item are indented under its text.
        assert!(
            free.iter()
                .any(|l| l.starts_with("    ") && !l.trim_start().starts_with('-')),
            "{text}"
        );
    }
}

/// `check` validates the caveat rules and the choices' spellings, every problem at once with
/// its line: an unknown question, an answer the question does not take, a need the protocol
/// does not carry, a question without a default, and an alias that names two choices.
#[test]
fn check_validates_the_caveat_rules_and_aliases() {
    use enos_connect::capabilities::{EMBEDDED, parse};
    let broken = EMBEDDED
        .replacen("question = \"long_connection\"\nanswer = \"no\"", "question = \"long_conection\"\nanswer = \"no\"", 1)
        .replacen("needs = [\"ota\"]\nwhy", "needs = [\"file_upload\"]\nwhy", 1)
        .replacen("question = \"constrained\"\nanswer = \"yes\"\nprotocol = \"http\"", "question = \"constrained\"\nanswer = \"maybe\"\nprotocol = \"http\"", 1)
        .replacen("aliases = [\"3.x\"", "aliases = [\"2.x\", \"3.x\"", 1)
        .replacen("default = \"no\"\nchoices = [\n  { value = \"yes\", label = \"Yes\" },\n  { value = \"no\", label = \"No\" },\n]\n\n[[questions]]\nid = \"long_connection\"", "choices = [\n  { value = \"yes\", label = \"Yes\" },\n  { value = \"no\", label = \"No\" },\n]\n\n[[questions]]\nid = \"long_connection\"", 1);
    assert_ne!(broken, EMBEDDED);
    let err = parse(&SourceFile::new("c.toml", broken.as_str()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    for expected in [
        "caveat names unknown question `long_conection`",
        "caveat about `file_upload` over `mqtt` never applies",
        "caveat tests `constrained` = `maybe`",
        "caveat question `constrained` has no default",
        "`2.x` names both `2` and `3`",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    assert!(err.contains("c.toml:"), "{err}");
}

/// A batch row works out what a row's answers decide once and what its needs add from small
/// tables; every row must still be what `recommend` says for that device. Every answer
/// combination with random sets of needs of any size (not only the spread above).
#[test]
fn batch_rows_match_recommend_for_random_sets_of_needs() {
    let caps = caps();
    let combos: Vec<Device> = the_whole_space(&caps)
        .into_iter()
        .filter(|d| d.needs.is_empty())
        .collect();
    let ids: Vec<String> = caps.feature_ids().map(str::to_string).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut devices = Vec::new();
    for combo in &combos {
        for _ in 0..16 {
            // xorshift: a fixed sequence, so a failure repeats.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let needs = ids
                .iter()
                .enumerate()
                .filter(|(i, _)| seed >> i & 1 == 1)
                .map(|(_, f)| f.clone())
                .collect();
            devices.push(Device {
                given: combo.given.clone(),
                needs,
            });
        }
    }
    let rows = by_batch(&caps, &devices);
    let mut differ = Vec::new();
    for (device, row) in devices.iter().zip(&rows) {
        let d = decision_of(&caps, device);
        let caveats: Vec<Value> = d
            .caveats
            .iter()
            .map(|c| serde_json::json!({"need": c.need, "protocol": c.protocol, "question": c.question, "answer": c.answer}))
            .collect();
        let aside: Vec<Value> = d
            .set_aside
            .iter()
            .map(|a| serde_json::json!({"question": a.question, "value": a.value}))
            .collect();
        let expected = serde_json::json!({
            "recommendation": d.recommendation, "protocols": d.protocols, "unmet": d.unmet,
            "caveats": caveats, "set_aside": aside,
        });
        let got = row.as_ref().map(|r| {
            serde_json::json!({
                "recommendation": r["recommendation"], "protocols": r["protocols"], "unmet": r["unmet"],
                "caveats": r["caveats"], "set_aside": r["set_aside"],
            })
        });
        if got.as_ref() != Some(&expected) {
            differ.push(format!("{device:?}: batch {got:?}, recommend {expected}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} rows differ, e.g. {:?}",
        differ.len(),
        devices.len(),
        &differ[..differ.len().min(3)]
    );
}

fn decision_of(caps: &Capabilities, device: &Device) -> engine::Decision {
    by_flags(caps, device).1
}
