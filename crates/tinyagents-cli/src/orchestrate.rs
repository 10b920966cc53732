//! The main job: a model plans a team, the transpiler compiles it, the team runs.
//!
//! `tinyagents run "TASK"` with no script and no provider runs this on the
//! embedded local model (see [`crate::local`]); any other [`Model`](tinyagents_core::Model) works
//! the same way (`--provider openai|anthropic` without `--script`, or a
//! scripted model in tests).
//!
//! 1. **Plan.** A `planner` sub-agent of the root is asked for a team as
//!    structured output: [`plan_schema`], a small JSON Schema (two or three
//!    agents, each a one-word name, a one-sentence task and why it is
//!    needed). A model that honours `response_format` by constraining its
//!    decoding (the local model does, through llguidance) can only answer
//!    with JSON of that shape; any other answer is refused with
//!    [`OrchestrateError::BadPlan`], naming the planner's run path.
//! 2. **Compile.** The plan becomes a blueprint ([`to_blueprint`]): the
//!    planned agents run in parallel on the task, and a `writer` agent that
//!    reads all their notes (`{{deps.NAME}}`) writes the answer. The
//!    blueprint goes through the transpiler's passes (resolve, validate,
//!    optimize), so a plan it refuses fails with the compiler's diagnostics.
//! 3. **Run.** The compiled plan is lowered onto the graph runtime and runs
//!    under the same root, every agent on the same model. Each agent is a
//!    child run with its own events, tokens and usage, rolled up to the root;
//!    the planner's rationale for each agent is on its node.
//!
//! ```
//! use tinyagents_cli::orchestrate::{PlannedAgent, TeamPlan, to_blueprint};
//!
//! let plan = TeamPlan {
//!     agents: vec![
//!         PlannedAgent { name: "facts".into(), task: "List key facts.".into(), why: "Grounding".into() },
//!         PlannedAgent { name: "risks".into(), task: "List the risks.".into(), why: "Balance".into() },
//!     ],
//! };
//! let bp = to_blueprint(&plan, "m").unwrap();
//! assert_eq!(bp.nodes.len(), 3); // two agents and the writer
//! assert_eq!(bp.output.as_deref(), Some("writer"));
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tinyagents_blueprint::{Blueprint, CompileOptions, Inputs, Toolbox, compile, run_lowered};
use tinyagents_core::{RunContext, SharedModel};
use tinyagents_harness::{Agent, SubAgent};

/// Name of the agent that writes the answer from the team's notes.
pub const WRITER: &str = "writer";

/// The planner's system prompt (with one example plan: small models
/// follow an example far better than a description).
pub const PLANNER_SYSTEM: &str = "You plan a small team of AI agents for a task. Use 2 or 3 agents. Each agent \
has a name (one lowercase word saying its job), a task (one sentence: what it must find or write for this \
task) and why (a few words: why the team needs it). Reply with JSON only.\n\
Example. Task: Explain how to start running.\n\
{\"agents\":[{\"name\":\"researcher\",\"task\":\"Find the key facts a beginner runner needs.\",\
\"why\":\"The answer needs facts\"},{\"name\":\"critic\",\"task\":\"List common mistakes beginners make and how to avoid them.\",\
\"why\":\"Warn about pitfalls\"}]}";

/// Output cap of the planner's call, in tokens: a plan of three agents
/// with long tasks is about 250 tokens of compact JSON.
pub const PLANNER_MAX_TOKENS: u32 = 384;

/// Fewest and most agents a plan may have (the writer not counted).
pub const TEAM_SIZE: (usize, usize) = (2, 3);

/// One agent of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAgent {
    /// One lowercase word.
    pub name: String,
    /// What it must do.
    pub task: String,
    /// Why the team needs it (becomes the node's rationale).
    pub why: String,
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamPlan {
    /// The agents, in the planner's order.
    pub agents: Vec<PlannedAgent>,
}

/// The main job failed.
#[derive(Debug, thiserror::Error)]
pub enum OrchestrateError {
    /// The planner run failed (model error, budget, cancellation).
    #[error("planner: {0}")]
    Planner(#[from] tinyagents_core::RunError),
    /// The planner answered, but not with a usable plan.
    #[error("{path} (depth {depth}): the plan is not usable: {reason}; the planner answered: {answer}")]
    BadPlan {
        /// The planner's run path.
        path: String,
        /// The planner's depth.
        depth: u32,
        /// What is wrong.
        reason: String,
        /// The planner's answer (cut to 300 characters).
        answer: String,
    },
    /// The blueprint made from the plan does not compile.
    #[error("the team's blueprint does not compile: {0}")]
    Compile(String),
    /// The team's run failed.
    #[error("team: {0}")]
    Team(tinyagents_blueprint::ExecError),
}

/// The JSON Schema the planner answers in (compact on purpose: a small
/// model decodes it under a grammar).
pub fn plan_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "agents": {
                "type": "array",
                "minItems": TEAM_SIZE.0,
                "maxItems": TEAM_SIZE.1,
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z]{3,12}$"},
                        "task": {"type": "string", "minLength": 8, "maxLength": 160},
                        "why": {"type": "string", "minLength": 3, "maxLength": 100}
                    },
                    "required": ["name", "task", "why"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["agents"],
        "additionalProperties": false
    })
}

