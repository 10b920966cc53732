//! Runtime spawning: the `spawn_agents` tool and the live registry.
//!
//! An agent allowed to delegate lists `spawn_agents` among its tools. When
//! built through [`Spawning`] it gets a [`SpawnAgentsTool`] whose argument
//! is a blueprint fragment ([`SpawnArgs`]). A call:
//!
//! 1. compiles only the fragment, with the calling agent's tools as the
//!    capability grant (a child never gets a tool its parent lacks);
//! 2. checks the fragment's estimate against what the calling run has left
//!    (tokens, cost, descendants, depth): cost-aware spawning, refused with
//!    a diagnostic the model can act on, before any model call;
//! 3. splices the fragment's nodes under the caller in the
//!    [`SpawnRegistry`] (the live DAG of the root's agents);
//! 4. runs it as children of the calling run, and returns the joined
//!    result to the model: when the caller is an agent of a lowered graph
//!    (it runs in a graph task), the fragment is lowered
//!    ([`crate::lower`]) and run as a subgraph of the caller's task (its
//!    namespace continues the task's, `…|tool:CALL_ID`, and so does its
//!    recursion stack); elsewhere the interim executor runs it.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use tinyagents_blueprint::spawn::{Spawning, SpawnRegistry};
//! use tinyagents_blueprint::{CapabilityGrant, CompileOptions, Toolbox};
//! use tinyagents_core::ModelResponse;
//! use tinyagents_harness::Agent;
//! use tinyagents_providers::ScriptedModel;
//!
//! let worker_model = Arc::new(ScriptedModel::cycle([ModelResponse::text("42")]));
//! let spawning = Spawning::new(
//!     Arc::new(Toolbox::new().default_model(worker_model)),
//!     SpawnRegistry::new(),
//!     CompileOptions::new().default_model("any"),
//! );
//! let fragment = serde_json::json!({"blueprint": {"name": "team", "nodes": [
//!     {"kind": "agent", "name": "solver", "task": "What is 6 × 7?", "rationale": "arithmetic"}]}});
//! let boss = Agent::builder("boss")
//!     .model(ScriptedModel::new([
//!         ScriptedModel::call("spawn_agents", fragment),
//!         ModelResponse::text("The team says 42."),
//!     ]))
//!     .tool(spawning.tool(CapabilityGrant::none()))
//!     .build();
//! let out = boss.run("compute").await.unwrap();
//! assert_eq!(&*out.text, "The team says 42.");
//! assert_eq!(spawning.registry().len(), 2); // boss and the spawned solver
//! # });
//! ```

pub mod registry;
mod tool;

pub use registry::{RegId, RegNode, SpawnRegistry, SpawnStatus};
pub use tool::{SPAWN_TOOL, SpawnAgentsTool, SpawnArgs, Spawning, check_budget};
