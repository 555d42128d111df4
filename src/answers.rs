//! A device's answers: question values and needed features, from flags (`--answer ID=VALUE`,
//! `--need FEATURE`) or an answers file, checked against the capabilities with suggestions.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use toml::Spanned;

use crate::capabilities::Capabilities;
use crate::source::{Located, SourceFile, nearest};

/// Answers to the questions, keyed by question id, and the needed features.
/// `needs == None` means the needs were not answered at all (as opposed to "nothing needed").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Answers {
    pub values: BTreeMap<String, String>,
    pub needs: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnswersError {
    #[error("{flag}: {}", self.what())]
    UnknownQuestion {
        flag: String,
        id: String,
        hint: Hint,
        known: String,
    },
    #[error("{flag}: {}", self.what())]
    BadValue {
        flag: String,
        id: String,
        value: String,
        hint: Hint,
        allowed: String,
    },
    #[error("{flag}: {}", self.what())]
    UnknownFeature {
        flag: String,
        id: String,
        hint: Hint,
        known: String,
    },
    #[error("{flag}: `{text}` is not of the form ID=VALUE")]
    Malformed { flag: String, text: String },
    #[error("{flag}: `{id}` is answered twice, `{first}` and `{second}`")]
    Twice {
        flag: String,
        id: String,
        first: String,
        second: String,
    },
    #[error("{0}")]
    File(Located),
    /// Every problem of an answers file, when it has more than one.
    #[error("{file}: {count} problem(s) in the answers:\n{list}", count = .problems.len(), list = crate::source::bullet_list(.problems))]
    Invalid { file: String, problems: Vec<Located> },
    #[error("cannot read answers file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl AnswersError {
    /// What is wrong, without where it came from (a flag, or a key in a file).
    fn what(&self) -> String {
        match self {
            AnswersError::UnknownQuestion { id, hint, .. } => format!("unknown question `{id}`{hint}"),
            AnswersError::BadValue { id, value, hint, .. } => {
                format!("`{value}` is not an answer to `{id}`{hint}")
            }
            AnswersError::UnknownFeature { id, hint, .. } => format!("unknown feature `{id}`{hint}"),
            other => other.to_string(),
        }
    }
}

impl crate::base::Help for AnswersError {
    fn help(&self) -> Option<String> {
        match self {
            AnswersError::UnknownQuestion { known, .. } => Some(format!(
                "the questions are {known}; `enos-connect questions` lists them with their values"
            )),
            AnswersError::BadValue { id, allowed, .. } => Some(format!("`{id}` takes one of {allowed}")),
            AnswersError::UnknownFeature { known, .. } => Some(format!("the features are {known}")),
            AnswersError::Malformed { .. } => Some("for example --answer network=tcp".into()),
            AnswersError::Twice { id, .. } => Some(format!("give `{id}` once: a question has one answer")),
            AnswersError::Read { .. } => Some("check the path given with --answers".into()),
            // A located error renders its own help after the snippet.
            AnswersError::File(_) | AnswersError::Invalid { .. } => None,
        }
    }
}

/// " (did you mean `x`?)", or nothing.
#[derive(Debug, Clone, Default)]
pub struct Hint(Option<String>);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(s) => write!(f, " (did you mean `{s}`?)"),
            None => Ok(()),
        }
    }
}

fn hint<'a>(input: &str, allowed: impl IntoIterator<Item = &'a str>) -> Hint {
    let allowed: Vec<&str> = allowed.into_iter().collect();
    let short = input.trim().to_ascii_lowercase();
    // `y` for `yes`, `3.0` for `3`: too short or too different for an edit distance.
    let prefix = || {
        let mut starting = allowed
            .iter()
            .filter(|v| !short.is_empty() && v.starts_with(short.as_str()));
        match (starting.next(), starting.next()) {
            (Some(one), None) => Some(*one),
            _ => None,
        }
    };
    let number = || {
        let n: f64 = short.parse().ok()?;
        allowed.iter().copied().find(|v| v.parse::<f64>().ok() == Some(n))
    };
    Hint(
        nearest(input, allowed.iter().copied())
            .or_else(prefix)
            .or_else(number)
            .map(str::to_string),
    )
}

