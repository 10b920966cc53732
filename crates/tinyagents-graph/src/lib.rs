#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod builder;
pub mod error;
pub mod export;
pub mod interrupt;
pub mod node;
mod recursion;
pub mod runtime;
pub mod state;
pub mod stream;
pub mod subagent;
pub mod subgraph;

pub use builder::{CompileError, CompiledGraph, GraphBuilder, GraphRef, GraphSlot};
pub use error::{GraphError, RecursionLimit};
pub use export::{to_dot, to_mermaid};
pub use interrupt::{interrupt, task_recursion_stack, with_task_scratch};
pub use node::{Command, END, NodeContext, NodeError, NodeInput, NodeOutput, Route, Routes, START, Send};
pub use runtime::{Durability, GraphOutput, Resume, RunOptions, RunStatus, StateView};
pub use state::{Reducer, Update};
pub use stream::{GraphStream, StreamMode, StreamPart};
pub use subagent::{InputMapper, OutputMapper, RetryPolicy, SubAgentCache, SubAgentNode, SubAgentPolicy};
pub use subgraph::{GraphToolArgs, SubgraphNode};
pub use tinyagents_core::{GraphId, NodeId, RecursionFrame, RecursionPolicy, TaskId};
pub use tinyagents_store::SqliteCheckpointer;
pub use tinyagents_store::{
    CheckpointSummary, Checkpointer, ChildRunKind, ChildRunRef, InterruptRecord, MemoryCheckpointer, StoreError,
};
