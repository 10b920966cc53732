#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod budget;
pub mod error;
pub mod event;
pub mod ids;
pub mod message;
pub mod model;
pub mod plist;
pub mod recursion;
pub mod run;
pub mod steering;
pub mod tool;
pub mod usage;

pub use budget::{BudgetScope, LimitKind, RunLimits};
pub use error::{ModelError, PartialResult, RunError, ToolError, ToolErrorKind};
pub use event::{CollectingSink, Event, EventClass, EventKind, EventSink, FnSink, NullSink, SharedSink, TeeSink};
pub use ids::{RunId, RunMeta, RunPath};
pub use message::{Message, ToolCall, Transcript};
pub use model::{BoxFuture, DeltaFn, Model, ModelDelta, ModelRequest, ModelResponse, SharedModel, ToolChoice};
pub use recursion::{GraphId, NodeId, RecursionFrame, RecursionPolicy, TaskId};
pub use run::{ChildEvents, RunConfig, RunContext, RunHooks, SpawnWatcher};
pub use steering::{
    Actor, ActorKind, CommandKind, CorrelationId, DelegationPolicy, SteeringCommand, SteeringInfo, SteeringPhase,
    SteeringRequest, SteeringTarget, ToolPolicy,
};
pub use tool::{DynTool, SharedTool, Tool, ToolContext, ToolSpec, into_dyn, tool_fn, tool_fn_with_context};
pub use usage::{Cost, Price, PriceTable, Usage};
