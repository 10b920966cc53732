//! [`SubAgentTool`]: a sub-agent behind the ordinary tool interface.

use std::sync::Arc;

use futures::FutureExt;
use tinyagents_core::tool::parse_args;
use tinyagents_core::{BoxFuture, ChildEvents, DynTool, Message, Tool, ToolContext, ToolError, ToolSpec};

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

/// [`SubAgentArgs`] borrowing its input from the argument text.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BorrowedArgs<'a> {
    #[serde(borrow)]
    input: std::borrow::Cow<'a, str>,
}

/// The erased form of a [`SubAgentTool`] that [`SubAgent::into_tool`] hands
/// out. Same behaviour as erasing it with `into_dyn`, but the child is
/// started synchronously in `call_json` and the returned future only waits
/// for it: it holds the child's join handle and run context (two words)
/// instead of the nested state of parsing, `call`, `invoke_in_parent` and
/// the start. A fan-out of N sub-agents keeps N of these alive at once.
pub(crate) struct ErasedSubAgentTool {
    tool: SubAgentTool,
    spec: ToolSpec,
}

impl ErasedSubAgentTool {
    pub(crate) fn new(tool: SubAgentTool) -> Self {
        let spec = ToolSpec::for_args::<SubAgentArgs>(tool.name(), tool.description());
        Self { tool, spec }
    }
}

impl DynTool for ErasedSubAgentTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call_json<'a>(&'a self, ctx: ToolContext, arguments: &'a str) -> BoxFuture<'a, Result<Arc<str>, ToolError>> {
        let started = parse_args::<BorrowedArgs<'_>>(arguments).and_then(|args| {
            let input: Arc<str> = Arc::from(&*args.input);
            self.tool
                .sub
                .start_child(&ctx.run, None, [Message::user(input)], ChildEvents::Parent, |_| {})
                .map_err(|e| ToolError::ChildRun(Box::new(e)))
        });
        match started {
            Ok(child) => Box::pin(child.map(|r| match r {
                Ok(out) => Ok(out.text),
                Err(e) => Err(ToolError::ChildRun(Box::new(e))),
            })),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}