/// One rule for every source of answers (flags, files, batch rows, prompts): the choice a
/// value names by its value, label or alias, without regard to case, and for a yes/no question
/// also true/false, y/n and 1/0 (see [`crate::capabilities::Question::choice_for`]). The value
/// as given when it names no choice.
pub fn canonical<'a>(q: &'a crate::capabilities::Question, value: &'a str) -> &'a str {
    q.choice_for(value).map_or(value, |c| c.value.as_str())
}

/// `key = word` on the line of a TOML syntax error, where the word is not a TOML value (`tcp`,
/// `yes`): the key and the word, for a help that says to quote it.
fn bare_word_value(src: &SourceFile, span: Option<std::ops::Range<usize>>) -> Option<(String, String)> {
    let (line, _) = src.line_col(span?.start);
    let text = src.text.lines().nth(line - 1)?;
    let (key, value) = text.split_once('=')?;
    let (key, value) = (key.trim(), value.split('#').next().unwrap_or_default().trim());
    let word = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && value.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && !matches!(value, "true" | "false" | "inf" | "nan");
    (word && !key.is_empty()).then(|| (key.to_string(), value.to_string()))
}

impl Answers {
    pub fn need_list(&self) -> &[String] {
        self.needs.as_deref().unwrap_or(&[])
    }

    /// Set one answer after checking the question and value exist; `flag` says where it came from.
    pub fn set(
        &mut self,
        caps: &Capabilities,
        id: &str,
        value: &str,
        flag: &str,
    ) -> Result<(), AnswersError> {
        let q = caps.question(id).ok_or_else(|| AnswersError::UnknownQuestion {
            flag: flag.to_string(),
            id: id.to_string(),
            hint: hint(id, caps.question_ids()),
            known: caps.question_ids().collect::<Vec<_>>().join(", "),
        })?;
        let value = value.trim();
        let Some(choice) = q.choice_for(value) else {
            return Err(AnswersError::BadValue {
                flag: flag.to_string(),
                id: id.to_string(),
                value: value.to_string(),
                hint: hint(value, q.values()),
                allowed: q.values().collect::<Vec<_>>().join(", "),
            });
        };
        self.values.insert(id.to_string(), choice.value.clone());
        Ok(())
    }

