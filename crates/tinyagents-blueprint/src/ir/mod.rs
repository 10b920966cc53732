//! The blueprint IR: agent descriptions as plain data.
//!
//! One IR, two surface forms. A [`Blueprint`] is what the JSON form
//! deserializes into (its JSON Schema is [`blueprint_json_schema`], so a model
//! can be asked for one through structured output) and what the `.ta` text
//! form parses into. The formatter prints a `Blueprint` back as canonical
//! text, and every field survives JSON → text → JSON unchanged.
//!
//! A blueprint is a list of named nodes: agents and the flow constructs
//! around them (`map`, `reduce`, `router`, `join`, `subgraph`), plus nested
//! blueprints that `subgraph` nodes and map bodies use by name. Data flows
//! through references: a task template reads `{{inputs.topic}}` or
//! `{{deps.planner}}`; `map … over planner`, `router … on reviewer.verdict`
//! and `reduce … from research` name their sources the same way.
//!
//! Fields that are empty or unset are omitted from JSON, so a blueprint has
//! exactly one JSON rendering and one text rendering.

pub mod reference;
pub mod template;

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tinyagents_core::{Cost, RunLimits};

pub use reference::Ref;
pub use template::{Template, TemplatePart};

/// A team of agents and the flow between them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Blueprint {
    /// Name of the blueprint (an identifier: letters, digits, `_`, `-`).
    pub name: String,
    /// What the team is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Default model id for agents that do not name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Inputs the blueprint is run with; templates read them as `{{inputs.NAME}}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputSpec>,
    /// Bounds on loops (router back-edges) and on recursive blueprint use.
    /// Without it, dependency cycles and self-referencing blueprints are errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursion: Option<RecursionPolicy>,
    /// The node whose value is the blueprint's result. Without it, the
    /// result joins every node nobody else reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Agents and flow constructs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<Node>,
    /// Nested blueprints, used by `subgraph` nodes and map bodies by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blueprints: Vec<Blueprint>,
}

/// One input of a blueprint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Its name.
    pub name: String,
    /// Its type (default `text`).
    #[serde(default, rename = "type", skip_serializing_if = "ValueType::is_text")]
    pub ty: ValueType,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The coarse type of a value flowing between nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// A string.
    #[default]
    Text,
    /// A JSON array (what `map` iterates over).
    List,
    /// A JSON object.
    Object,
    /// Any JSON value.
    Json,
}

impl ValueType {
    /// True for the default, `text`.
    pub fn is_text(&self) -> bool {
        *self == Self::Text
    }

    /// The keyword used in the text form.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::List => "list",
            Self::Object => "object",
            Self::Json => "json",
        }
    }

    /// The type named by `keyword`.
    pub fn from_keyword(keyword: &str) -> Option<Self> {
        Some(match keyword {
            "text" => Self::Text,
            "list" => Self::List,
            "object" => Self::Object,
            "json" => Self::Json,
            _ => return None,
        })
    }
}

/// Bounds on cycles in the flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecursionPolicy {
    /// How many times a router may send the flow back to an earlier node
    /// (a review loop). Required for any dependency cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    /// How deep a blueprint may use itself (directly or through others)
    /// as a subgraph. Required for recursive blueprint references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u32>,
}

/// A node of a blueprint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Node {
    /// One agent.
    Agent(AgentSpec),
    /// One child per item of a list, at most `concurrency` at a time.
    Map(MapSpec),
    /// Folds a list (usually a map's results) into one value.
    Reduce(ReduceSpec),
    /// Picks which downstream nodes run, from a dependency's value.
    Router(RouterSpec),
    /// Collects the values of several nodes (those that ran).
    Join(JoinSpec),
    /// Runs a nested blueprint (or a named graph) as one node.
    Subgraph(SubgraphSpec),
}

impl Node {
    /// The node's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Agent(a) => &a.name,
            Self::Map(m) => &m.name,
            Self::Reduce(r) => &r.name,
            Self::Router(r) => &r.name,
            Self::Join(j) => &j.name,
            Self::Subgraph(s) => &s.name,
        }
    }

    /// The kind keyword (`agent`, `map`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Agent(_) => "agent",
            Self::Map(_) => "map",
            Self::Reduce(_) => "reduce",
            Self::Router(_) => "router",
            Self::Join(_) => "join",
            Self::Subgraph(_) => "subgraph",
        }
    }

    /// The rationale the author gave, if any.
    pub fn rationale(&self) -> Option<&str> {
        match self {
            Self::Agent(a) => a.rationale.as_deref(),
            Self::Map(m) => m.rationale.as_deref(),
            Self::Reduce(r) => r.rationale.as_deref(),
            Self::Router(r) => r.rationale.as_deref(),
            Self::Join(j) => j.rationale.as_deref(),
            Self::Subgraph(s) => s.rationale.as_deref(),
        }
    }
}

