//! `tinyagents run FILE` for blueprints, and `run --graph-example NAME`.
//!
//! A blueprint is compiled (the same passes as `check`, the CLI's tools as
//! the grant), then run by the blueprint executor
//! ([`tinyagents_blueprint::Executor`]) under a root run named after the
//! blueprint, with the live tree of [`crate::run::run_rooted`]: the same
//! views as a scripted team, fed by the same sink.
//!
//! With `--provider openai|anthropic` every agent calls that model
//! ([`CliFactory::provider`]). Otherwise models are scripted. A blueprint carries no replies, so each agent gets
//! the deterministic echo model ([`crate::echo`]) unless `--responses FILE`
//! gives it replies: a JSON object from agent name to a list of responses,
//! each in the script format's response shape. An agent with responses
//! consumes them in call order across all its runs (map items included);
//! agents not in the file keep the echo model. The tools the CLI provides
//! ([`crate::blueprint::STUB_TOOLS`]) are scripted stand-ins that return a
//! labelled placeholder.
//!
//! Runtime spawning is on: the factory is wrapped in
//! [`Spawning`], so an agent that lists `spawn_agents` gets the tool (its
//! grant: the agent's own tools). A scripted call to it (from
//! `--responses`) compiles the fragment, refuses it with a diagnostic if it
//! asks for more than the caller has, and runs it as the caller's children,
//! in the same live tree.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::Value;
use tinyagents_blueprint::{
    AgentFactory, BuildRequest, Executor, FactoryError, Inputs, SpawnRegistry, Spawning, Toolbox, ValueType,
};
use tinyagents_core::{BoxFuture, DynTool, RunConfig, SharedModel, SharedTool, ToolContext, ToolError, ToolSpec};
use tinyagents_harness::Agent;

use crate::blueprint::{STUB_TOOLS, compile_options, load_checked, load_prices};
use crate::cli::RunArgs;
use crate::echo::echo_model;
use crate::run::{EXIT_USAGE, Mode, run_rooted};
use crate::script::{AgentSpec, ResponseSpec};
use crate::source::{ModelSource, ScriptOptions};

/// Builds blueprint agents with scripted models and the CLI's tools.
pub struct CliFactory {
    models: HashMap<String, SharedModel>,
    provider: Option<SharedModel>,
    tools: Vec<SharedTool>,
}

impl CliFactory {
    /// Agents named in `responses` replay them; the others echo.
    pub fn new(responses: HashMap<String, Vec<ResponseSpec>>, delays: bool) -> Self {
        let source = ModelSource::Script(ScriptOptions { delays });
        let models = responses
            .into_iter()
            .map(|(name, responses)| {
                let spec = AgentSpec {
                    system: None,
                    description: None,
                    model: "scripted".into(),
                    subagents: Vec::new(),
                    delay_ms: 0,
                    cycle: false,
                    limits: None,
                    responses,
                };
                (name, source.model_for(&spec))
            })
            .collect();
        let tools = STUB_TOOLS
            .iter()
            .map(|name| Arc::new(StubTool::new(name)) as SharedTool)
            .collect();
        Self {
            models,
            provider: None,
            tools,
        }
    }

    /// Every agent calls `model` instead (`--provider`), when given.
    #[must_use]
    pub fn provider(mut self, model: Option<SharedModel>) -> Self {
        self.provider = model;
        self
    }
}

impl AgentFactory for CliFactory {
    fn build(&self, req: &BuildRequest<'_>) -> Result<Agent, FactoryError> {
        let name = &req.agent.name;
        let model = match (&self.provider, self.models.get(name)) {
            (Some(p), _) => p.clone(),
            (None, Some(m)) => m.clone(),
            // Under the agent's model id, so `--prices` applies to it.
            (None, None) => Arc::new(echo_model(name).with_id(req.agent.model.clone())),
        };
        let mut toolbox = Toolbox::new().default_model(model);
        for tool in &self.tools {
            toolbox = toolbox.tool(tool.clone());
        }
        toolbox.build(req)
    }
}

/// A scripted stand-in for a tool the CLI provides.
struct StubTool {
    spec: ToolSpec,
}

impl StubTool {
    fn new(name: &str) -> Self {
        Self {
            spec: ToolSpec {
                name: name.into(),
                description: format!("{name} (scripted stand-in: returns a placeholder)").into(),
                parameters: Arc::new(serde_json::json!({"type": "object"})),
            },
        }
    }
}

impl DynTool for StubTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call_json<'a>(&'a self, _ctx: ToolContext, arguments: &'a str) -> BoxFuture<'a, Result<Arc<str>, ToolError>> {
        let text: Arc<str> = format!("[scripted {}] no real results for {arguments}", self.spec.name).into();
        Box::pin(async move { Ok(text) })
    }
}

/// Reads `--responses FILE`.
fn load_responses(path: &Path) -> Result<HashMap<String, Vec<ResponseSpec>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let responses: HashMap<String, Vec<ResponseSpec>> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for (agent, list) in &responses {
        if list.is_empty() {
            return Err(format!("{}: agent `{agent}` has no responses", path.display()));
        }
        for (i, r) in list.iter().enumerate() {
            if r.error.is_some() == (r.content.is_some() || !r.tool_calls.is_empty()) {
                return Err(format!(
                    "{}: response {i} of `{agent}` must be a reply (content and/or tool_calls) or an error",
                    path.display()
                ));
            }
        }
    }
    Ok(responses)
}

