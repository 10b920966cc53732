//! The `spawn_agents` tool: a running agent describes a team, the runtime
//! checks it, compiles it and runs it as the agent's children.

use std::collections::BTreeMap;
use std::sync::Arc;

use tinyagents_core::{SharedTool, Tool, ToolContext, ToolError};
use tinyagents_harness::Agent;

use super::registry::SpawnRegistry;
use crate::capability::CapabilityGrant;
use crate::compile::{CompileOptions, compile};
use crate::diagnostic::{Diagnostic, JsonPath, Report};
use crate::execute::{AgentFactory, BuildRequest, ExecError, Executor, FactoryError};
use crate::ir::Blueprint;
use crate::plan::Plan;

/// The tool's name.
pub const SPAWN_TOOL: &str = "spawn_agents";

/// Arguments of `spawn_agents`: a blueprint fragment and its inputs.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnArgs {
    /// The team to spawn. Its agents may use only tools you have yourself.
    pub blueprint: Blueprint,
    /// Values of the blueprint's inputs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, serde_json::Value>,
}

/// Runtime spawning for agents built by a factory: wraps a factory so that
/// an agent that lists `spawn_agents` among its tools gets a
/// [`SpawnAgentsTool`] whose grant is exactly that agent's tools.
#[derive(Clone)]
pub struct Spawning {
    base: Arc<dyn AgentFactory>,
    registry: SpawnRegistry,
    options: Arc<CompileOptions>,
}

impl std::fmt::Debug for Spawning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawning")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Spawning {
    /// Spawning on top of `base`, recording into `registry`, compiling
    /// fragments with `options` (its grant is replaced by each spawner's).
    pub fn new(base: Arc<dyn AgentFactory>, registry: SpawnRegistry, options: CompileOptions) -> Self {
        Self {
            base,
            registry,
            options: Arc::new(options),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &SpawnRegistry {
        &self.registry
    }

    /// A `spawn_agents` tool that may grant `grant`.
    pub fn tool(&self, grant: CapabilityGrant) -> SharedTool {
        tinyagents_core::into_dyn(SpawnAgentsTool {
            spawning: self.clone(),
            grant,
        })
    }
}

impl AgentFactory for Spawning {
    fn build(&self, req: &BuildRequest<'_>) -> Result<Agent, FactoryError> {
        if !req.agent.tools.iter().any(|t| t == SPAWN_TOOL) {
            return self.base.build(req);
        }
        let mut extra = req.extra_tools.to_vec();
        extra.push(self.tool(CapabilityGrant::tools(req.agent.tools.iter().cloned())));
        self.base.build(&BuildRequest {
            extra_tools: &extra,
            ..req.clone()
        })
    }

    fn named_plan(&self, name: &str) -> Option<Arc<Plan>> {
        self.base.named_plan(name)
    }
}

/// The `spawn_agents` tool (see the module docs of [`crate::spawn`]).
#[derive(Clone, Debug)]
pub struct SpawnAgentsTool {
    spawning: Spawning,
    grant: CapabilityGrant,
}

fn refuse(diags: Vec<Diagnostic>) -> ToolError {
    ToolError::Denied {
        reason: format!(
            "the blueprint was not spawned; fix it and call {SPAWN_TOOL} again, or do the work yourself.\n{}",
            Report::new(None, diags).render_plain()
        ),
    }
}

/// Refuses a plan whose estimate exceeds what the calling run has left.
pub fn check_budget(plan: &Plan, run: &tinyagents_core::RunContext) -> Result<(), Vec<Diagnostic>> {
    let est = plan.estimate;
    let budget = run.budget();
    let mut out = Vec::new();
    let hint = "spawn fewer agents, lower map `expected_items` or `concurrency`, give agents smaller `estimate`s or \
                cheaper models, or do the work yourself";
    if let Some(left) = budget.remaining_tokens()
        && est.total_tokens() > left
    {
        out.push(
            Diagnostic::error(
                "blueprint::budget",
                JsonPath::root(),
                format!(
                    "the team is estimated at {} tokens, but only {left} tokens remain",
                    est.total_tokens()
                ),
            )
            .hint(hint),
        );
    }
    if let Some(left) = budget.remaining_cost()
        && est.cost > left
    {
        out.push(
            Diagnostic::error(
                "blueprint::budget",
                JsonPath::root(),
                format!("the team is estimated to cost {}, but only {left} remains", est.cost),
            )
            .hint(hint),
        );
    }
    if let Some(left) = budget.remaining_descendants()
        && est.agents > left
    {
        out.push(
            Diagnostic::error(
                "blueprint::budget",
                JsonPath::root(),
                format!(
                    "the team has {} agent runs, but only {left} more runs may be spawned",
                    est.agents
                ),
            )
            .hint(hint),
        );
    }
    if run.depth().saturating_add(1) > run.limits().max_depth {
        out.push(
            Diagnostic::error(
                "blueprint::budget",
                JsonPath::root(),
                format!(
                    "agents spawned here would run at depth {}, past the max_depth of {}",
                    run.depth() + 1,
                    run.limits().max_depth
                ),
            )
            .hint("answer directly instead of delegating"),
        );
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

impl Tool for SpawnAgentsTool {
    type Args = SpawnArgs;
    type Output = String;
    type Error = ToolError;

    fn name(&self) -> &str {
        SPAWN_TOOL
    }

    fn description(&self) -> &str {
        "Spawn a team of sub-agents described as a blueprint (agents with name, role, task template, tools, \
         expected output, rationale; flow nodes map, reduce, router, join), run it, and get its result. The \
         team may use only tools you have, and its estimated cost must fit your remaining budget."
    }

    async fn call(&self, ctx: ToolContext, args: SpawnArgs) -> Result<String, ToolError> {
        let opts = CompileOptions {
            grant: self.grant.clone(),
            ..(*self.spawning.options).clone()
        };
        let plan = compile(&args.blueprint, &opts).map_err(refuse)?;
        check_budget(&plan, &ctx.run).map_err(refuse)?;
        let registry = &self.spawning.registry;
        let parent = registry.ensure_run(&ctx.run);
        if tinyagents_graph::task_recursion_stack(&ctx).is_some() {
            // The caller runs in a graph task (a lowered plan): the fragment
            // is lowered and run as a subgraph of that task.
            return crate::lower::run_spliced(&plan, &self.spawning, &ctx, &args.inputs, registry, parent).await;
        }
        let out = Executor::new(&self.spawning)
            .registry(registry.clone())
            .run_under(&plan, &ctx.run, &args.inputs, Some(parent))
            .await;
        match out {
            Ok(o) => Ok(o.text),
            Err(ExecError::Run { source, .. }) => Err(ToolError::ChildRun(Box::new(source))),
            Err(e) => Err(ToolError::failed(e)),
        }
    }
}
