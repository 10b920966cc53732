//! [`Agent`]: a model, a system prompt, tools and limits; and its output.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tinyagents_core::{
    BoxFuture, Cost, Message, Model, ModelError, ModelRequest, ModelResponse, RunConfig, RunContext, RunError, RunId,
    RunLimits, RunMeta, SharedModel, SharedTool, ToolError, ToolSpec, Transcript, Usage,
};

use crate::checkpoint::AgentCheckpointer;
use crate::driver;
use crate::machine::AgentRun;

pub(crate) struct AgentInner {
    pub(crate) name: Arc<str>,
    pub(crate) description: Arc<str>,
    pub(crate) base: Transcript,
    pub(crate) model: SharedModel,
    /// `model.id()`, taken once at build: every run names its model in
    /// events and prices with it, without allocating the id per run.
    pub(crate) model_id: Arc<str>,
    pub(crate) tools: HashMap<Arc<str>, SharedTool>,
    pub(crate) specs: Arc<[ToolSpec]>,
    pub(crate) limits: RunLimits,
    pub(crate) tool_timeout: Option<Duration>,
    /// Name, tools and answer format, shared by every run of the agent.
    pub(crate) run_spec: Arc<crate::machine::RunSpec>,
}

type ToolMap = HashMap<Arc<str>, SharedTool>;

impl Drop for AgentInner {
    fn drop(&mut self) {
        drop_tools_iteratively(std::mem::take(&mut self.tools));
    }
}

/// Drops an agent's tools without recursing through nested sub-agents.
///
/// An agent owns its tools and a sub-agent tool owns its agent, so a chain
/// of 10,000 nested sub-agents would otherwise be dropped 10,000 levels deep
/// (several stack frames per level) and overflow the stack. The outermost
/// drop on a thread drains a queue; drops nested inside it only enqueue.
fn drop_tools_iteratively(tools: ToolMap) {
    thread_local! {
        static PENDING: std::cell::RefCell<Option<Vec<ToolMap>>> = const { std::cell::RefCell::new(None) };
    }
    // `Some(tools)` back means: no drain is running here, run one.
    let first = PENDING.try_with(|pending| match pending.try_borrow_mut() {
        Ok(mut pending) => match pending.as_mut() {
            Some(queue) => {
                queue.push(tools);
                None
            }
            None => {
                *pending = Some(Vec::new());
                Some(tools)
            }
        },
        Err(_) => Some(tools),
    });
    let Ok(Some(first)) = first else {
        // Either enqueued, or the thread-local is gone (thread exit): the
        // map was dropped right there, as before.
        return;
    };
    drop(first);
    loop {
        let next = PENDING.try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.as_mut().and_then(Vec::pop)));
        match next {
            Ok(Some(tools)) => drop(tools),
            _ => break,
        }
    }
    let _ = PENDING.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            *p = None;
        }
    });
}

