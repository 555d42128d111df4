//! The questionnaire's loop, apart from the terminal: ask what the walk says is pending, one
//! item at a time, until the flow reaches an outcome. `ask` and `recommend` run it with
//! dialoguer's prompts (`cli/questionnaire.rs`); the tests run it with a device's answers.

use crate::answers::{Answers, AnswersError};
use crate::capabilities::{Capabilities, Question};

use super::{End, EngineError, Pending, walk};

/// Whoever answers the questionnaire: a person at a terminal, or a script.
pub trait Prompt {
    type Error: From<EngineError> + From<AnswersError>;
    /// The value (or any spelling of it) for one question.
    fn question(&mut self, q: &Question) -> Result<String, Self::Error>;
    /// The features the device needs.
    fn needs(&mut self, caps: &Capabilities) -> Result<Vec<String>, Self::Error>;
}

/// What the questionnaire did: the questions it asked and whether it asked for the needs.
#[derive(Debug, Default)]
pub struct Asked {
    pub questions: Vec<String>,
    pub needs: bool,
}

impl Asked {
    /// The question ids (and `needs`) never asked and not answered otherwise: they could not
    /// change the outcome.
    pub fn skipped(&self, caps: &Capabilities, answers: &Answers) -> Vec<String> {
        let mut skipped: Vec<String> = caps
            .question_ids()
            .filter(|q| !self.questions.iter().any(|a| a == q) && !answers.values.contains_key(*q))
            .map(str::to_string)
            .collect();
        if !self.needs && answers.needs.is_none() {
            skipped.push("needs".into());
        }
        skipped
    }
}

/// Ask until the engine can decide. With `use_defaults`, only questions without a default are
/// asked (filling in what `recommend` is missing); without, every question the flow reaches
/// is asked, and the needs on every path, and the questions of the caveats that could apply
/// to what the flow chose.
pub fn interview<P: Prompt>(
    caps: &Capabilities,
    answers: &mut Answers,
    use_defaults: bool,
    prompt: &mut P,
) -> Result<Asked, P::Error> {
    let mut asked = Asked::default();
    // Each round answers one pending item; the flow has finitely many, so this ends.
    for _ in 0..=caps.questions.len() + 1 {
        match walk(caps, answers, use_defaults)?.end {
            End::Outcome(_) => return Ok(asked),
            End::Pending(Pending::Question(id)) => {
                let q = caps
                    .question(&id)
                    .ok_or_else(|| EngineError::Stuck(id.clone(), "an unknown question".into()))?;
                let value = prompt.question(q)?;
                answers.set(caps, &id, &value, "prompt")?;
                asked.questions.push(id);
            }
            End::Pending(Pending::Needs) => {
                let needs = prompt.needs(caps)?;
                answers.needs = Some(Vec::new());
                answers.add_needs(caps, needs.iter().map(String::as_str), "prompt")?;
                asked.needs = true;
            }
        }
    }
    Err(EngineError::Stuck("questionnaire".into(), "every pending answer".into()).into())
}
