//! Where agents' models come from.
//!
//! A script describes a team: agents, their prompts and who delegates to
//! whom. A [`ModelSource`] decides what answers for each agent. Today there
//! is one source, [`ModelSource::Script`]: each agent gets a
//! [`ScriptedModel`] that replays the responses written in the script. A
//! hosted provider or the embedded local model will be further variants
//! (selected by `--provider`/`--model`), built in [`ModelSource::model_for`]
//! from the same agent description; nothing else in the CLI changes.

use std::sync::Arc;
use std::time::Duration;

use tinyagents_core::SharedModel;
use tinyagents_providers::ScriptedModel;

use crate::script::AgentSpec;

/// What answers for each agent (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// Every agent replays the responses of its script entry.
    Script(ScriptOptions),
}

/// How scripted models behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptOptions {
    /// Honor each agent's `delay_ms` (off for tests: `--no-delay`).
    pub delays: bool,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        Self { delays: true }
    }
}

impl ModelSource {
    /// The model for the agent described by `spec`.
    ///
    /// Each call builds a new model: an agent gets exactly one, shared by all
    /// its runs, so an agent invoked several times consumes its responses in
    /// order (or cycles through them when `cycle` is set).
    pub fn model_for(&self, spec: &AgentSpec) -> SharedModel {
        match self {
            Self::Script(opts) => {
                let results: Vec<ScriptResult> = spec.responses.iter().map(|r| r.to_result()).collect();
                let model = if !spec.cycle {
                    ScriptedModel::with_results(results)
                } else if results.iter().all(Result::is_ok) {
                    ScriptedModel::cycle(results.into_iter().flatten())
                } else {
                    ScriptedModel::from_fn(cycling(results))
                };
                let mut model = model.with_id(spec.model.clone()).without_recording();
                if opts.delays && spec.delay_ms > 0 {
                    model = model.with_delay(Duration::from_millis(spec.delay_ms));
                }
                Arc::new(model)
            }
        }
    }
}

type ScriptResult = Result<tinyagents_core::ModelResponse, tinyagents_core::ModelError>;

/// Cycles through `results`, errors included (`ScriptedModel::cycle` takes
/// replies only). Call ids are filled in by the scripted model.
fn cycling(results: Vec<ScriptResult>) -> impl Fn(&tinyagents_core::ModelRequest) -> ScriptResult + Send + Sync {
    let next = std::sync::atomic::AtomicUsize::new(0);
    move |_| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match results.get(n % results.len().max(1)) {
            Some(r) => r.clone(),
            None => Err(tinyagents_core::ModelError::Script {
                message: "scripted model has an empty cycle".into(),
            }),
        }
    }
}