/// An agent description.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Unique name within the blueprint.
    pub name: String,
    /// Role: the agent's system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The task, a template over `{{inputs.NAME}}`, `{{deps.NODE}}` (or
    /// `{{deps.NODE.field}}`), and in map bodies `{{item}}` and `{{index}}`,
    /// in reducers `{{items}}`.
    pub task: String,
    /// Model id (default: the blueprint's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Tools the agent asks for; must be a subset of what its parent may grant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// What the agent returns: a description (string) or a JSON Schema (object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ExpectedOutput>,
    /// Why this agent exists (kept on the compiled node, shown in plans and events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// Nodes that must finish first, besides those the task template reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Limits the agent asks for (narrowed by its parent's, never widened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<AgentBudget>,
    /// Expected size of the agent's work, for the cost estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<EstimateHint>,
}

/// What an agent returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ExpectedOutput {
    /// A prose description of the output.
    Description(String),
    /// A JSON Schema the output must match (the agent is asked for
    /// structured output).
    Schema(serde_json::Map<String, serde_json::Value>),
}

impl ExpectedOutput {
    /// The coarse type of the output.
    pub fn value_type(&self) -> ValueType {
        match self {
            Self::Description(_) => ValueType::Text,
            Self::Schema(s) => schema_type(s),
        }
    }
}

/// The coarse type a JSON Schema describes.
pub fn schema_type(schema: &serde_json::Map<String, serde_json::Value>) -> ValueType {
    match schema.get("type").and_then(serde_json::Value::as_str) {
        Some("array") => ValueType::List,
        Some("object") => ValueType::Object,
        Some("string") => ValueType::Text,
        _ => ValueType::Json,
    }
}

/// Limits an agent asks for. Maps onto [`RunLimits`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentBudget {
    /// Tokens (input + output) the agent's subtree may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Cost in US dollars the agent's subtree may incur.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Model turns the agent may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns: Option<u32>,
    /// How many levels below itself the agent may delegate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
    /// How many runs may be spawned under the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descendants: Option<u64>,
    /// Wall-clock limit in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl AgentBudget {
    /// The limits this budget asks for, for an agent that will run at
    /// `depth` (so `depth` levels of delegation below it become an absolute
    /// `max_depth`). Unset fields inherit from the parent.
    pub fn to_limits(&self, depth: u32) -> RunLimits {
        let mut l = RunLimits::inherit();
        l.max_tokens = self.tokens;
        l.max_cost = self.cost_usd.map(Cost::from_usd);
        l.max_turns = self.turns;
        if let Some(d) = self.depth {
            l.max_depth = depth.saturating_add(d);
        }
        l.max_descendants = self.descendants;
        l.timeout = self.timeout_ms.map(Duration::from_millis);
        l
    }
}

/// Expected size of an agent's work, for the estimate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateHint {
    /// Input tokens per model turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Output tokens per model turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Expected model turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns: Option<u32>,
}

/// `map`: one child per item of a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapSpec {
    /// Unique name.
    pub name: String,
    /// The list: `inputs.NAME` or `NODE` (optionally `.field`).
    pub over: String,
    /// What runs per item: an agent (its task reads `{{item}}`, `{{index}}`)
    /// or a subgraph (it gets the item as input `item`).
    pub each: Box<Node>,
    /// At most this many children at a time (default: no cap of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Expected number of items, for the estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_items: Option<u32>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

/// `reduce`: folds a list into one value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReduceSpec {
    /// Unique name.
    pub name: String,
    /// The list to fold: a map, or any list-valued reference.
    pub from: String,
    /// The agent that folds (its task reads `{{items}}`). Without one the
    /// value is the list itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

/// `router`: picks downstream nodes from a dependency's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// Unique name.
    pub name: String,
    /// The value routed on: `NODE`, `NODE.field` or `inputs.NAME`.
    pub on: String,
    /// Routes, tried in order; the first that matches wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Where to go when no route matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

/// One route of a router.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The condition.
    pub when: Condition,
    /// The node that runs when it holds.
    pub to: String,
}

/// A router condition on a value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The value equals this JSON value (a string also matches text equal to it, trimmed).
    Equals(serde_json::Value),
    /// The value, as text, contains this string.
    Contains(String),
    /// The value is present: not null, `""`, `[]`, `{}` or `false`.
    Present,
}

/// `join`: collects the values of several nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinSpec {
    /// Unique name.
    pub name: String,
    /// The nodes joined; those a router skipped are left out.
    pub of: Vec<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

/// `subgraph`: a nested blueprint (or a named graph) as one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubgraphSpec {
    /// Unique name.
    pub name: String,
    /// The nested blueprint it runs (declared in `blueprints` here or in an
    /// enclosing blueprint), or a graph registered by name at run time.
    pub uses: String,
    /// Values of the nested blueprint's inputs: templates over this
    /// blueprint's inputs and nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

/// The JSON Schema of [`Blueprint`]: what a model is given to author one.
pub fn blueprint_json_schema() -> serde_json::Value {
    let mut v = schemars::schema_for!(Blueprint).to_value();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "description".into(),
            serde_json::Value::String(
                "A TinyAgents blueprint: a team of agents (name, role, task template, model, tools, expected \
                 output, rationale, dependencies, budget) and flow nodes (map, reduce, router, join, subgraph)."
                    .into(),
            ),
        );
    }
    v
}
