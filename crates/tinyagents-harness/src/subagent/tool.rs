//! [`SubAgentTool`]: a sub-agent behind the ordinary tool interface.

use std::sync::Arc;

use tinyagents_core::{Tool, ToolContext, ToolError};

use super::SubAgent;

/// The argument field a [`SubAgentTool`] reads the child's input from.
///
/// The tool's argument schema is `{"input": string}`; a model calls a
/// sub-agent named `researcher` with `{"input": "find X"}`.
pub const SUBAGENT_INPUT_FIELD: &str = "input";

/// Arguments of a [`SubAgentTool`].
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubAgentArgs {
    /// The task for the sub-agent, self-contained: it sees nothing else of
    /// the conversation.
    pub input: String,
}

/// A sub-agent exposed as a tool (see the module docs).
///
/// On success the tool's output is the child's final answer. On failure the
/// parent model receives an error it can act on (for a depth overflow: which
/// run, which depth, which cap, and to answer without delegating), and the
/// parent's [`AgentOutput::failures`](crate::AgentOutput::failures) records
/// the child's [`RunError`](tinyagents_core::RunError): never a silent
/// success.
#[derive(Debug, Clone)]
pub struct SubAgentTool {
    sub: SubAgent,
    description: Arc<str>,
}

impl SubAgentTool {
    /// Wraps `sub`; the tool's name is the sub-agent's.
    pub fn new(sub: SubAgent) -> Self {
        let description = format!(
            "Delegate a task to the `{}` sub-agent: {} Put the whole task in `{SUBAGENT_INPUT_FIELD}`.",
            sub.name(),
            sub.agent().description()
        )
        .into();
        Self { sub, description }
    }
}

impl Tool for SubAgentTool {
    type Args = SubAgentArgs;
    type Output = Arc<str>;
    type Error = ToolError;

    fn name(&self) -> &str {
        self.sub.name()
    }

    fn description(&self) -> &str {
        &self.description
    }

    async fn call(&self, ctx: ToolContext, args: SubAgentArgs) -> Result<Arc<str>, ToolError> {
        match self.sub.invoke_in_parent(&ctx.run, args.input).await {
            Ok(out) => Ok(out.text),
            Err(e) => Err(ToolError::ChildRun(Box::new(e))),
        }
    }
}
