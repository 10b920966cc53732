//! The benchmarked scenarios, built once and run many times.
//!
//! Every scenario is a root [`Agent`] plus the [`RunConfig`] it runs under.
//! All models are [`ScriptedModel`]s with request recording off
//! ([`ScriptedModel::without_recording`]), so what is measured is the
//! harness: spawning, budgets, the state machine, tool dispatch, roll-ups and
//! (when the sink is enabled) events. Scripted replies are built once; a run
//! clones them (reference-count increments, as a provider hands over a
//! parsed reply).
//!
//! | scenario | shape |
//! |---|---|
//! | [`single_agent`] | one agent, one model turn answering text |
//! | [`Fanout`] | one orchestrator turn calling N sub-agents at once, then a text turn |
//! | [`sequential`] | N orchestrator turns, each calling one sub-agent |
//! | [`nested_chain`] | level *i* calls level *i + 1*, N levels deep |
//!
//! Every sub-agent is a real child run: spawned through
//! `RunContext::spawn_child`, run on its own tokio task by its own driver,
//! its usage rolled up into the parent. Nothing is skipped.

use std::sync::Arc;

use tinyagents_core::{
    ModelResponse, NullSink, RunConfig, RunError, RunLimits, SharedModel, SharedSink, ToolCall, Usage,
};
use tinyagents_harness::{Agent, AgentOutput, SubAgent};
use tinyagents_providers::ScriptedModel;

/// Usage of one sub-agent's model call.
pub const WORKER_USAGE: Usage = Usage::call(10, 2);
/// Usage of one orchestrator model call.
pub const ORCHESTRATOR_USAGE: Usage = Usage::call(100, 20);

/// A root agent and the configuration it runs under.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The root agent.
    pub agent: Agent,
    /// Limits, sink and prices of the root run.
    pub config: RunConfig,
    /// The root's input.
    pub input: Arc<str>,
}

impl Scenario {
    /// Runs the scenario once, as a new root run.
    pub async fn run(&self) -> Result<AgentOutput, RunError> {
        self.agent.run_with(&self.config, self.input.clone()).await
    }

    /// Runs the scenario `iters` times, dropping each output before the
    /// next run (so its teardown is part of the cost), and summarizes the
    /// last one. Fails on the first error.
    pub async fn run_times(&self, iters: u64) -> Result<RunSummary, RunError> {
        let mut summary = RunSummary::default();
        for _ in 0..iters {
            let out = self.run().await?;
            summary = RunSummary {
                text: Some(out.text.clone()),
                total_requests: out.total_usage.requests,
                transcript_len: out.transcript.len(),
                clean: out.is_clean(),
            };
            drop(out);
        }
        Ok(summary)
    }
}

/// What a benchmark checks about a finished run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// The final answer.
    pub text: Option<Arc<str>>,
    /// Model calls of the whole tree (the root's and every descendant's).
    pub total_requests: u64,
    /// Messages in the root's transcript.
    pub transcript_len: usize,
    /// True when nothing failed anywhere in the tree.
    pub clean: bool,
}

/// The sink to run with: `None` is a [`NullSink`] (events are never built).
fn sink_or_null(sink: Option<SharedSink>) -> SharedSink {
    sink.unwrap_or_else(|| Arc::new(NullSink))
}

/// The child of the fan-out and sequential scenarios: one text turn.
pub fn worker() -> Agent {
    let model = ScriptedModel::cycle([ModelResponse::text("done").with_usage(WORKER_USAGE)])
        .with_id("worker-model")
        .without_recording();
    Agent::builder("worker")
        .system("Do the task you are given and answer in one line.")
        .model(model)
        .build()
}

/// One agent answering one text turn.
pub fn single_agent(sink: Option<SharedSink>) -> Scenario {
    let model = ScriptedModel::cycle([ModelResponse::text("hello").with_usage(WORKER_USAGE)]).without_recording();
    Scenario {
        agent: Agent::builder("assistant")
            .system("Greet the user.")
            .model(model)
            .build(),
        config: RunConfig::new().sink(sink_or_null(sink)),
        input: "hi".into(),
    }
}

/// Options of a [`Fanout`].
#[derive(Clone)]
pub struct FanoutOptions {
    /// Sub-agents called in the one turn.
    pub n: usize,
    /// Where events go (`None`: a [`NullSink`]).
    pub sink: Option<SharedSink>,
    /// `max_concurrent_children` of the orchestrator (`None`: no cap).
    pub max_concurrent: Option<usize>,
    /// The child every call runs (default [`worker`]).
    pub child: Option<Agent>,
}

impl std::fmt::Debug for FanoutOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutOptions")
            .field("n", &self.n)
            .field("sink", &self.sink.is_some())
            .field("max_concurrent", &self.max_concurrent)
            .finish_non_exhaustive()
    }
}

impl FanoutOptions {
    /// N sub-agents, no sink, no cap, the default worker.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            sink: None,
            max_concurrent: None,
            child: None,
        }
    }

    /// Sends events to `sink`.
    #[must_use]
    pub fn sink(mut self, sink: SharedSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Caps the sub-agents running at once.
    #[must_use]
    pub fn max_concurrent(mut self, cap: usize) -> Self {
        self.max_concurrent = Some(cap);
        self
    }

    /// Runs `child` instead of the default worker.
    #[must_use]
    pub fn child(mut self, child: Agent) -> Self {
        self.child = Some(child);
        self
    }
}

