//! Source text with positions: turns byte offsets from the TOML parser into `file:line:col`
//! and a one-line snippet with a caret, so every input error says exactly where it is.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// A named text that errors can point into.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// How much of the line a snippet shows, in characters before and after the column.
const SNIPPET_BEFORE: usize = 40;
const SNIPPET_AFTER: usize = 80;

/// A position in a [`SourceFile`], already rendered for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
    snippet: String,
    pub help: Option<String>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    /// An error located at `span` (or at the top of the file when the parser gave none).
    pub fn locate(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Located {
        let span = span.unwrap_or(0..0);
        let (line, col) = self.line_col(span.start);
        let line_text = self.text.lines().nth(line - 1).unwrap_or("");
        let width = self.text[floor_char_boundary(&self.text, span.start.min(self.text.len()))
            ..floor_char_boundary(&self.text, span.end.min(self.text.len()))]
            .lines()
            .next()
            .map_or(1, |s| s.chars().count().max(1));
        let gutter = line.to_string().len();
        // A window of the line around the column: a one-line file of 300 MB must not be
        // echoed whole (it was, twice over in memory).
        let chars = line_text.chars().count();
        let first = (col - 1).saturating_sub(SNIPPET_BEFORE);
        let last = (col - 1).saturating_add(SNIPPET_AFTER).min(chars);
        let cut_before = if first > 0 { "…" } else { "" };
        let cut_after = if last < chars { "…" } else { "" };
        let shown: String = line_text.chars().skip(first).take(last - first).collect();
        let snippet = format!(
            "{pad} |\n{line} | {cut_before}{shown}{cut_after}\n{pad} | {space}{carets}",
            pad = " ".repeat(gutter),
            space = " ".repeat(col - 1 - first + cut_before.chars().count()),
            carets = "^".repeat(width.min(last.saturating_sub(col - 1)).max(1)),
        );
        Located {
            file: self.name.clone(),
            line,
            col,
            message: message.into(),
            snippet,
            help: None,
        }
    }
}

impl Located {
    /// Drop the quoted source line: for files that may hold a secret on the line in question.
    pub fn without_snippet(mut self) -> Self {
        self.snippet.clear();
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)?;
        if !self.snippet.is_empty() {
            write!(f, "\n{}", self.snippet)?;
        }
        if let Some(h) = &self.help {
            write!(f, "\n  = help: {h}")?;
        }
        Ok(())
    }
}

/// Located problems as a list, one `- file:line:col: message` item each.
pub fn bullet_list(problems: &[Located]) -> String {
    problems
        .iter()
        .map(|p| format!("- {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A step of the path to a value in a TOML document: a key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: Vec<PathSeg>,
    pub message: String,
}

impl From<&str> for PathSeg {
    fn from(s: &str) -> Self {
        PathSeg::Key(s.to_string())
    }
}
impl From<&String> for PathSeg {
    fn from(s: &String) -> Self {
        PathSeg::Key(s.clone())
    }
}
impl From<usize> for PathSeg {
    fn from(i: usize) -> Self {
        PathSeg::Index(i)
    }
}

/// Each problem located at the deepest value along its path that exists in the document.
pub fn locate_problems(src: &SourceFile, problems: &[Problem]) -> Vec<Located> {
    // The typed parse above succeeded, so the spanned parse succeeds too.
    let root = DeTable::parse(&src.text).ok();
    problems
        .iter()
        .map(|p| {
            let span = root
                .as_ref()
                .and_then(|t| span_of(t.get_ref(), &p.path, t.span()));
            src.locate(span, p.message.clone())
        })
        .collect()
}

/// The span of the deepest value along `path` that exists in the document.
fn span_of(table: &DeTable<'_>, path: &[PathSeg], outer: Range<usize>) -> Option<Range<usize>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(outer);
    };
    let PathSeg::Key(key) = first else {
        return Some(outer);
    };
    let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == key.as_str()) else {
        return Some(outer);
    };
    let here = if rest.is_empty() { k.span() } else { v.span() };
    Some(value_span(v.get_ref(), rest, here))
}

fn value_span(value: &DeValue<'_>, path: &[PathSeg], here: Range<usize>) -> Range<usize> {
    match (path.first(), value) {
        (None, _) => here,
        (Some(PathSeg::Key(_)), DeValue::Table(t)) => span_of(t, path, here.clone()).unwrap_or(here),
        (Some(PathSeg::Index(i)), DeValue::Array(a)) => match a.get(*i) {
            Some(item) => value_span(item.get_ref(), &path[1..], item.span()),
            None => here,
        },
        _ => here,
    }
}