/// An agent: cheap to clone, shareable across tasks.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use tinyagents_core::ModelResponse;
/// use tinyagents_harness::Agent;
/// use tinyagents_providers::ScriptedModel;
///
/// let agent = Agent::builder("greeter")
///     .system("Greet the user.")
///     .model(ScriptedModel::new([ModelResponse::text("hello!")]))
///     .build();
/// let out = agent.run("hi").await.unwrap();
/// assert_eq!(&*out.text, "hello!");
/// # });
/// ```
#[derive(Clone)]
pub struct Agent(pub(crate) Arc<AgentInner>);

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.0.name)
            .field("model", &self.0.model.id())
            .field("tools", &self.0.specs.iter().map(|s| &s.name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Starts building an agent named `name`.
    pub fn builder(name: impl Into<Arc<str>>) -> AgentBuilder {
        AgentBuilder {
            name: name.into(),
            description: None,
            system: None,
            model: None,
            tools: Vec::new(),
            limits: RunLimits::inherit(),
            tool_timeout: None,
            response_format: None,
            max_output_tokens: None,
        }
    }

    /// The agent's name.
    pub fn name(&self) -> &Arc<str> {
        &self.0.name
    }

    /// What the agent does (shown to a parent that calls it as a tool).
    pub fn description(&self) -> &Arc<str> {
        &self.0.description
    }

    /// The limits the agent asks for.
    pub fn limits(&self) -> &RunLimits {
        &self.0.limits
    }

    /// The tools offered to the model.
    pub fn tool_specs(&self) -> &Arc<[ToolSpec]> {
        &self.0.specs
    }

    /// Runs the agent as a new root with the default configuration.
    pub async fn run(&self, input: impl Into<Arc<str>>) -> Result<AgentOutput, RunError> {
        self.run_with(&RunConfig::default(), input).await
    }

    /// Runs the agent as a new root with `config` (limits, sink, prices).
    /// The root's limits are the tighter of `config.limits` and the agent's.
    pub async fn run_with(&self, config: &RunConfig, input: impl Into<Arc<str>>) -> Result<AgentOutput, RunError> {
        let ctx = self.root_context(config);
        let run = self.start(&ctx, self.0.base.clone(), [Message::user(input)]);
        self.drive(&ctx, run).await
    }

    /// The root context a run of this agent gets under `config`.
    pub fn root_context(&self, config: &RunConfig) -> RunContext {
        let mut config = config.clone();
        config.limits = config.limits.intersect(&self.0.limits);
        RunContext::root(self.0.name.clone(), &config)
    }

    /// A fresh state machine for this agent in `ctx`, over `prefix` followed
    /// by `messages`.
    pub fn start(&self, ctx: &RunContext, prefix: Transcript, messages: impl IntoIterator<Item = Message>) -> AgentRun {
        let mut transcript = prefix;
        for m in messages {
            transcript.push(m);
        }
        AgentRun::with_spec(self.0.run_spec.clone(), transcript)
            .max_turns(ctx.limits().effective_max_turns())
            .identity(ctx.run_id(), ctx.depth())
    }

    /// Drives `run` to completion in `ctx` (the async driver).
    ///
    /// Not an `async fn`: that would keep `run` twice in the future's state
    /// (as the argument and as the local the driver borrows); the block
    /// below captures it once.
    pub fn drive<'a>(
        &'a self,
        ctx: &'a RunContext,
        run: AgentRun,
    ) -> impl std::future::Future<Output = Result<AgentOutput, RunError>> + Send + 'a {
        let mut run = run;
        async move { driver::drive(&self.0, ctx, &mut run, None).await }
    }

    /// [`drive`](Self::drive), owning a handle on the agent and the context:
    /// a `'static` future that another task can embed (a graph node runs a
    /// sub-agent inside its own task this way, without a tokio task of its
    /// own). The agent, the context and the run are each kept once.
    pub fn drive_owned(
        &self,
        ctx: RunContext,
        run: AgentRun,
    ) -> impl std::future::Future<Output = Result<AgentOutput, RunError>> + Send + 'static {
        let (agent, mut run) = (self.0.clone(), run);
        async move { driver::drive(&agent, &ctx, &mut run, None).await }
    }

    /// Runs the agent as a new root, saving a checkpoint after every step
    /// (and journaling its steering log) to `store`. The run id to resume
    /// with is in the events (`RunStarted`) and in the store.
    pub async fn run_durable(
        &self,
        config: &RunConfig,
        input: impl Into<Arc<str>>,
        store: Arc<dyn AgentCheckpointer>,
    ) -> Result<AgentOutput, RunError> {
        let ctx = self.root_context(config);
        let mut run = self.start(&ctx, self.0.base.clone(), [Message::user(input)]);
        let durable = driver::Durable { store, seq: 0 };
        driver::drive(&self.0, &ctx, &mut run, Some(durable)).await
    }

    /// Continues a checkpointed root run of this agent after a crash: same
    /// run id, usage so far restored, the step it was on re-issued, and
    /// steering accepted before the crash applied exactly once.
    pub async fn resume(
        &self,
        config: &RunConfig,
        run_id: RunId,
        store: Arc<dyn AgentCheckpointer>,
    ) -> Result<AgentOutput, RunError> {
        let invalid = |message: String| RunError::Invalid {
            path: tinyagents_core::RunPath::root(self.0.name.clone()),
            depth: 0,
            message,
        };
        let (cp, journal) = store
            .load(run_id)
            .map_err(|e| invalid(format!("cannot resume run {run_id}: {e}")))?
            .ok_or_else(|| invalid(format!("cannot resume run {run_id}: no checkpoint")))?;
        let mut config = config.clone();
        config.limits = config.limits.intersect(&self.0.limits);
        let ctx = RunContext::resume_root(cp.meta.clone(), &config);
        ctx.restore_usage(&cp.usage, cp.cost);
        if let Some(control) = crate::steering::SteeringHub::of(&ctx).and_then(|h| h.control(ctx.run_id())) {
            control.restore(crate::steering::SteeringLog::merge(&cp.steering, &journal));
        }
        let durable = driver::Durable { store, seq: cp.seq };
        let mut run = cp.run;
        driver::drive(&self.0, &ctx, &mut run, Some(durable)).await
    }

    /// The transcript every run of this agent starts from (its system prompt).
    pub fn base_transcript(&self) -> &Transcript {
        &self.0.base
    }
}

/// Builds an [`Agent`].
pub struct AgentBuilder {
    name: Arc<str>,
    description: Option<Arc<str>>,
    system: Option<Arc<str>>,
    model: Option<SharedModel>,
    tools: Vec<SharedTool>,
    limits: RunLimits,
    tool_timeout: Option<Duration>,
    response_format: Option<Arc<serde_json::Value>>,
    max_output_tokens: Option<u32>,
}

impl AgentBuilder {
    /// The system prompt.
    #[must_use]
    pub fn system(mut self, prompt: impl Into<Arc<str>>) -> Self {
        self.system = Some(prompt.into());
        self
    }