/// One orchestrator turn calling N sub-agents (see the module docs).
pub struct Fanout;

impl Fanout {
    /// Builds the scenario: the orchestrator's first reply holds N calls of
    /// the `worker` sub-agent tool (ids `c0`…), its second reply is text.
    pub fn build(opts: FanoutOptions) -> Scenario {
        let child = opts.child.unwrap_or_else(worker);
        let tool_name: Arc<str> = child.name().clone();
        let args: Arc<str> = Arc::from(r#"{"input":"summarize part of the corpus"}"#);
        let calls: Vec<ToolCall> = (0..opts.n)
            .map(|i| ToolCall::raw(format!("c{i}"), tool_name.clone(), args.clone()))
            .collect();
        let first = ModelResponse::tool_calls(calls).with_usage(ORCHESTRATOR_USAGE);
        let last = ModelResponse::text("all parts summarized").with_usage(ORCHESTRATOR_USAGE);
        let model = ScriptedModel::from_fn(move |req| Ok(if req.turn == 0 { first.clone() } else { last.clone() }))
            .with_id("orchestrator-model")
            .without_recording();
        let mut limits = RunLimits::new();
        if let Some(cap) = opts.max_concurrent {
            limits = limits.max_concurrent_children(cap);
        }
        Scenario {
            agent: Agent::builder("orchestrator")
                .system("Split the work and delegate every part.")
                .model(model)
                .subagent(SubAgent::new(child))
                .limits(limits.clone())
                .build(),
            config: RunConfig::new().limits(limits).sink(sink_or_null(opts.sink)),
            input: "summarize the corpus".into(),
        }
    }
}

/// N orchestrator turns, each calling the `worker` sub-agent once, then a
/// text turn. `max_turns` is raised to N + 1.
pub fn sequential(n: u32, sink: Option<SharedSink>) -> Scenario {
    let args: Arc<str> = Arc::from(r#"{"input":"next step"}"#);
    let name: Arc<str> = Arc::from("worker");
    let last = ModelResponse::text("all steps done").with_usage(ORCHESTRATOR_USAGE);
    let model = ScriptedModel::from_fn(move |req| {
        Ok(if req.turn < n {
            ModelResponse::tool_calls(vec![ToolCall::raw(
                format!("s{}", req.turn),
                name.clone(),
                args.clone(),
            )])
            .with_usage(ORCHESTRATOR_USAGE)
        } else {
            last.clone()
        })
    })
    .without_recording();
    let limits = RunLimits::new().max_turns(n.saturating_add(1));
    Scenario {
        agent: Agent::builder("orchestrator")
            .system("Delegate one step at a time.")
            .model(model)
            .subagent(SubAgent::new(worker()))
            .limits(limits.clone())
            .build(),
        config: RunConfig::new().limits(limits).sink(sink_or_null(sink)),
        input: "run all steps".into(),
    }
}

/// A chain of `depth` nested sub-agents: `level0` (the root) calls `level1`,
/// which calls `level2`, … down to `level{depth}`, which answers text. Each
/// level answers with its child's answer. `max_depth` is raised to `depth`.
///
/// One scripted model is shared by all levels: it calls the next level when
/// the last message is the task, and answers when it is the child's result.
pub fn nested_chain(depth: u32, sink: Option<SharedSink>) -> Scenario {
    let args: Arc<str> = Arc::from(r#"{"input":"go one level deeper"}"#);
    let names: Arc<[Arc<str>]> = (0..=depth).map(|i| Arc::from(format!("level{i}"))).collect();
    let leaf = ModelResponse::text("bottom reached").with_usage(WORKER_USAGE);
    let model_names = names.clone();
    let model: SharedModel = Arc::new(
        ScriptedModel::from_fn(move |req| {
            let last = req.messages.last();
            if let Some(tinyagents_core::Message::Tool { content, .. }) = last {
                return Ok(ModelResponse::text(content.clone()).with_usage(WORKER_USAGE));
            }
            let next = usize::try_from(req.depth).ok().and_then(|d| model_names.get(d + 1));
            Ok(match next {
                Some(name) => ModelResponse::tool_calls(vec![ToolCall::raw("next", name.clone(), args.clone())])
                    .with_usage(WORKER_USAGE),
                None => leaf.clone(),
            })
        })
        .without_recording(),
    );
    let limits = RunLimits::new().max_depth(depth);
    let mut below: Option<Agent> = None;
    for name in names.iter().rev() {
        let mut b = Agent::builder(name.clone())
            .description("One level of the chain.")
            .shared_model(model.clone())
            .limits(limits.clone());
        if let Some(child) = below.take() {
            b = b.subagent(SubAgent::new(child));
        }
        below = Some(b.build());
    }
    let agent = below.unwrap_or_else(worker);
    Scenario {
        agent,
        config: RunConfig::new().limits(limits).sink(sink_or_null(sink)),
        input: "descend".into(),
    }
}

/// A multi-thread tokio runtime with exactly two workers (the benchmark
/// machine has two cores).
pub fn two_worker_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// True when the binary was started by `cargo bench` (with `--bench` and
/// without `--test`); false under `cargo test --all-targets`, where bench
/// targets run each case once and use small sizes.
pub fn bench_mode() -> bool {
    let mut bench = false;
    for a in std::env::args() {
        match a.as_str() {
            "--bench" => bench = true,
            "--test" => return false,
            _ => {}
        }
    }
    bench
}
