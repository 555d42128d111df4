#![no_main]
//! "Passes check but panics" cannot come back: any capabilities file the validator accepts is
//! walked by the engine with answers chosen by the input, with and without defaults, and the
//! decision is planned. Input: capabilities TOML, then optionally a NUL byte and answer bytes.
use enos_connect::answers::Answers;
use enos_connect::capabilities::parse;
use enos_connect::source_text::SourceFile;
use enos_connect::{engine, plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, selector) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let Ok(caps) = parse(&SourceFile::new("fuzz.toml", text)) else { return };
    let pick = |i: usize| selector.get(i).copied().unwrap_or(i as u8);
    let mut answers = Answers::default();
    for (i, q) in caps.questions.iter().enumerate() {
        let values: Vec<&str> = q.values().collect();
        let choice = usize::from(pick(i)) % (values.len() + 1);
        if let Some(v) = values.get(choice) {
            answers.values.insert(q.id.clone(), v.to_string());
        }
    }
    let needs_from = caps.questions.len();
    if pick(needs_from) % 4 != 0 {
        let needs = caps
            .features
            .iter()
            .enumerate()
            .filter(|(i, _)| pick(needs_from + 1 + i / 8) & (1 << (i % 8)) != 0)
            .map(|(_, f)| f.id.clone())
            .collect();
        answers.needs = Some(needs);
    }
    let _ = engine::walk(&caps, &answers, false);
    let _ = engine::missing(&caps, &answers);
    if let Ok(decision) = engine::decide(&caps, &answers) {
        let deployment = plan::Deployment {
            env: Some("eu2".into()),
            domain: plan::DEFAULT_DOMAIN.into(),
            ..Default::default()
        };
        let _ = plan::plan(&caps, &decision, &deployment);
    }
});
