#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod author;
pub mod capability;
pub mod compile;
pub mod diagnostic;
pub mod estimate;
pub mod execute;
mod graph;
pub mod ir;
pub mod load;
pub mod lower;
pub mod optimize;
pub mod plan;
pub mod resolve;
pub mod spawn;
pub mod syntax;
pub mod validate;
mod values;

pub use author::{Author, AuthorError, Authored, plan_from_model};
pub use capability::CapabilityGrant;
pub use compile::{Checked, CompileOptions, check_file, compile, compile_loaded};
pub use diagnostic::{Diagnostic, JsonPath, Report, Severity, SourceFile, SourceKind, render_diagnostics};
pub use estimate::{Estimate, EstimateDefaults};
pub use execute::{
    AgentFactory, BuildRequest, ExecError, ExecOutput, Executor, FactoryError, Inputs, Toolbox, execute,
};
pub use ir::{
    AgentBudget, AgentSpec, Blueprint, Condition, EstimateHint, ExpectedOutput, InputSpec, JoinSpec, MapSpec, Node,
    RecursionPolicy, ReduceSpec, Route, RouterSpec, SubgraphSpec, ValueType, blueprint_json_schema,
};
pub use load::{
    Loaded, format_file, format_loaded, format_source, load_file, parse_json, parse_source, parse_text, to_json,
};
pub use lower::{lower, run_graph, run_lowered};
pub use plan::{Plan, PlanNode, PlanNodeKind};
pub use spawn::{SPAWN_TOOL, SpawnAgentsTool, SpawnArgs, SpawnRegistry, SpawnStatus, Spawning};
pub use syntax::format_blueprint;