/// Parses and checks the planner's answer (code fences tolerated).
pub fn parse_plan(answer: &str) -> Result<TeamPlan, String> {
    let text = answer.trim();
    let text = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))
        .and_then(|t| t.strip_suffix("```"))
        .unwrap_or(text)
        .trim();
    let plan: TeamPlan = serde_json::from_str(text).map_err(|e| format!("not the plan's JSON shape: {e}"))?;
    let n = plan.agents.len();
    if n < TEAM_SIZE.0 || n > TEAM_SIZE.1 {
        return Err(format!(
            "{n} agents planned; a team has {} to {}",
            TEAM_SIZE.0, TEAM_SIZE.1
        ));
    }
    for (i, a) in plan.agents.iter().enumerate() {
        if a.task.trim().is_empty() {
            return Err(format!("agent {i} ({:?}) has an empty task", a.name));
        }
    }
    Ok(plan)
}

/// A node name from what the planner wrote: lowercase ASCII letters, digits
/// and `_`, starting with a letter, unique among `taken` (a `_2`, `_3`, ...
/// suffix when needed).
fn node_name(raw: &str, index: usize, taken: &mut HashSet<String>) -> String {
    let mut base: String = raw
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(24)
        .collect();
    base = base.trim_matches('_').to_string();
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base = format!("agent{}", index + 1);
    }
    let mut name = base.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

/// Text from the model, made safe to embed in a task template (no `{{`).
fn literal(text: &str) -> String {
    text.trim().replace('{', "(").replace('}', ")")
}

/// The blueprint of a plan: its agents in parallel on `{{inputs.task}}`,
/// then the [`WRITER`] reading all their notes. Agents use `model`.
///
/// The JSON built here is the blueprint's own documented shape; an error
/// (which would be a bug here) is returned, not hidden.
pub fn to_blueprint(plan: &TeamPlan, model: &str) -> Result<Blueprint, String> {
    let mut taken: HashSet<String> = HashSet::from([WRITER.to_string()]);
    let mut nodes = Vec::new();
    let mut notes = String::new();
    for (i, a) in plan.agents.iter().enumerate() {
        let name = node_name(&a.name, i, &mut taken);
        notes.push_str(&format!("\n- {name}: {{{{deps.{name}}}}}"));
        nodes.push(json!({
            "kind": "agent",
            "name": name,
            "role": format!("You are the {name} agent of a small team. Do only your part, in at most three sentences."),
            "task": format!("{}\n(This is for: {{{{inputs.task}}}})", literal(&a.task)),
            "rationale": literal(&a.why),
        }));
    }
    nodes.push(json!({
        "kind": "agent",
        "name": WRITER,
        "role": "You write the final answer of a small team, clearly and briefly.",
        "task": format!("Notes from your team:{notes}\n\nUsing these notes, do this: {{{{inputs.task}}}}"),
        "rationale": "One writer merges the team's notes into one answer.",
    }));
    let value = json!({
        "name": "team",
        "description": "A team planned by the orchestrator's planner",
        "model": model,
        "inputs": [{"name": "task", "description": "The user's task"}],
        "output": WRITER,
        "nodes": nodes,
    });
    serde_json::from_value(value).map_err(|e| format!("the team's blueprint JSON: {e}"))
}

/// Runs the main job under `ctx` (the root): plan, compile, run. Returns
/// the writer's answer.
pub async fn orchestrate(ctx: &RunContext, model: SharedModel, task: &str) -> Result<String, OrchestrateError> {
    let planner = Agent::builder("planner")
        .description("Plans the team: which agents, doing what, and why.")
        .system(PLANNER_SYSTEM)
        .shared_model(model.clone())
        .max_output_tokens(PLANNER_MAX_TOKENS)
        .response_format(plan_schema())
        .build();
    let out = SubAgent::new(planner).invoke_in_parent(ctx, task.to_string()).await?;
    let plan = parse_plan(&out.text).map_err(|reason| OrchestrateError::BadPlan {
        path: out.run.path.to_string(),
        depth: out.run.depth,
        reason,
        answer: out.text.chars().take(300).collect(),
    })?;
    let blueprint = to_blueprint(&plan, model.id()).map_err(OrchestrateError::Compile)?;
    let options = CompileOptions::new().default_model(model.id().to_string());
    let plan = compile(&blueprint, &options).map_err(|diags| {
        OrchestrateError::Compile(diags.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
    })?;
    let factory = Toolbox::new().default_model(model);
    let mut inputs = Inputs::new();
    inputs.insert("task".into(), Value::String(task.to_string()));
    let out = run_lowered(&plan, ctx, &factory, &inputs)
        .await
        .map_err(OrchestrateError::Team)?;
    Ok(out.text.to_string())
}

/// [`orchestrate`] as a rooted run's body (see [`crate::run::run_rooted`]).
pub async fn body(ctx: RunContext, model: SharedModel, task: Arc<str>) -> crate::run::BodyResult {
    orchestrate(&ctx, model, &task).await.map_err(|e| {
        let partial = match &e {
            OrchestrateError::Team(err) => err
                .partial()
                .filter(|p| !p.is_empty())
                .and_then(|p| serde_json::to_string_pretty(p).ok()),
            _ => None,
        };
        (e.to_string(), partial)
    })
}
