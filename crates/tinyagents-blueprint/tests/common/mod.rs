//! Helpers shared by the blueprint integration tests.
#![allow(dead_code)]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod dag;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tinyagents_blueprint::{
    AgentFactory, CompileOptions, ExecError, ExecOutput, Inputs, Plan, compile, execute, load_file, parse_text,
    run_lowered,
};
use tinyagents_core::RunContext;
use tinyagents_core::{BoxFuture, Message, Model, ModelError, ModelRequest, ModelResponse};
use tinyagents_providers::ScriptedModel;

/// The property tests' configuration: `cases` cases from a fixed seed, so
/// the suite is deterministic (a failure found once is also kept in the
/// test's `.proptest-regressions` file); `PROPTEST_RNG_SEED=<n>` explores
/// other inputs.
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    let default = proptest::test_runner::Config::default();
    proptest::test_runner::Config {
        cases,
        rng_seed: if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
            default.rng_seed
        } else {
            proptest::test_runner::RngSeed::Fixed(0x7a6e_7453)
        },
        ..default
    }
}

/// The repository's `examples/blueprints` folder.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/blueprints")
}

/// The plan of a blueprint written in the text syntax (default model `m`).
pub fn plan_of(src: &str) -> Plan {
    let bp = parse_text("t.ta", src).unwrap().blueprint;
    compile(&bp, &CompileOptions::new().default_model("m")).unwrap_or_else(|d| panic!("{d:?}"))
}

/// The plan of the example blueprint `name` (its JSON form).
pub fn example(name: &str) -> Plan {
    let loaded = load_file(&examples_dir().join(format!("{name}.json"))).unwrap();
    compile(&loaded.blueprint, &CompileOptions::new()).unwrap_or_else(|d| panic!("{d:?}"))
}

/// Blueprint inputs from name/value pairs.
pub fn inputs(pairs: &[(&str, serde_json::Value)]) -> Inputs {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// The two ways a plan runs: the interim executor and the lowering onto
/// the graph runtime. Behaviour both must share is tested on both.
#[derive(Clone, Copy, Debug)]
pub enum Runner {
    /// [`execute`].
    Executor,
    /// [`run_lowered`].
    Graph,
}

impl Runner {
    /// Both runners.
    pub const BOTH: [Runner; 2] = [Runner::Executor, Runner::Graph];

    /// Runs `plan` under `ctx` with this runner.
    pub async fn run(
        self,
        plan: &Plan,
        ctx: &RunContext,
        factory: &dyn AgentFactory,
        inputs: &Inputs,
    ) -> Result<ExecOutput, ExecError> {
        match self {
            Runner::Executor => execute(plan, ctx, factory, inputs).await,
            Runner::Graph => run_lowered(plan, ctx, factory, inputs).await,
        }
    }
}

/// The example names (without extension).
pub const EXAMPLES: [&str; 3] = ["research_team", "review_loop", "recursive_decomposition"];

/// The text of the newest user message of a request.
pub fn task_of(req: &ModelRequest) -> String {
    req.messages
        .iter()
        .filter_map(|m| match m {
            Message::User { content } => Some(content.to_string()),
            _ => None,
        })
        .last()
        .unwrap_or_default()
}

/// A scripted model answering by agent name: `f(agent, task)`.
pub fn by_agent(f: impl Fn(&str, &str) -> String + Send + Sync + 'static) -> Arc<ScriptedModel> {
    Arc::new(ScriptedModel::from_fn(move |req| {
        Ok(ModelResponse::text(f(&req.agent, &task_of(req))).with_usage(tinyagents_core::Usage::call(10, 5)))
    }))
}

/// The agent names a scripted model received requests from.
pub fn agents_called(model: &ScriptedModel) -> Vec<String> {
    model.requests().iter().map(|r| r.agent.to_string()).collect()
}

/// A model that counts calls in flight and remembers the most at once.
pub struct Gauge {
    pub inner: Arc<ScriptedModel>,
    pub delay: Duration,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

impl Gauge {
    pub fn new(inner: Arc<ScriptedModel>, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner,
            delay,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        })
    }

    pub fn max(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Model for Gauge {
    fn id(&self) -> &str {
        "gauge"
    }
    fn complete<'a>(&'a self, request: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let r = self.inner.complete(request).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            r
        })
    }
}
