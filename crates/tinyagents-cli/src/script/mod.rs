//! The script format: a team of agents whose models answer from a list.
//!
//! A script is one JSON document (see the crate README for the full
//! reference). It names the agents, the sub-agents each may delegate to, the
//! root agent, the input, the root limits and the model prices; every agent
//! carries the responses its scripted model gives, in order.
//!
//! Parsing is strict: every object rejects unknown fields, so a typo such as
//! `"respones"` is an error with the file, line and column, never a silently
//! ignored key. [`Script::validate`] then checks what JSON cannot: the root
//! and every sub-agent name exist, delegation forms a DAG (a cycle is
//! reported as the loop of names), scripted tool calls name a sub-agent of
//! the calling agent, and every response says something.
//!
//! ```
//! use tinyagents_cli::script::Script;
//!
//! let script = Script::parse(r#"{
//!     "input": "hello",
//!     "root": "greeter",
//!     "agents": {"greeter": {"responses": [{"content": "hi!"}]}}
//! }"#, "inline").unwrap();
//! assert_eq!(script.root_name().unwrap(), "greeter");
//!
//! let typo = Script::parse(r#"{"agents": {"a": {"respones": []}}}"#, "typo.json").unwrap_err();
//! assert!(typo.to_string().contains("typo.json:1:"));
//! assert!(typo.to_string().contains("respones"));
//! ```

mod error;
mod limits;
mod order;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use error::ScriptError;
pub use limits::{PriceSpec, ScriptLimits, UsageSpec};
use tinyagents_core::{ModelError, ModelResponse, PriceTable, RunLimits, ToolCall};

/// The model id of an agent whose script does not name one.
pub const DEFAULT_MODEL_ID: &str = "scripted";

/// A whole script (see the module docs).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The task given to the root agent (a command-line INPUT overrides it).
    #[serde(default)]
    pub input: Option<String>,
    /// The root agent. Optional when exactly one agent is nobody's sub-agent.
    #[serde(default)]
    pub root: Option<String>,
    /// Limits of the root run, and so of the whole tree.
    #[serde(default)]
    pub limits: Option<ScriptLimits>,
    /// Prices by model id, in US dollars per million tokens.
    #[serde(default)]
    pub prices: BTreeMap<String, PriceSpec>,
    /// The agents, by name.
    pub agents: BTreeMap<String, AgentSpec>,
}

/// One agent of a script.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// The system prompt.
    #[serde(default)]
    pub system: Option<String>,
    /// What the agent does; shown to parents in the sub-agent tool's
    /// description.
    #[serde(default)]
    pub description: Option<String>,
    /// The model id: shown in events and used to look up the price.
    #[serde(default = "default_model")]
    pub model: String,
    /// Agents this one may delegate to; each becomes a tool named after it.
    #[serde(default)]
    pub subagents: Vec<String>,
    /// How long the scripted model takes to answer each call.
    #[serde(default)]
    pub delay_ms: u64,
    /// Repeat the responses forever instead of failing after the last one.
    #[serde(default)]
    pub cycle: bool,
    /// Limits this agent asks for (narrowed by its parent's).
    #[serde(default)]
    pub limits: Option<ScriptLimits>,
    /// The model's replies, one per call, shared by every run of this agent.
    pub responses: Vec<ResponseSpec>,
}

fn default_model() -> String {
    DEFAULT_MODEL_ID.to_string()
}

/// One scripted model reply.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    /// Text. A reply with text and no tool calls is the run's final answer.
    #[serde(default)]
    pub content: Option<String>,
    /// Tool calls (sub-agent invocations); they run concurrently.
    #[serde(default)]
    pub tool_calls: Vec<ToolCallSpec>,
    /// Tokens this call is charged.
    #[serde(default)]
    pub usage: UsageSpec,
    /// Make this call fail with a model error carrying this message.
    #[serde(default)]
    pub error: Option<String>,
}