    /// What the agent does, for parents that call it as a tool.
    #[must_use]
    pub fn description(mut self, text: impl Into<Arc<str>>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// The model.
    #[must_use]
    pub fn model(self, model: impl Model) -> Self {
        self.shared_model(Arc::new(model))
    }

    /// A model shared with other agents or kept for inspection.
    #[must_use]
    pub fn shared_model(mut self, model: SharedModel) -> Self {
        self.model = Some(model);
        self
    }

    /// Adds a tool. A later tool with the same name replaces an earlier one.
    #[must_use]
    pub fn tool(mut self, tool: SharedTool) -> Self {
        self.tools.push(tool);
        self
    }

    /// Adds tools.
    #[must_use]
    pub fn tools(mut self, tools: impl IntoIterator<Item = SharedTool>) -> Self {
        self.tools.extend(tools);
        self
    }

    /// Adds a sub-agent, callable as a tool named after it.
    #[must_use]
    pub fn subagent(self, sub: crate::subagent::SubAgent) -> Self {
        self.tool(sub.into_tool())
    }

    /// The limits this agent asks for (narrowed by its parent's). Without
    /// this call the agent asks for nothing and inherits its parent's limits;
    /// use [`RunLimits::inherit`] as the starting point to add only some.
    #[must_use]
    pub fn limits(mut self, limits: RunLimits) -> Self {
        self.limits = limits;
        self
    }

    /// A time limit on each plain tool call.
    #[must_use]
    pub fn tool_timeout(mut self, timeout: Duration) -> Self {
        self.tool_timeout = Some(timeout);
        self
    }

    /// Requires final answers to match a JSON Schema (structured output).
    #[must_use]
    pub fn response_format(mut self, schema: serde_json::Value) -> Self {
        self.response_format = Some(Arc::new(schema));
        self
    }

    /// Caps the tokens of each of this agent's model replies (sent as the
    /// request's `max_output_tokens`; a steering policy may lower it, never
    /// raise it). A reply cut at the cap fails the call the way the model
    /// reports it, so size the cap for the answer the agent must give.
    #[must_use]
    pub fn max_output_tokens(mut self, cap: u32) -> Self {
        self.max_output_tokens = Some(cap);
        self
    }

    /// Builds the agent. An agent without a model fails its first model call
    /// with an error that says so.
    pub fn build(self) -> Agent {
        let mut tools = HashMap::with_capacity(self.tools.len());
        let mut order: Vec<Arc<str>> = Vec::with_capacity(self.tools.len());
        for t in self.tools {
            let name = t.spec().name.clone();
            if tools.insert(name.clone(), t).is_none() {
                order.push(name);
            }
        }
        let specs: Arc<[ToolSpec]> = order
            .iter()
            .filter_map(|n| tools.get(n).map(|t| t.spec().clone()))
            .collect();
        let mut base = Transcript::new();
        if let Some(s) = &self.system {
            base.push(Message::System { content: s.clone() });
        }
        let name = self.name;
        let model = self
            .model
            .unwrap_or_else(|| Arc::new(NoModel(format!("agent {name:?} has no model configured"))));
        let run_spec = Arc::new(crate::machine::RunSpec {
            agent: name.clone(),
            tools: specs.clone(),
            response_format: self.response_format,
            max_output_tokens: self.max_output_tokens,
        });
        Agent(Arc::new(AgentInner {
            run_spec,
            description: self
                .description
                .or(self.system)
                .unwrap_or_else(|| format!("The {name} agent.").into()),
            name,
            base,
            model_id: model.id().into(),
            model,
            tools,
            specs,
            limits: self.limits,
            tool_timeout: self.tool_timeout,
        }))
    }
}

struct NoModel(String);

impl Model for NoModel {
    fn id(&self) -> &str {
        "none"
    }
    fn complete<'a>(&'a self, _: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            Err(ModelError::Other {
                message: self.0.clone(),
            })
        })
    }
}

/// A tool call that failed during a run.
#[derive(Debug, Clone)]
pub struct ToolFailure {
    /// The call's id.
    pub call_id: Arc<str>,
    /// The tool's name.
    pub tool: Arc<str>,
    /// What went wrong (for a sub-agent, the child's [`RunError`]).
    pub error: ToolError,
}

/// A finished agent run.
#[derive(Debug, Clone)]
pub struct AgentOutput {
    /// The final answer.
    pub text: Arc<str>,
    /// Identity of the run.
    pub run: RunMeta,
    /// The whole conversation.
    pub transcript: Transcript,
    /// Model turns taken.
    pub turns: u32,
    /// Usage of this run's own model calls.
    pub usage: Usage,
    /// Cost of this run's own model calls.
    pub cost: Cost,
    /// Usage of this run and all its descendants.
    pub total_usage: Usage,
    /// Cost of this run and all its descendants.
    pub total_cost: Cost,
    /// Tool calls of this run that failed (the model was told; the run
    /// continued). A sub-agent that failed appears here with its error.
    pub failures: Vec<ToolFailure>,
    /// Failures recorded anywhere below this run.
    pub descendant_failures: u64,
}

impl AgentOutput {
    /// True when nothing failed in this run or below it.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty() && self.descendant_failures == 0
    }
}
