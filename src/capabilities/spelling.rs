//! How people write answers: a question's choices by value, label or alias, without regard
//! to case, and the words a yes/no question also takes. One rule for every source of answers
//! (flags, files, batch rows, prompts).

use super::{Choice, Question};

/// The words a yes/no question also takes for `yes` and for `no`, from any source of answers.
pub const YES_WORDS: [&str; 3] = ["true", "y", "1"];
pub const NO_WORDS: [&str; 3] = ["false", "n", "0"];

/// How an answer is compared: trimmed, ASCII lower case, inner runs of white space as one
/// space. `None` when it is already in that form, so the common case allocates nothing.
pub fn normalize(text: &str) -> Option<String> {
    let t = text.trim();
    let plain = t.len() == text.len()
        && !t.bytes().any(|b| b.is_ascii_uppercase())
        && !t.contains(|c: char| c.is_whitespace() && c != ' ')
        && !t.contains("  ");
    if plain {
        return None;
    }
    let mut out = String::with_capacity(t.len());
    for word in t.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_ascii_lowercase());
    }
    Some(out)
}

impl Question {
    /// Whether the question's values are exactly yes and no.
    pub fn is_yes_no(&self) -> bool {
        self.choices.len() == 2 && self.values().any(|v| v == "yes") && self.values().any(|v| v == "no")
    }

    /// Every spelling the question accepts, normalized (see [`normalize`]), with the index of
    /// its choice: each value, label and alias, and the yes/no words. The one rule every
    /// source of answers (flags, files, batch rows, prompts) reads values by.
    pub fn spellings(&self) -> Vec<(String, usize)> {
        let norm = |s: &str| normalize(s).unwrap_or_else(|| s.to_string());
        let mut out: Vec<(String, usize)> = Vec::new();
        let mut add = |s: String, i: usize| {
            if !out.iter().any(|(x, _)| *x == s) {
                out.push((s, i));
            }
        };
        for (i, c) in self.choices.iter().enumerate() {
            add(norm(&c.value), i);
        }
        for (i, c) in self.choices.iter().enumerate() {
            add(norm(&c.label), i);
            for a in &c.aliases {
                add(norm(a), i);
            }
        }
        if self.is_yes_no() {
            for (i, c) in self.choices.iter().enumerate() {
                let words = if c.value == "yes" { YES_WORDS } else { NO_WORDS };
                for w in words {
                    add(w.to_string(), i);
                }
            }
        }
        out
    }

    /// The choice `text` names, by value, label or alias, without regard to case.
    pub fn choice_for(&self, text: &str) -> Option<&Choice> {
        let exact = self.choices.iter().find(|c| c.value == text);
        if exact.is_some() {
            return exact;
        }
        let norm = normalize(text);
        let key = norm.as_deref().unwrap_or(text);
        self.spellings()
            .into_iter()
            .find(|(s, _)| s == key)
            .and_then(|(_, i)| self.choices.get(i))
    }
}