/// Parses `--set NAME=VALUE`: JSON arrays and objects as JSON, anything else as text.
fn parse_set(set: &str) -> Result<(String, Value), String> {
    let (name, value) = set
        .split_once('=')
        .ok_or_else(|| format!("--set `{set}`: expected NAME=VALUE"))?;
    let trimmed = value.trim_start();
    let parsed = if trimmed.starts_with('[') || trimmed.starts_with('{') {
        serde_json::from_str(value).map_err(|e| format!("--set {name}: invalid JSON: {e}"))?
    } else {
        Value::String(value.to_string())
    };
    Ok((name.to_string(), parsed))
}

/// `tinyagents run FILE` for a blueprint file.
pub fn execute_blueprint(path: &Path, args: &RunArgs, provider: Option<SharedModel>) -> ExitCode {
    let prices = match load_prices(args.prices.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let checked = match load_checked(path, args.tools.as_deref(), args.prices.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut inputs = Inputs::new();
    for set in &args.set {
        match parse_set(set) {
            Ok((k, v)) => {
                inputs.insert(k, v);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let plan = checked.plan;
    for input in &plan.inputs {
        if inputs.contains_key(&input.name) {
            continue;
        }
        let placeholder = match input.ty {
            ValueType::List => serde_json::json!([
                format!("[placeholder {} 1]", input.name),
                format!("[placeholder {} 2]", input.name)
            ]),
            ValueType::Object => serde_json::json!({}),
            _ => Value::String(format!("[placeholder {}]", input.name)),
        };
        eprintln!(
            "note: input `{}` not given (use --set {}=VALUE); using {placeholder}",
            input.name, input.name
        );
        inputs.insert(input.name.clone(), placeholder);
    }
    let responses = match &args.responses {
        _ if provider.is_some() => HashMap::new(),
        Some(file) => match load_responses(file) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => {
            eprintln!(
                "note: scripted run: every agent answers with the echo model ([scripted] …); --responses FILE scripts replies"
            );
            HashMap::new()
        }
    };
    let registry = SpawnRegistry::new();
    let fragments = compile_options(args.tools.as_deref(), prices.clone()).default_model("scripted");
    let factory = Spawning::new(
        Arc::new(CliFactory::new(responses, !args.no_delay).provider(provider)),
        registry.clone(),
        fragments,
    );
    let name = plan.name.clone();
    let dag = args.dag.then(|| registry.clone());
    let use_executor = args.dag;
    let code = run_rooted(
        &name,
        RunConfig::new().prices(prices),
        Mode::detect(args.json),
        !args.no_control,
        |ctx| async move {
            // The blueprint is lowered onto the graph runtime (its nodes'
            // rationale reaches the live tree). `--dag` needs the interim
            // executor, which records the top-level plan in the registry.
            let result = if use_executor {
                Executor::new(&factory)
                    .registry(registry)
                    .run(&plan, &ctx, &inputs)
                    .await
            } else {
                tinyagents_blueprint::run_lowered(&plan, &ctx, &factory, &inputs).await
            };
            match result {
                Ok(out) => Ok(out.text),
                Err(e) => {
                    let partial = e
                        .partial()
                        .filter(|p| !p.is_empty())
                        .and_then(|p| serde_json::to_string_pretty(p).ok());
                    Err((e.to_string(), partial))
                }
            }
        },
    );
    if let Some(registry) = dag {
        eprint!("{}", render_dag(&registry));
    }
    code
}

/// The agent DAG of a blueprint run, one line per registry node, indented
/// under the node that planned or spawned it:
/// `  researcher#0 (agent, Done) run 3f…  why: One researcher per sub-question`.
pub fn render_dag(registry: &SpawnRegistry) -> String {
    let nodes = registry.snapshot();
    let mut out = format!("agent DAG ({} nodes):\n", nodes.len());
    let mut stack: Vec<(usize, usize)> = nodes
        .iter()
        .filter(|n| n.parent.is_none())
        .rev()
        .map(|n| (n.id, 0))
        .collect();
    while let Some((id, level)) = stack.pop() {
        let Some(n) = nodes.get(id) else { continue };
        let run = n.run_id.map(|r| format!(" run {r}")).unwrap_or_default();
        let why = n
            .rationale
            .as_deref()
            .map(|r| format!("  why: {r}"))
            .unwrap_or_default();
        // The root entry is the run itself; its outcome is the run's exit status.
        let state = if n.kind == "run" {
            String::new()
        } else {
            format!(", {:?}", n.status)
        };
        out.push_str(&format!(
            "{}{} ({}{state}){run}{why}\n",
            "  ".repeat(level + 1),
            n.name,
            n.kind
        ));
        stack.extend(n.children.iter().rev().map(|c| (*c, level + 1)));
    }
    out
}

/// `tinyagents run --graph-example NAME`.
pub fn execute_graph_example(name: &str, args: &RunArgs) -> ExitCode {
    let example = match crate::graphs::build(name) {
        Some(Ok(example)) => example,
        Some(Err(e)) => {
            eprintln!("error: example graph `{name}` does not compile: {e}");
            return ExitCode::from(crate::run::EXIT_RUN_FAILED);
        }
        None => {
            eprintln!(
                "error: no example graph `{name}` (examples: {})",
                crate::graphs::NAMES.join(", ")
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    run_rooted(
        name,
        RunConfig::new(),
        Mode::detect(args.json),
        !args.no_control,
        |ctx| async move {
            let opts = tinyagents_graph::RunOptions::new().sink(ctx.sink().clone());
            match example.graph.invoke_in(&ctx, example.input.clone(), &opts).await {
                Ok(out) => Ok(match out.state.get(example.output) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => out.state.to_string(),
                }),
                Err(e) => Err((e.to_string(), None)),
            }
        },
    )
}
