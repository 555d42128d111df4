//! The walk: a pure traversal of the decision flow with a device's answers. It records each
//! node passed, the branch taken and the protocols still open, and stops at an outcome or at
//! the first answer it lacks. It writes no sentences: [`super::explain`] does that.

use crate::answers::Answers;
use crate::capabilities::{Capabilities, Node, NodeKind};

use super::{AnswerUsed, EngineError, Pending};

/// Where the walk ended and how it got there.
#[derive(Debug, Clone)]
pub struct Walk<'c> {
    pub visits: Vec<Visit<'c>>,
    pub end: End,
    /// Every answer the walk read, in the order it read them.
    pub answers: Vec<AnswerUsed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// An outcome node: `direct` or an outcome id.
    Outcome(String),
    /// The walk needs this before it can go on.
    Pending(Pending),
}

/// One node passed.
#[derive(Debug, Clone)]
pub struct Visit<'c> {
    pub node: &'c Node,
    /// The answer the node read: question id, value, and whether it was the default.
    pub answer: Option<(String, String, bool)>,
    /// The edge taken (an answer value, some/none, covered/partial, chosen) or the outcome.
    pub branch: String,
    /// Protocols still open after this node.
    pub open: Vec<String>,
    pub step: Step,
}

/// What a node did, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Asked,
    /// The protocols a filter dropped.
    Filtered {
        dropped: Vec<String>,
    },
    /// The needs looked at, the smallest protocol sets covering as many of them as any set
    /// can, and the needs no open protocol covers.
    Covered {
        needs: Vec<String>,
        options: Vec<Vec<String>>,
        unmet: Vec<String>,
    },
    /// The protocols chosen, the primary first, and the index of the prefer rule that chose
    /// (`None`: the only option, or the first in the capabilities order).
    Chose {
        protocols: Vec<String>,
        options: usize,
        rule: Option<usize>,
    },
    Outcome,
}

/// Walk the flow. With `use_defaults == false` the walk stops at the first question (or the
/// needs) that has not been answered: that is how the questionnaire asks only what matters.
pub fn walk<'c>(
    caps: &'c Capabilities,
    answers: &Answers,
    use_defaults: bool,
) -> Result<Walk<'c>, EngineError> {
    let mut w = Walker {
        caps,
        answers,
        use_defaults,
        open: caps.protocols.iter().map(|p| p.id.clone()).collect(),
        options: Vec::new(),
        visits: Vec::new(),
        used: Vec::new(),
    };
    let end = w.run()?;
    Ok(Walk {
        visits: w.visits,
        end,
        answers: w.used,
    })
}

struct Walker<'c, 'a> {
    caps: &'c Capabilities,
    answers: &'a Answers,
    use_defaults: bool,
    open: Vec<String>,
    /// The protocol sets the last cover node left to choose from.
    options: Vec<Vec<String>>,
    visits: Vec<Visit<'c>>,
    used: Vec<AnswerUsed>,
}

