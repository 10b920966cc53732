#![doc = include_str!("../README.md")]

pub mod agent;
pub mod checkpoint;
mod driver;
pub mod machine;
pub mod steering;
pub mod subagent;

pub use agent::{Agent, AgentBuilder, AgentOutput, ToolFailure};
pub use machine::{AgentRun, Step, StepError, ToolCalls, ToolOutcome};
pub use steering::{SteeringHub, SteeringPolicy};
pub use subagent::{SUBAGENT_INPUT_FIELD, SubAgent, SubAgentArgs, SubAgentSession, SubAgentTool};