    /// Add needed features; each item may hold several ids separated by commas or `;`.
    pub fn add_needs<'a>(
        &mut self,
        caps: &Capabilities,
        items: impl IntoIterator<Item = &'a str>,
        flag: &str,
    ) -> Result<(), AnswersError> {
        let needs = self.needs.get_or_insert_with(Vec::new);
        for id in items.into_iter().flat_map(|s| s.split([',', ';'])).map(str::trim) {
            if id.is_empty() {
                continue;
            }
            // `OTA` for `ota`: feature ids are matched without regard to case too.
            let lower;
            let id = match (caps.feature(id), crate::capabilities::normalize(id)) {
                (None, Some(norm)) if caps.feature(&norm).is_some() => {
                    lower = norm;
                    lower.as_str()
                }
                _ => id,
            };
            if caps.feature(id).is_none() {
                return Err(AnswersError::UnknownFeature {
                    flag: flag.to_string(),
                    id: id.to_string(),
                    hint: hint(id, caps.feature_ids()),
                    known: caps.feature_ids().collect::<Vec<_>>().join(", "),
                });
            }
            if !needs.iter().any(|n| n == id) {
                needs.push(id.to_string());
            }
        }
        Ok(())
    }

    /// Apply `--answer ID=VALUE` and `--need` flags.
    pub fn apply_flags(
        &mut self,
        caps: &Capabilities,
        answers: &[String],
        needs: &[String],
    ) -> Result<(), AnswersError> {
        self.apply_flags_from(caps, answers, needs, "--answer", "--need")
    }

    /// [`Answers::apply_flags`], naming where the values came from in errors (`--answer`, or
    /// `ENOS_CONNECT_ANSWER (--answer)` when the environment gave them).
    pub fn apply_flags_from(
        &mut self,
        caps: &Capabilities,
        answers: &[String],
        needs: &[String],
        answer_source: &str,
        need_source: &str,
    ) -> Result<(), AnswersError> {
        let mut given: BTreeMap<&str, &str> = BTreeMap::new();
        for a in answers {
            let (id, value) = a.split_once('=').ok_or_else(|| AnswersError::Malformed {
                flag: answer_source.to_string(),
                text: a.clone(),
            })?;
            let (id, value) = (id.trim(), value.trim());
            let flag = format!("{answer_source} {a}");
            self.set(caps, id, value, &flag)?;
            // The same question answered twice on the command line is a mistake to say, not
            // a silent "last one wins".
            match given.insert(id, value) {
                Some(first)
                    if self.values.get(id).map(String::as_str)
                        != caps.question(id).map(|q| canonical(q, first)) =>
                {
                    return Err(AnswersError::Twice {
                        flag: answer_source.to_string(),
                        id: id.to_string(),
                        first: first.to_string(),
                        second: value.to_string(),
                    });
                }
                _ => {}
            }
        }
        if !needs.is_empty() {
            // Flags win over the file: --need replaces the file's needs rather than adding to them.
            self.needs = None;
            self.add_needs(caps, needs.iter().map(String::as_str), need_source)?;
        }
        Ok(())
    }

    pub fn from_file(caps: &Capabilities, path: &Path) -> Result<Self, AnswersError> {
        let text = std::fs::read_to_string(path).map_err(|source| AnswersError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(caps, &SourceFile::new(path.display().to_string(), text))
    }

    /// Parse an answers file: question ids as keys (strings, integers or booleans) and
    /// `needs = [...]`. Every error points at the key or value with `file:line:col`.
    pub fn parse(caps: &Capabilities, src: &SourceFile) -> Result<Self, AnswersError> {
        type Doc = BTreeMap<Spanned<String>, Spanned<toml::Value>>;
        let doc: Doc = toml::from_str(&src.text).map_err(|e| {
            let located = src.locate(e.span(), e.message());
            AnswersError::File(match bare_word_value(src, e.span()) {
                Some((key, word)) => {
                    located.with_help(format!("a value that is a word needs quotes: {key} = \"{word}\""))
                }
                None => located,
            })
        })?;
        let mut answers = Answers::default();
        // Every problem of the file is reported in one run, in the file's order.
        let mut problems = Vec::new();
        for (key, value) in &doc {
            if let Err(p) = answers.read_entry(caps, src, key, value) {
                problems.push(p);
            }
        }
        problems.sort_by_key(|p| (p.line, p.col));
        match problems.len() {
            0 => Ok(answers),
            1 => Err(AnswersError::File(problems.remove(0))),
            _ => Err(AnswersError::Invalid {
                file: src.name.clone(),
                problems,
            }),
        }
    }

    /// One key of an answers file: a question's answer, or `needs`; a problem located.
    fn read_entry(
        &mut self,
        caps: &Capabilities,
        src: &SourceFile,
        key: &Spanned<String>,
        value: &Spanned<toml::Value>,
    ) -> Result<(), Located> {
        // A flag-style error re-homed onto the file position: the key is the "flag".
        let at = |span: std::ops::Range<usize>, e: AnswersError| {
            use crate::base::Help;
            let mut located = src.locate(Some(span), e.what());
            located.help = e.help();
            located
        };
        if key.get_ref() == "needs" {
            let toml::Value::Array(items) = value.get_ref() else {
                return Err(src.locate(
                    Some(value.span()),
                    "`needs` must be an array of feature ids, for example needs = [\"ota\"]",
                ));
            };
            let mut ids = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(s) => ids.push(s),
                    None => {
                        return Err(
                            src.locate(Some(value.span()), "`needs` may only hold strings (feature ids)")
                        );
                    }
                }
            }
            return self
                .add_needs(caps, ids, "needs")
                .map_err(|e| at(value.span(), e));
        }
        if caps.question(key.get_ref()).is_none() {
            // `need` for `needs` is the likeliest slip in a file: suggest among both.
            let e = AnswersError::UnknownQuestion {
                flag: key.get_ref().clone(),
                id: key.get_ref().clone(),
                hint: hint(key.get_ref(), caps.question_ids().chain(["needs"])),
                known: format!(
                    "{} (and `needs`)",
                    caps.question_ids().collect::<Vec<_>>().join(", ")
                ),
            };
            return Err(at(key.span(), e));
        }
        let text = match value.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => if *b { "yes" } else { "no" }.to_string(),
            // `enos_version = 3.0` reads as the text 3, a version's own alias.
            toml::Value::Float(f) => f.to_string(),
            other => {
                return Err(src.locate(
                    Some(value.span()),
                    format!("`{}` must be a string, not {}", key.get_ref(), other.type_str()),
                ));
            }
        };
        let span = value.span();
        self.set(caps, key.get_ref(), &text, key.get_ref())
            .map_err(|e| at(span, e))
    }

    /// The answers as an answers file that `recommend --answers` replays.
    pub fn to_toml(&self, caps: &Capabilities) -> String {
        // The directive Taplo and Even Better TOML read; the schema beside the file is
        // `enos-connect schema answers > answers.schema.json`.
        let mut out = String::from(
            "#:schema ./answers.schema.json\n\
             # enos-connect answers: replay with `enos-connect recommend --answers FILE`\n\
             # (the schema above: enos-connect schema answers > answers.schema.json)\n",
        );
        for q in &caps.questions {
            if let Some(v) = self.values.get(&q.id) {
                out.push_str(&format!("{} = {}\n", q.id, toml_string(v)));
            }
        }
        if let Some(needs) = &self.needs {
            let items: Vec<String> = needs.iter().map(|n| toml_string(n)).collect();
            out.push_str(&format!("needs = [{}]\n", items.join(", ")));
        }
        out
    }
}