impl<'c> Walker<'c, '_> {
    fn answer(&mut self, question: &str) -> Option<(String, bool)> {
        let found = match self.answers.values.get(question) {
            Some(v) => Some((v.clone(), false)),
            None if self.use_defaults => self
                .caps
                .question(question)
                .and_then(|q| q.default.clone())
                .map(|v| (v, true)),
            None => None,
        }?;
        if !self.used.iter().any(|u| u.question == question) {
            self.used.push(AnswerUsed {
                question: question.to_string(),
                value: found.0.clone(),
                by_default: found.1,
            });
        }
        Some(found)
    }

    fn visit(&mut self, node: &'c Node, answer: Option<(&str, &str, bool)>, branch: &str, step: Step) {
        self.visits.push(Visit {
            node,
            answer: answer.map(|(q, v, d)| (q.to_string(), v.to_string(), d)),
            branch: branch.to_string(),
            open: self.open.clone(),
            step,
        });
    }

    fn run(&mut self) -> Result<End, EngineError> {
        let caps = self.caps;
        let mut node = caps
            .node(&caps.flow.start)
            .ok_or_else(|| EngineError::Stuck(caps.flow.start.clone(), "start".into()))?;
        // Validation rejects cycles; the bound keeps a hand-built model from looping anyway.
        for _ in 0..=caps.flow.nodes.len() {
            let branch = match self.step(node)? {
                Next::Branch(b) => b,
                Next::Stop(end) => return Ok(end),
            };
            node = caps
                .next(&node.id, &branch)
                .ok_or_else(|| EngineError::Stuck(node.id.clone(), branch.clone()))?;
        }
        Err(EngineError::Stuck(node.id.clone(), "a cycle".into()))
    }

    /// Pass one node: record the visit and return the branch it takes, or where the walk
    /// stops (an outcome, or an answer it lacks).
    fn step(&mut self, node: &'c Node) -> Result<Next, EngineError> {
        let answered = |w: &mut Self| {
            let q = node.question.as_deref().unwrap_or_default();
            w.answer(q)
                .map(|(value, by_default)| (q, value, by_default))
                .ok_or_else(|| Next::Stop(End::Pending(Pending::Question(q.to_string()))))
        };
        Ok(match node.kind {
            NodeKind::Question => match answered(self) {
                Ok((q, value, by_default)) => {
                    self.visit(node, Some((q, &value, by_default)), &value, Step::Asked);
                    Next::Branch(value)
                }
                Err(stop) => stop,
            },
            NodeKind::Filter => match answered(self) {
                Ok((q, value, by_default)) => {
                    let dropped = self.filter(node, &value);
                    let branch = if self.open.is_empty() { "none" } else { "some" };
                    self.visit(
                        node,
                        Some((q, &value, by_default)),
                        branch,
                        Step::Filtered { dropped },
                    );
                    Next::Branch(branch.to_string())
                }
                Err(stop) => stop,
            },
            NodeKind::Cover => self.covered(node),
            NodeKind::Prefer => self.chose(node)?,
            NodeKind::Outcome => {
                let outcome = node.outcome.clone().unwrap_or_else(|| "none".into());
                if let Some(pending) = self.before_the_outcome(&outcome) {
                    return Ok(Next::Stop(End::Pending(pending)));
                }
                self.visit(node, None, &outcome, Step::Outcome);
                Next::Stop(End::Outcome(outcome))
            }
        })
    }

    /// A cover node: the smallest sets of open protocols for the needs.
    fn covered(&mut self, node: &'c Node) -> Next {
        let needs = match &self.answers.needs {
            Some(n) => n.clone(),
            None if self.use_defaults => Vec::new(),
            None => return Next::Stop(End::Pending(Pending::Needs)),
        };
        let (options, unmet) = self.cover(&needs);
        let branch = if unmet.is_empty() { "covered" } else { "partial" };
        self.options = options.clone();
        let step = Step::Covered {
            needs,
            options,
            unmet,
        };
        self.visit(node, None, branch, step);
        Next::Branch(branch.to_string())
    }

    /// A prefer node: the protocols chosen among the options, by its rules.
    fn chose(&mut self, node: &'c Node) -> Result<Next, EngineError> {
        let (protocols, rule) = match self.prefer(node)? {
            Preference::Chosen { protocols, rule } => (protocols, rule),
            Preference::Ask(question) => return Ok(Next::Stop(End::Pending(Pending::Question(question)))),
        };
        let options = self.options.len();
        self.options = vec![protocols.clone()];
        let step = Step::Chose {
            protocols,
            options,
            rule,
        };
        self.visit(node, None, "chosen", step);
        Ok(Next::Branch("chosen".to_string()))
    }

    /// Without defaults (the questionnaire), what to ask before an outcome: the needs, on
    /// every path, so that no outcome is shown with needs it never looked at; then, for a
    /// direct connection, the question of a caveat that could apply to the protocols chosen.
    fn before_the_outcome(&self, outcome: &str) -> Option<Pending> {
        if self.use_defaults {
            return None;
        }
        let Some(needs) = &self.answers.needs else {
            return Some(Pending::Needs);
        };
        if outcome != "direct" {
            return None;
        }
        let protocols = self.options.first().map(Vec::as_slice).unwrap_or_default();
        let carriers = super::carriers(self.caps, needs, protocols);
        super::caveats::questions(self.caps, protocols, &carriers)
            .find(|q| !self.answers.values.contains_key(*q))
            .map(|q| Pending::Question(q.to_string()))
    }

    /// Keep the open protocols whose attribute matches the answer; returns the dropped ones.
    fn filter(&mut self, node: &Node, answer: &str) -> Vec<String> {
        let accepted: Vec<String> = match node.map.as_ref().and_then(|m| m.get(answer)) {
            Some(list) => list.clone(),
            None => vec![answer.to_string()],
        };
        let attribute = node.attribute.as_deref().unwrap_or("id");
        let (kept, dropped) = std::mem::take(&mut self.open).into_iter().partition(|id| {
            self.caps
                .protocol(id)
                .and_then(|p| p.attribute(attribute))
                .unwrap_or_default()
                .iter()
                .any(|v| accepted.iter().any(|a| a == v))
        });
        self.open = kept;
        dropped
    }

    /// The smallest sets of open protocols that cover as many needs as any set can, and the
    /// needs no open protocol covers.
    fn cover(&self, needs: &[String]) -> (Vec<Vec<String>>, Vec<String>) {
        let open = &self.open;
        let covers = |p: &str, need: &str| self.caps.feature(need).is_some_and(|f| f.support_for(p).covers());
        // More than 16 open protocols would make the subset search slow; no real model has that.
        let n = open.len().min(16);
        let coverage = |mask: u32| -> usize {
            needs
                .iter()
                .filter(|need| (0..n).any(|i| mask & (1 << i) != 0 && covers(&open[i], need)))
                .count()
        };
        let all = (1u32 << n) - 1;
        let best = coverage(all);
        let mut options: Vec<Vec<String>> = Vec::new();
        for size in 1..=n as u32 {
            for mask in 1..=all {
                if mask.count_ones() == size && coverage(mask) == best {
                    options.push(
                        (0..n)
                            .filter(|i| mask & (1 << i) != 0)
                            .map(|i| open[i].clone())
                            .collect(),
                    );
                }
            }
            if !options.is_empty() {
                break;
            }
        }
        let unmet = needs
            .iter()
            .filter(|need| !open.iter().any(|p| covers(p, need)))
            .cloned()
            .collect();
        (options, unmet)
    }

    /// Choose among the options by the first prefer rule that applies.
    fn prefer(&mut self, node: &Node) -> Result<Preference, EngineError> {
        let options = self.options.clone();
        // `check` rejects a flow that reaches a prefer node with nothing open; a model built
        // by hand gets an error here instead of an index out of bounds.
        let Some(first) = options.first().and_then(|o| o.first()).cloned() else {
            return Err(EngineError::NoProtocol(node.id.clone()));
        };
        if let [only] = options.as_slice()
            && only.len() == 1
        {
            return Ok(Preference::Chosen {
                protocols: only.clone(),
                rule: None,
            });
        }
        let mut chosen: Option<(usize, String, usize)> = None;
        for (r, rule) in node.rules.iter().enumerate() {
            let Some(index) = options.iter().position(|o| o.contains(&rule.protocol)) else {
                continue;
            };
            let applies = match (&rule.question, &rule.equals) {
                (Some(q), Some(want)) => match self.answer(q) {
                    Some((v, _)) => &v == want,
                    None => return Ok(Preference::Ask(q.clone())),
                },
                _ => true,
            };
            if applies {
                chosen = Some((index, rule.protocol.clone(), r));
                break;
            }
        }
        let (index, primary, rule) = match chosen {
            Some((i, p, r)) => (i, p, Some(r)),
            None => (0, first, None),
        };
        let mut set = options.get(index).cloned().unwrap_or_default();
        set.retain(|p| p != &primary);
        set.insert(0, primary);
        Ok(Preference::Chosen { protocols: set, rule })
    }
}

/// Where a node sends the walk.
enum Next {
    Branch(String),
    Stop(End),
}

enum Preference {
    /// The protocols, the primary first, and the index of the rule that chose.
    Chosen {
        protocols: Vec<String>,
        rule: Option<usize>,
    },
    /// A rule needs this question answered first.
    Ask(String),
}