/// One scripted tool call.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCallSpec {
    /// Call id; generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The tool: one of the agent's sub-agents.
    pub name: String,
    /// The arguments: an object (sent as JSON; a sub-agent reads `input`),
    /// or a string sent verbatim (to script malformed arguments).
    #[serde(default)]
    pub arguments: Option<serde_json::Value>,
}

impl ResponseSpec {
    /// The model reply (or error) this entry scripts.
    pub fn to_result(&self) -> Result<ModelResponse, ModelError> {
        if let Some(message) = &self.error {
            return Err(ModelError::Other {
                message: message.clone(),
            });
        }
        let tool_calls = self
            .tool_calls
            .iter()
            .map(|c| {
                let args: Arc<str> = match &c.arguments {
                    None => "{}".into(),
                    Some(serde_json::Value::String(raw)) => raw.as_str().into(),
                    Some(v) => v.to_string().into(),
                };
                ToolCall::raw(c.id.as_deref().unwrap_or(""), c.name.as_str(), args)
            })
            .collect();
        Ok(ModelResponse {
            content: self.content.as_deref().map(Arc::from),
            tool_calls,
            usage: self.usage.to_usage(),
        })
    }
}

impl Script {
    /// The demo script built into the binary (`examples/scripts/demo.json`):
    /// an orchestrator, three sub-agents and one grandchild.
    pub const DEMO: &'static str = include_str!("../../../../examples/scripts/demo.json");