/// After a strict read of `src` failed with `strict`, read it again leniently against
/// `schema` (its type's JSON Schema, as schemars writes it): every key the schema does not
/// know is a problem with "did you mean", and is left out, or read as the known key it
/// resembles when that one is absent, so that the rest of the file is read (and can then be
/// checked) in the same run. `Ok`: the value and those problems (none: the strict error was
/// not about a key, and is the one problem). `Err`: every problem, when the value still cannot
/// be read (the unknown keys and what the reader then said).
pub fn reread<T: serde::de::DeserializeOwned>(
    src: &SourceFile,
    schema: &serde_json::Value,
    strict: &toml::de::Error,
) -> Result<(T, Vec<Located>), Vec<Located>> {
    let located = |e: &toml::de::Error| src.locate(e.span(), e.message());
    let Ok(mut root) = DeTable::parse(&src.text) else {
        return Err(vec![located(strict)]);
    };
    let mut unknown = Vec::new();
    prune_table(root.get_mut(), schema, schema, &mut unknown);
    if unknown.is_empty() {
        return Err(vec![located(strict)]);
    }
    let mut problems: Vec<Located> = unknown
        .into_iter()
        .map(|(span, key, like)| {
            let hint = like
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            src.locate(Some(span), format!("unknown key `{key}`{hint}"))
        })
        .collect();
    match T::deserialize(toml::de::Deserializer::from(root)) {
        Ok(value) => Ok((value, problems)),
        Err(e) => {
            problems.push(located(&e));
            Err(problems)
        }
    }
}

/// A key the schema does not know: where, which, and the known key it resembles.
type Unknown = (Range<usize>, String, Option<String>);

/// `schema` with its `$ref` followed (`#/$defs/Name` of `root`).
fn resolve<'s>(schema: &'s serde_json::Value, root: &'s serde_json::Value) -> &'s serde_json::Value {
    let mut at = schema;
    for _ in 0..16 {
        let Some(name) = at
            .get("$ref")
            .and_then(|r| r.as_str())
            .and_then(|r| r.strip_prefix("#/$defs/"))
        else {
            break;
        };
        match root.get("$defs").and_then(|d| d.get(name)) {
            Some(next) => at = next,
            None => break,
        }
    }
    at
}

/// The keys a table schema names, and whether it refuses others.
fn keys_of(schema: &serde_json::Value) -> (Vec<&str>, bool) {
    let keys = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let closed = schema.get("additionalProperties") == Some(&serde_json::Value::Bool(false));
    (keys, closed)
}

/// The branch of `schema` (its `anyOf`/`oneOf`, or itself) that describes a table, the one
/// that knows most of `table`'s keys; or one that describes an array.
fn branch<'s>(
    schema: &'s serde_json::Value,
    root: &'s serde_json::Value,
    table: Option<&DeTable<'_>>,
) -> Option<&'s serde_json::Value> {
    let schema = resolve(schema, root);
    let branches: Vec<&serde_json::Value> = ["anyOf", "oneOf"]
        .iter()
        .filter_map(|k| schema.get(*k).and_then(|b| b.as_array()))
        .flatten()
        .map(|b| resolve(b, root))
        .collect();
    if branches.is_empty() {
        return Some(schema);
    }
    let is_table =
        |b: &&serde_json::Value| b.get("properties").is_some() || b.get("additionalProperties").is_some();
    match table {
        Some(t) => branches.into_iter().filter(is_table).min_by_key(|b| {
            let (keys, closed) = keys_of(b);
            let missing = t.keys().filter(|k| !keys.contains(&k.get_ref().as_ref())).count();
            if closed { missing } else { 0 }
        }),
        None => branches.into_iter().find(|b| b.get("items").is_some()),
    }
}

fn prune_value(
    value: &mut DeValue<'_>,
    schema: &serde_json::Value,
    root: &serde_json::Value,
    out: &mut Vec<Unknown>,
) {
    match value {
        DeValue::Table(t) => {
            if let Some(s) = branch(schema, root, Some(t)) {
                prune_table(t, s, root, out);
            }
        }
        DeValue::Array(items) => {
            if let Some(each) = branch(schema, root, None).and_then(|s| s.get("items")) {
                for item in items.iter_mut() {
                    prune_value(item.get_mut(), each, root, out);
                }
            }
        }
        _ => {}
    }
}

