//! Self-authoring: a model is asked for a blueprint and the answer is
//! compiled on the spot.
//!
//! The request carries the blueprint JSON Schema as its `response_format`
//! (structured output), a system prompt explaining the format and the tools
//! that may be granted, and the task. The reply is parsed (code fences
//! tolerated) and compiled against the grant. When it does not compile,
//! the diagnostics go back to the model as a follow-up message and it gets
//! another attempt (by default 2 in all), so a model can repair its own
//! plan.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use tinyagents_blueprint::{CapabilityGrant, author::plan_from_model};
//! use tinyagents_core::ModelResponse;
//! use tinyagents_providers::ScriptedModel;
//!
//! let model = ScriptedModel::new([ModelResponse::text(
//!     r#"{"name": "solo", "model": "m", "nodes": [{"kind": "agent", "name": "a", "task": "do it"}]}"#,
//! )]);
//! let authored = plan_from_model(&model, "do it", &CapabilityGrant::none()).await.unwrap();
//! assert_eq!(authored.plan.nodes.len(), 1);
//! assert!(model.requests()[0].response_format.is_some());
//! # });
//! ```

use std::sync::Arc;

use tinyagents_core::{Message, Model, ModelError, ModelRequest, RunContext, RunId, ToolChoice, Transcript};

use crate::capability::CapabilityGrant;
use crate::compile::{CompileOptions, compile};
use crate::diagnostic::{Diagnostic, JsonPath, Report};
use crate::ir::{Blueprint, blueprint_json_schema};
use crate::plan::Plan;

/// A blueprint a model wrote, and its plan.
#[derive(Clone, Debug)]
pub struct Authored {
    /// The blueprint as parsed.
    pub blueprint: Blueprint,
    /// The compiled plan.
    pub plan: Plan,
    /// Model calls it took.
    pub attempts: u32,
}

/// Self-authoring failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthorError {
    /// The model call failed.
    #[error("the planning model failed: {0}")]
    Model(ModelError),
    /// A budget of the run refused the call.
    #[error("the run's {0} budget refused the planning call")]
    Budget(tinyagents_core::LimitKind),
    /// No attempt produced a blueprint that compiles.
    #[error("no valid blueprint after {attempts} attempt(s): {report}")]
    Invalid {
        /// The last attempt's diagnostics.
        report: Report,
        /// Attempts made.
        attempts: u32,
    },
}

const INSTRUCTIONS: &str = "You design teams of AI agents. Reply with one JSON object: a TinyAgents blueprint \
matching the given JSON Schema, and nothing else. A blueprint has a name, optional inputs, and nodes: agents \
(name, role, task template, tools, output, rationale, after) and flow nodes (map over a list, reduce, router, \
join, subgraph). Task templates read {{inputs.NAME}}, {{deps.NODE}} and, in map bodies, {{item}}. Give every \
agent a rationale. Independent agents run in parallel; agents whose output nobody reads are pruned.";

/// Asks `model` for a blueprint for `task`, agents limited to `grant`.
pub async fn plan_from_model(model: &dyn Model, task: &str, grant: &CapabilityGrant) -> Result<Authored, AuthorError> {
    Author::new(model).grant(grant.clone()).plan(task).await
}

/// Self-authoring with options.
pub struct Author<'m> {
    model: &'m dyn Model,
    options: CompileOptions,
    attempts: u32,
    run: Option<RunContext>,
}

impl std::fmt::Debug for Author<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Author")
            .field("model", &self.model.id())
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl<'m> Author<'m> {
    /// Asks `model`; compiles with default options and no tools; 2 attempts.
    pub fn new(model: &'m dyn Model) -> Self {
        Self {
            model,
            options: CompileOptions::new().grant(CapabilityGrant::none()),
            attempts: 2,
            run: None,
        }
    }

    /// The compile options (the grant included).
    #[must_use]
    pub fn options(mut self, options: CompileOptions) -> Self {
        self.options = options;
        self
    }

    /// The tools the plan's agents may use.
    #[must_use]
    pub fn grant(mut self, grant: CapabilityGrant) -> Self {
        self.options.grant = grant;
        self
    }

    /// Model calls allowed (at least 1).
    #[must_use]
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }

    /// Charges the planning calls to `run` (and checks its budget first).
    #[must_use]
    pub fn in_run(mut self, run: RunContext) -> Self {
        self.run = Some(run);
        self
    }

    /// Asks for a plan for `task`.
    pub async fn plan(&self, task: &str) -> Result<Authored, AuthorError> {
        let grantable = match self.options.grant.granted() {
            None => "any tool".to_string(),
            Some(t) if t.is_empty() => "none (agents get no tools)".to_string(),
            Some(t) => t.iter().cloned().collect::<Vec<_>>().join(", "),
        };
        let mut messages = Transcript::new();
        messages.push(Message::system(format!(
            "{INSTRUCTIONS}\nTools you may give agents: {grantable}."
        )));
        messages.push(Message::user(task));
        let schema = Arc::new(blueprint_json_schema());
        let mut last = Report::default();
        for attempt in 0..self.attempts {
            if let Some(run) = &self.run {
                run.check_before_model_call().map_err(AuthorError::Budget)?;
            }
            let request = ModelRequest {
                agent: "blueprint-author".into(),
                run_id: self.run.as_ref().map_or_else(RunId::new, RunContext::run_id),
                depth: self.run.as_ref().map_or(0, RunContext::depth),
                turn: attempt,
                messages: messages.clone(),
                tools: Arc::from(Vec::new()),
                tool_choice: ToolChoice::None,
                response_format: Some(schema.clone()),
                max_output_tokens: None,
            };
            let response = self.model.complete(&request).await.map_err(AuthorError::Model)?;
            if let Some(run) = &self.run {
                let (_, charged) = run.charge_model_call(self.model.id(), &response.usage);
                charged.map_err(AuthorError::Budget)?;
            }
            let text = response.content.as_deref().unwrap_or_default().to_string();
            match parse_and_compile(&text, &self.options) {
                Ok((blueprint, plan)) => {
                    return Ok(Authored {
                        blueprint,
                        plan,
                        attempts: attempt + 1,
                    });
                }
                Err(report) => {
                    messages.push(Message::assistant(text));
                    messages.push(Message::user(format!(
                        "That blueprint does not compile:\n{}Reply with a corrected blueprint (JSON only).",
                        report.render_plain()
                    )));
                    last = report;
                }
            }
        }
        Err(AuthorError::Invalid {
            report: last,
            attempts: self.attempts,
        })
    }
}

fn parse_and_compile(text: &str, options: &CompileOptions) -> Result<(Blueprint, Plan), Report> {
    let trimmed = text.trim();
    let body = trimmed
        .strip_prefix("```")
        .map(|r| r.split_once('\n').map_or("", |(_, b)| b))
        .map(|b| b.trim_end().strip_suffix("```").unwrap_or(b))
        .unwrap_or(trimmed);
    if body.trim().is_empty() {
        return Err(Report::new(
            None,
            vec![
                Diagnostic::error("blueprint::json", JsonPath::root(), "the reply is empty")
                    .hint("reply with a JSON blueprint"),
            ],
        ));
    }
    let loaded = crate::load::parse_json("<model>", body)?;
    let plan = compile(&loaded.blueprint, options).map_err(|d| Report::new(Some(loaded.source.clone()), d))?;
    Ok((loaded.blueprint, plan))
}