    /// Parses `text`; `origin` (a file name) prefixes error messages. Does
    /// not [`validate`](Self::validate).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ScriptError> {
        serde_json::from_str(text).map_err(|e| ScriptError::parse(origin, text, &e))
    }

    /// Parses and validates.
    pub fn load(text: &str, origin: &str) -> Result<Self, ScriptError> {
        let script = Self::parse(text, origin)?;
        script.validate()?;
        Ok(script)
    }

    /// The root agent's name: `root`, or the one agent nobody delegates to.
    pub fn root_name(&self) -> Result<&str, ScriptError> {
        if let Some(root) = &self.root {
            return if self.agents.contains_key(root) {
                Ok(root)
            } else {
                Err(ScriptError::UnknownRoot {
                    root: root.clone(),
                    known: self.known_agents(),
                })
            };
        }
        let mut candidates = self
            .agents
            .keys()
            .filter(|name| !self.agents.values().any(|a| a.subagents.contains(name)));
        match (candidates.next(), candidates.next()) {
            (Some(only), None) => Ok(only),
            _ => Err(ScriptError::NoRoot {
                candidates: self
                    .agents
                    .keys()
                    .filter(|name| !self.agents.values().any(|a| a.subagents.contains(name)))
                    .cloned()
                    .collect(),
            }),
        }
    }

    /// Checks what JSON parsing cannot (see the module docs).
    pub fn validate(&self) -> Result<(), ScriptError> {
        if self.agents.is_empty() {
            return Err(ScriptError::NoAgents);
        }
        for (name, agent) in &self.agents {
            let mut seen = std::collections::BTreeSet::new();
            for sub in &agent.subagents {
                if !self.agents.contains_key(sub) {
                    return Err(ScriptError::UnknownSubAgent {
                        agent: name.clone(),
                        subagent: sub.clone(),
                        known: self.known_agents(),
                    });
                }
                if !seen.insert(sub) {
                    return Err(ScriptError::DuplicateSubAgent {
                        agent: name.clone(),
                        subagent: sub.clone(),
                    });
                }
            }
            if agent.responses.is_empty() {
                return Err(ScriptError::NoResponses { agent: name.clone() });
            }
            for (index, response) in agent.responses.iter().enumerate() {
                let says_something = response.content.is_some() || !response.tool_calls.is_empty();
                if response.error.is_some() && says_something {
                    return Err(ScriptError::ErrorWithReply {
                        agent: name.clone(),
                        index,
                    });
                }
                if response.error.is_none() && !says_something {
                    return Err(ScriptError::EmptyResponse {
                        agent: name.clone(),
                        index,
                    });
                }
                for call in &response.tool_calls {
                    if !agent.subagents.contains(&call.name) {
                        return Err(ScriptError::UnknownTool {
                            agent: name.clone(),
                            index,
                            tool: call.name.clone(),
                            subagents: agent.subagents.clone(),
                        });
                    }
                }
            }
        }
        self.root_name()?;
        self.build_order().map(|_| ())
    }

    /// Agent names ordered so that every agent comes after all its
    /// sub-agents (the bottom-up build order), or the delegation cycle.
    pub fn build_order(&self) -> Result<Vec<&str>, ScriptError> {
        order::bottom_up(self)
    }

    /// The limits of the root run (defaults when the script sets none).
    pub fn run_limits(&self) -> RunLimits {
        self.limits.as_ref().map(|l| l.0.clone()).unwrap_or_default()
    }

    /// The price table.
    pub fn price_table(&self) -> PriceTable {
        let mut table = PriceTable::new();
        for (model, price) in &self.prices {
            table.insert(model.clone(), price.to_price());
        }
        table
    }

    fn known_agents(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(subs: &[&str]) -> serde_json::Value {
        let calls: Vec<_> = subs
            .iter()
            .map(|s| serde_json::json!({"name": s, "arguments": {"input": "x"}}))
            .collect();
        let mut responses = Vec::new();
        if !calls.is_empty() {
            responses.push(serde_json::json!({"tool_calls": calls}));
        }
        responses.push(serde_json::json!({"content": "ok"}));
        serde_json::json!({"subagents": subs, "responses": responses})
    }

    fn script(agents: serde_json::Value) -> Result<Script, ScriptError> {
        Script::load(&serde_json::json!({"agents": agents}).to_string(), "t.json")
    }

    #[test]
    fn the_embedded_demo_is_valid() {
        let s = Script::load(Script::DEMO, "demo.json").unwrap();
        assert_eq!(s.root_name().unwrap(), "orchestrator");
    }

    #[test]
    fn root_defaults_to_the_only_agent_nobody_delegates_to() {
        let s = script(serde_json::json!({"a": agent(&["b"]), "b": agent(&[])})).unwrap();
        assert_eq!(s.root_name().unwrap(), "a");
        let err = script(serde_json::json!({"a": agent(&[]), "b": agent(&[])})).unwrap_err();
        assert!(matches!(err, ScriptError::NoRoot { .. }), "{err}");
    }

    #[test]
    fn build_order_puts_sub_agents_first() {
        let s = script(serde_json::json!({
            "top": agent(&["mid", "leaf"]), "mid": agent(&["leaf"]), "leaf": agent(&[])
        }))
        .unwrap();
        assert_eq!(s.build_order().unwrap(), vec!["leaf", "mid", "top"]);
    }

    #[test]
    fn a_cycle_is_reported_as_the_loop_of_names() {
        let err = script(serde_json::json!({
            "top": agent(&["a"]), "a": agent(&["b"]), "b": agent(&["a"])
        }))
        .unwrap_err();
        assert_eq!(err.to_string(), "delegation cycle: a -> b -> a");
    }

    #[test]
    fn a_call_to_a_tool_that_is_not_a_sub_agent_is_rejected() {
        let err = script(serde_json::json!({
            "top": {"subagents": [], "responses": [{"tool_calls": [{"name": "ghost"}]}]}
        }))
        .unwrap_err();
        assert!(err.to_string().contains("\"ghost\""), "{err}");
    }

    #[test]
    fn unknown_limit_fields_are_rejected() {
        let err = Script::parse(r#"{"limits": {"max_dept": 2}, "agents": {}}"#, "t.json").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("max_dept") && text.contains("max_depth"), "{text}");
        let ok = Script::parse(
            r#"{"limits": {"max_depth": 2, "timeout": 500}, "agents": {}}"#,
            "t.json",
        )
        .unwrap();
        assert_eq!(ok.run_limits().max_depth, 2);
    }
}