fn prune_table(
    table: &mut DeTable<'_>,
    schema: &serde_json::Value,
    root: &serde_json::Value,
    out: &mut Vec<Unknown>,
) {
    let schema = resolve(schema, root);
    let (keys, closed) = keys_of(schema);
    if closed {
        let strangers: Vec<String> = table
            .keys()
            .map(|k| k.get_ref().to_string())
            .filter(|k| !keys.contains(&k.as_str()))
            .collect();
        for name in strangers {
            let Some((key, value)) = table.remove_entry(name.as_str()) else {
                continue;
            };
            let like = nearest(&name, keys.iter().copied()).map(str::to_string);
            // Read as the key it resembles, when that one is absent: the rest of the table
            // is then checked as it was meant.
            if let Some(known) = like.as_deref().filter(|k| !table.contains_key(*k)) {
                table.insert(toml::Spanned::new(key.span(), known.to_string().into()), value);
            }
            out.push((key.span(), name, like));
        }
    }
    let more = schema.get("additionalProperties").filter(|a| a.is_object());
    let properties = schema.get("properties");
    for (key, value) in table.iter_mut() {
        let sub = properties.and_then(|p| p.get(key.get_ref().as_ref())).or(more);
        if let Some(sub) = sub {
            prune_value(value.get_mut(), sub, root, out);
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The allowed value closest to `input` by optimal string alignment distance (a swap of two
/// neighbours, `tpc` for `tcp`, costs one edit, as typos usually do), if it is close enough to
/// be a plausible typo.
pub fn nearest<'a>(input: &str, allowed: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let input = input.to_ascii_lowercase();
    allowed
        .into_iter()
        .map(|a| (strsim::osa_distance(&input, &a.to_ascii_lowercase()), a))
        .filter(|(d, a)| *d <= (a.len().max(input.len()) / 2).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let src = SourceFile::new("f.toml", "a = 1\nbé = \"x\"\n");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(6), (2, 1));
        let at = src.text.find('"').unwrap_or_default();
        assert_eq!(src.line_col(at), (2, 6));
    }

    #[test]
    fn located_renders_file_line_col_and_caret() {
        let src = SourceFile::new("f.toml", "x = 1\ntransport = big\n");
        let start = src.text.find("big").unwrap_or_default();
        let loc = src.locate(Some(start..start + 3), "bad value");
        let text = loc.to_string();
        assert!(text.starts_with("f.toml:2:13: bad value"), "{text}");
        assert!(text.contains("            ^^^"), "{text}");
    }

    #[test]
    fn a_long_line_is_shown_as_a_window_around_the_column() {
        let text = format!("x = \"{}\" y{}", "a".repeat(10_000), "b".repeat(10_000));
        let col_of_y = 5 + 10_000 + 3; // `x = "`, the a's, `" `, then y (1-based)
        let src = SourceFile::new("long.toml", text);
        let shown = src.locate(Some(col_of_y - 1..col_of_y), "unexpected").to_string();
        assert!(shown.len() < 400, "{} bytes: {shown}", shown.len());
        assert!(
            shown.starts_with(&format!("long.toml:1:{col_of_y}: unexpected")),
            "{shown}"
        );
        let lines: Vec<&str> = shown.lines().collect();
        // The caret stands under the `y`, past the cut marker.
        let code = lines[2].split_once("| ").map(|x| x.1).unwrap_or_default();
        let caret = lines[3].split_once("| ").map(|x| x.1).unwrap_or_default();
        assert!(code.starts_with('…') && code.ends_with('…'), "{code}");
        let at = caret.chars().position(|c| c == '^').unwrap_or(usize::MAX);
        assert_eq!(code.chars().nth(at), Some('y'), "{code}\n{caret}");
    }

    #[test]
    fn a_misspelled_key_is_a_problem_and_read_as_the_key_it_resembles() {
        #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            name: String,
            #[serde(default)]
            items: Vec<Item>,
        }
        #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        struct Item {
            id: u32,
        }
        let src = SourceFile::new("d.toml", "nmae = \"x\"\n[[items]]\nid = 1\nzzz = 2\n");
        let Err(strict) = toml::from_str::<Doc>(&src.text) else {
            panic!("the strict read takes no unknown key");
        };
        let schema = serde_json::to_value(schemars::schema_for!(Doc)).unwrap_or_default();
        let Ok((doc, problems)) = reread::<Doc>(&src, &schema, &strict) else {
            panic!("read again without the unknown keys");
        };
        let ids: Vec<u32> = doc.items.iter().map(|i| i.id).collect();
        assert_eq!((doc.name.as_str(), ids), ("x", vec![1]));
        let said: Vec<String> = problems
            .iter()
            .map(|p| format!("{}:{} {}", p.line, p.col, p.message))
            .collect();
        assert_eq!(
            said,
            [
                "1:1 unknown key `nmae` (did you mean `name`?)",
                "4:1 unknown key `zzz`"
            ]
        );
        // Not a key's fault: the strict error alone.
        let src = SourceFile::new("d.toml", "name = 3\n");
        let Err(strict) = toml::from_str::<Doc>(&src.text) else {
            panic!("a number is not a name");
        };
        let Err(alone) = reread::<Doc>(&src, &schema, &strict) else {
            panic!("still not readable");
        };
        assert_eq!(alone.len(), 1, "{alone:?}");
    }

    #[test]
    fn nearest_suggests_typos_only() {
        let ids = ["network", "enos_format", "constrained"];
        assert_eq!(nearest("netwrok", ids), Some("network"));
        assert_eq!(nearest("constraind", ids), Some("constrained"));
        assert_eq!(nearest("zzzzzzzzzzzzz", ids), None);
        assert_eq!(nearest("tpc", ["tcp", "udp", "both", "none"]), Some("tcp"));
    }
}
