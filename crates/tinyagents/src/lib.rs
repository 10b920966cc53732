//! TinyAgents: language models that orchestrate language models.
//!
//! This facade re-exports the crates a user needs:
//!
//! * [`core`]: run ids, messages, usage and cost, budgets, events, errors, and
//!   the `Model` and `Tool` traits;
//! * [`harness`]: the agent loop, tools and sub-agents;
//! * [`providers`]: model implementations (the scripted model for tests).
//!
//! The most used items are also in the [`prelude`].
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use tinyagents::prelude::*;
//!
//! let writer = Agent::builder("writer")
//!     .model(ScriptedModel::new([ModelResponse::text("A haiku about crabs.")]))
//!     .build();
//! let boss = Agent::builder("boss")
//!     .model(ScriptedModel::new([
//!         ScriptedModel::call("writer", serde_json::json!({"input": "write a haiku"})),
//!         ModelResponse::text("done: A haiku about crabs."),
//!     ]))
//!     .subagent(SubAgent::new(writer))
//!     .build();
//! let out = boss.run("get me a haiku").await.unwrap();
//! assert!(out.text.contains("crabs"));
//! # });
//! ```

pub use tinyagents_core as core;
pub use tinyagents_harness as harness;
pub use tinyagents_providers as providers;

/// The items most programs use.
pub mod prelude {
    pub use tinyagents_core::{
        ChildEvents, CollectingSink, Cost, Event, EventKind, EventSink, Message, Model, ModelError, ModelRequest,
        ModelResponse, Price, PriceTable, RunConfig, RunContext, RunError, RunLimits, Tool, ToolCall, ToolContext,
        ToolError, Usage, tool_fn,
    };
    pub use tinyagents_harness::{Agent, AgentOutput, SubAgent, SubAgentSession, SubAgentTool};
    pub use tinyagents_providers::ScriptedModel;
}

/// The root README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