fn toml_string(s: &str) -> String {
    // serde_json's string escaping is valid TOML basic-string escaping.
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::embedded;

    fn caps() -> Capabilities {
        embedded().expect("embedded capabilities are valid")
    }

    #[test]
    fn flags_suggest_the_nearest_question_and_value() {
        let caps = caps();
        let mut a = Answers::default();
        let err = a
            .apply_flags(&caps, &["netwrok=tcp".into()], &[])
            .expect_err("unknown id");
        assert!(err.to_string().contains("did you mean `network`"), "{err}");
        let err = a
            .apply_flags(&caps, &["network=tpc".into()], &[])
            .expect_err("bad value");
        assert!(err.to_string().contains("did you mean `tcp`"), "{err}");
        let err = a.apply_flags(&caps, &[], &["otaa".into()]).expect_err("bad need");
        assert!(err.to_string().contains("did you mean `ota`"), "{err}");
    }

    #[test]
    fn file_errors_point_at_line_and_column() {
        let caps = caps();
        let src = SourceFile::new("a.toml", "network = \"tcp\"\nenos_version = 4\n");
        let err = Answers::parse(&caps, &src).expect_err("bad version");
        assert!(err.to_string().starts_with("a.toml:2:16:"), "{err}");
    }

    #[test]
    fn round_trips_through_toml() {
        let caps = caps();
        let mut a = Answers::default();
        a.apply_flags(
            &caps,
            &["network=udp".into(), "enos_version=2".into()],
            &["report_data".into()],
        )
        .expect("valid");
        let text = a.to_toml(&caps);
        assert!(text.starts_with("#:schema ./answers.schema.json\n"), "{text}");
        let back = Answers::parse(&caps, &SourceFile::new("x", text)).expect("parses");
        assert_eq!(a, back);
    }
}
