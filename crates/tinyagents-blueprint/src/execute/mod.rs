//! The interim executor: runs a [`Plan`] on the foundation's run tree.
//!
//! It runs blueprints end to end without a graph runtime, and is the
//! reference the lowering ([`crate::lower`]) is checked against. It runs the plan's stages in order and the nodes of a
//! stage concurrently (at most `max_concurrent_children` at a time). Every
//! agent runs as a child of the given run through
//! [`SubAgent`]: one level deeper, inside the
//! same budgets, its usage rolled up to the parent. A `map` runs one child
//! per item under its concurrency cap; a `router` evaluates its condition on
//! the value it routes on and selects one branch (the others are skipped,
//! and so is what depends only on them); a route back to an earlier node
//! reruns the loop body, at most `max_iterations` times (after that, back
//! routes no longer match); a `subgraph` runs its nested plan in a child
//! run of its own. The result is the output node's value (or the join of
//! several outputs).
//!
//! Values are JSON: an agent with an output schema has its answer parsed as
//! JSON (code fences are stripped); other answers are strings. Templates
//! render strings as they are and other values as compact JSON.

mod factory;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;
use tinyagents_core::{BoxFuture, ChildEvents, Cost, EventKind, RunContext, RunError, RunLimits, Usage};
use tinyagents_harness::SubAgent;

pub use factory::{AgentFactory, BuildRequest, FactoryError, Toolbox};

use crate::ir::ValueType;
use crate::plan::{AgentPlan, MapBody, NodeId, Plan, PlanNodeKind, SubgraphPlan};
use crate::spawn::registry::{RegId, SpawnRegistry, SpawnStatus};
use crate::values::{Scope, Values, latest};
use crate::values::{as_list, matches, parse_list, strip_fences, text_of};

/// Values of a blueprint's inputs, by name.
pub type Inputs = BTreeMap<String, Value>;

/// A run of a plan failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// An input the blueprint declares was not given.
    #[error("input `{name}` is missing")]
    MissingInput {
        /// The input.
        name: String,
    },
    /// An input has the wrong type.
    #[error("input `{name}` must be a {expected}")]
    InputType {
        /// The input.
        name: String,
        /// The declared type.
        expected: &'static str,
    },
    /// The factory could not build an agent.
    #[error("node `{node}`: {source}")]
    Build {
        /// The node.
        node: String,
        /// Why.
        source: FactoryError,
    },
    /// A child run failed (the error carries its run path and depth).
    #[error("node `{node}` failed: {source}")]
    Run {
        /// The node.
        node: String,
        /// The child's error.
        source: RunError,
        /// Values of the nodes that had finished (degrade, don't drop).
        partial: BTreeMap<String, Value>,
    },
    /// A node could not run (a missing subgraph, the recursion bound, …).
    #[error("node `{node}`: {message}")]
    Node {
        /// The node.
        node: String,
        /// What went wrong.
        message: String,
        /// Values of the nodes that had finished.
        partial: BTreeMap<String, Value>,
    },
    /// The output node was skipped by a router.
    #[error("the output `{node}` did not run: no route selected it")]
    NoOutput {
        /// The output node.
        node: String,
        /// Values of the nodes that ran.
        partial: BTreeMap<String, Value>,
    },
}

impl ExecError {
    /// Values of the nodes that finished before the failure.
    pub fn partial(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Self::Run { partial, .. } | Self::Node { partial, .. } | Self::NoOutput { partial, .. } => Some(partial),
            _ => None,
        }
    }

    fn with_partial(mut self, values: BTreeMap<String, Value>) -> Self {
        if let Self::Run { partial, .. } | Self::Node { partial, .. } | Self::NoOutput { partial, .. } = &mut self
            && partial.is_empty()
        {
            *partial = values;
        }
        self
    }
}

/// What a run of a plan produced.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// The result: the output node's value (an object of several outputs' values).
    pub value: Value,
    /// The result as text.
    pub text: String,
    /// The value of every node that ran (the last iteration's, in loops).
    pub values: BTreeMap<String, Value>,
    /// Nodes a router skipped.
    pub skipped: Vec<String>,
    /// Times a router routed back.
    pub loop_iterations: u32,
    /// Usage of every run this execution started.
    pub usage: Usage,
    /// Their cost.
    pub cost: Cost,
}

/// Runs a plan as children of `ctx` (see the module docs).
pub async fn execute(
    plan: &Plan,
    ctx: &RunContext,
    factory: &dyn AgentFactory,
    inputs: &Inputs,
) -> Result<ExecOutput, ExecError> {
    Executor::new(factory).run(plan, ctx, inputs).await
}

/// The executor, with options.
pub struct Executor<'f> {
    factory: &'f dyn AgentFactory,
    registry: Option<SpawnRegistry>,
}

impl std::fmt::Debug for Executor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl<'f> Executor<'f> {
    /// An executor building agents with `factory`.
    pub fn new(factory: &'f dyn AgentFactory) -> Self {
        Self {
            factory,
            registry: None,
        }
    }

    /// Records every node and run in `registry` (the live DAG).
    #[must_use]
    pub fn registry(mut self, registry: SpawnRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Runs `plan` as children of `ctx`.
    pub async fn run(&self, plan: &Plan, ctx: &RunContext, inputs: &Inputs) -> Result<ExecOutput, ExecError> {
        let reg = self.registry.as_ref().map(|r| r.ensure_run(ctx));
        self.run_under(plan, ctx, inputs, reg).await
    }

    /// Runs `plan` as children of `ctx`, its nodes spliced under registry
    /// node `reg` (used by `spawn_agents`).
    pub async fn run_under(
        &self,
        plan: &Plan,
        ctx: &RunContext,
        inputs: &Inputs,
        reg: Option<RegId>,
    ) -> Result<ExecOutput, ExecError> {
        let before = (ctx.descendants_usage(), ctx.total_cost());
        let mut out = self
            .run_plan(plan, &plan.subplans, ctx, inputs.clone(), reg, Vec::new())
            .await?;
        let after = ctx.descendants_usage();
        out.usage = after.saturating_sub(&before.0);
        out.cost = Cost(ctx.total_cost().0.saturating_sub(before.1.0));
        Ok(out)
    }

    fn run_plan<'a>(
        &'a self,
        plan: &'a Plan,
        library: &'a BTreeMap<String, Arc<Plan>>,
        ctx: &'a RunContext,
        inputs: Inputs,
        reg: Option<RegId>,
        stack: Vec<String>,
    ) -> BoxFuture<'a, Result<ExecOutput, ExecError>> {
        Box::pin(async move {
            check_inputs(plan, &inputs)?;
            let reg_ids = match (&self.registry, reg) {
                (Some(r), Some(parent)) => r.splice(parent, plan),
                _ => Vec::new(),
            };
            let mut run = PlanRun {
                ex: self,
                plan,
                library,
                ctx,
                inputs,
                stack,
                by_name: plan.nodes.iter().map(|n| (n.name.as_str(), n.id)).collect(),
                values: vec![None; plan.nodes.len()],
                previous: vec![None; plan.nodes.len()],
                skipped: vec![false; plan.nodes.len()],
                chosen: vec![None; plan.nodes.len()],
                iterations: vec![0; plan.loops.len()],
                reg_ids,
            };
            run.run().await
        })
    }
}

struct PlanRun<'a, 'f> {
    ex: &'a Executor<'f>,
    plan: &'a Plan,
    library: &'a BTreeMap<String, Arc<Plan>>,
    ctx: &'a RunContext,
    inputs: Inputs,
    stack: Vec<String>,
    by_name: HashMap<&'a str, NodeId>,
    values: Vec<Option<Value>>,
    previous: Vec<Option<Value>>,
    skipped: Vec<bool>,
    /// For routers: the node selected on the current iteration.
    chosen: Vec<Option<Option<NodeId>>>,
    iterations: Vec<u32>,
    reg_ids: Vec<RegId>,
}

impl Values for PlanRun<'_, '_> {
    fn input(&self, name: &str) -> Option<&Value> {
        self.inputs.get(name)
    }

    fn node(&self, name: &str) -> Option<&Value> {
        latest(&self.values, &self.previous, *self.by_name.get(name)?)
    }
}

/// Where an agent run goes in the registry.
#[derive(Clone, Copy)]
enum Reg {
    /// It is this (spliced) node.
    Is(RegId),
    /// It is a new node under this one (a map item, a reducer).
    Under(RegId),
}

impl PlanRun<'_, '_> {
    fn partial(&self) -> BTreeMap<String, Value> {
        self.plan
            .nodes
            .iter()
            .filter_map(|n| self.values.get(n.id)?.as_ref().map(|v| (n.name.clone(), v.clone())))
            .collect()
    }

    fn set_status(&self, id: NodeId, status: SpawnStatus) {
        if let (Some(r), Some(&rid)) = (&self.ex.registry, self.reg_ids.get(id)) {
            r.set_status(rid, status);
        }
    }

    fn decide(&self, id: NodeId) -> bool {
        let Some(node) = self.plan.nodes.get(id) else {
            return false;
        };
        if !node.gates.is_empty() && !node.gates.iter().any(|&g| self.chosen.get(g) == Some(&Some(Some(id)))) {
            return false;
        }
        if matches!(node.kind, PlanNodeKind::Join { .. }) {
            node.deps.is_empty() || node.deps.iter().any(|&d| !self.skipped[d])
        } else {
            !node.deps.iter().any(|&d| self.skipped[d])
        }
    }

    async fn run(&mut self) -> Result<ExecOutput, ExecError> {
        let cap = self.ctx.limits().max_concurrent_children.unwrap_or(usize::MAX).max(1);
        let mut s = 0;
        while let Some(stage) = self.plan.stages.get(s) {
            let mut to_run = Vec::new();
            for &id in stage {
                if self.values[id].is_some() || self.skipped[id] {
                    continue;
                }
                if self.decide(id) {
                    to_run.push(id);
                } else {
                    self.skipped[id] = true;
                    self.set_status(id, SpawnStatus::Skipped);
                }
            }
            let this = &*self;
            let futs: Vec<BoxFuture<'_, Result<Value, ExecError>>> = to_run
                .iter()
                .map(|&id| Box::pin(this.run_node(id)) as BoxFuture<'_, _>)
                .collect();
            let outcomes: Vec<Result<Value, ExecError>> = futures::stream::iter(futs).buffered(cap).collect().await;
            let mut results: Vec<(NodeId, Result<Value, ExecError>)> = to_run.iter().copied().zip(outcomes).collect();
            // Routers last: a route back resets the loop body, which may
            // include other nodes of this very stage.
            results.sort_by_key(|(id, _)| {
                matches!(
                    self.plan.nodes.get(*id).map(|n| &n.kind),
                    Some(PlanNodeKind::Router { .. })
                )
            });
            let mut jump: Option<usize> = None;
            let mut failed: Option<ExecError> = None;
            for (id, result) in results {
                match result {
                    Ok(v) => {
                        self.set_status(id, SpawnStatus::Done);
                        if let Some(PlanNodeKind::Router { routes, .. }) = self.plan.nodes.get(id).map(|n| &n.kind) {
                            let mut chosen = None;
                            for route in routes {
                                if !route.when.as_ref().is_none_or(|c| matches(c, &v)) {
                                    continue;
                                }
                                if route.back {
                                    let Some(li) = self
                                        .plan
                                        .loops
                                        .iter()
                                        .position(|l| l.router == id && Some(l.entry) == route.target)
                                    else {
                                        continue;
                                    };
                                    let max = self.plan.loops[li].max_iterations;
                                    if self.iterations[li] >= max {
                                        continue; // bound reached: back routes no longer match
                                    }
                                    self.iterations[li] += 1;
                                    let entry = self.plan.loops[li].entry;
                                    let back_to = self.plan.nodes.get(entry).map_or(s, |n| n.stage);
                                    jump = Some(jump.map_or(back_to, |j: usize| j.min(back_to)));
                                    for &b in &self.plan.loops[li].body {
                                        if let Some(old) = self.values[b].take() {
                                            self.previous[b] = Some(old);
                                        }
                                        self.skipped[b] = false;
                                        self.chosen[b] = None;
                                    }
                                    chosen = route.target;
                                    // The router's own value is kept for the next iteration to read.
                                    self.previous[id] = Some(v.clone());
                                    break;
                                }
                                chosen = route.target;
                                break;
                            }
                            if jump.is_none() || !self.plan.loops.iter().any(|l| l.router == id && l.body.contains(&id))
                            {
                                self.values[id] = Some(v);
                            }
                            self.chosen[id] = Some(chosen);
                        } else {
                            self.values[id] = Some(v);
                        }
                    }
                    Err(e) => {
                        self.set_status(id, SpawnStatus::Failed);
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                // Every sibling that finished is in the partial result.
                return Err(e.with_partial(self.partial()));
            }
            s = jump.unwrap_or(s + 1);
        }
        self.finish()
    }

    fn finish(&self) -> Result<ExecOutput, ExecError> {
        let mut outs = Vec::new();
        for &o in &self.plan.output {
            let node = self.plan.nodes.get(o).map(|n| n.name.clone()).unwrap_or_default();
            match self.values.get(o).cloned().flatten() {
                Some(v) => outs.push((node, v)),
                None if self.plan.output.len() == 1 => {
                    return Err(ExecError::NoOutput {
                        node,
                        partial: self.partial(),
                    });
                }
                None => {}
            }
        }
        let value = if self.plan.output.len() == 1 {
            outs.pop().map(|(_, v)| v).unwrap_or(Value::Null)
        } else {
            Value::Object(outs.into_iter().collect())
        };
        Ok(ExecOutput {
            text: text_of(&value),
            value,
            values: self.partial(),
            skipped: self
                .plan
                .nodes
                .iter()
                .filter(|n| self.skipped[n.id])
                .map(|n| n.name.clone())
                .collect(),
            loop_iterations: self.iterations.iter().sum(),
            usage: Usage::default(),
            cost: Cost::ZERO,
        })
    }

    async fn run_node(&self, id: NodeId) -> Result<Value, ExecError> {
        let Some(node) = self.plan.nodes.get(id) else {
            return Ok(Value::Null);
        };
        let reg = self.reg_ids.get(id).copied();
        match &node.kind {
            PlanNodeKind::Agent(a) => {
                let task = self.render(&a.task, Scope::default());
                self.run_agent(&node.name, a, &a.name, task, reg.map(Reg::Is)).await
            }
            PlanNodeKind::Map(m) => {
                let items = as_list(&self.value_of(&m.over, Scope::default()));
                let cap = m
                    .concurrency
                    .map_or(usize::MAX, |c| c as usize)
                    .min(self.ctx.limits().max_concurrent_children.unwrap_or(usize::MAX))
                    .max(1);
                let futs: Vec<BoxFuture<'_, Result<Value, ExecError>>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Box::pin(self.run_item(&node.name, &m.body, i, item, reg)) as BoxFuture<'_, _>)
                    .collect();
                let results: Vec<Result<Value, ExecError>> = futures::stream::iter(futs).buffered(cap).collect().await;
                results.into_iter().collect::<Result<Vec<_>, _>>().map(Value::Array)
            }
            PlanNodeKind::Reduce { from, agent } => {
                let list = Value::Array(as_list(&self.value_of(from, Scope::default())));
                match agent {
                    None => Ok(list),
                    Some(a) => {
                        let scope = Scope {
                            items: Some(&list),
                            ..Scope::default()
                        };
                        let task = self.render(&a.task, scope);
                        self.run_agent(&node.name, a, &a.name, task, reg.map(Reg::Under)).await
                    }
                }
            }
            PlanNodeKind::Router { on, .. } => Ok(self.value_of(on, Scope::default())),
            PlanNodeKind::Join { of } => Ok(Value::Object(
                of.iter()
                    .filter_map(|&d| {
                        let n = self.plan.nodes.get(d)?;
                        Some((n.name.clone(), self.values.get(d)?.clone()?))
                    })
                    .collect(),
            )),
            PlanNodeKind::Subgraph(s) => self.run_subgraph(&node.name, s, &s.name, Scope::default(), None).await,
        }
    }

    async fn run_item(
        &self,
        node: &str,
        body: &MapBody,
        i: usize,
        item: &Value,
        reg: Option<RegId>,
    ) -> Result<Value, ExecError> {
        let scope = Scope {
            item: Some(item),
            index: Some(i),
            items: None,
        };
        match body {
            MapBody::Agent(a) => {
                let name = format!("{}#{i}", a.name);
                let task = self.render(&a.task, scope);
                self.run_agent(node, a, &name, task, reg.map(Reg::Under)).await
            }
            MapBody::Subgraph(s) => self.run_subgraph(node, s, &format!("{}#{i}", s.name), scope, reg).await,
        }
    }

    async fn run_agent(
        &self,
        node: &str,
        a: &AgentPlan,
        run_name: &str,
        task: String,
        reg: Option<Reg>,
    ) -> Result<Value, ExecError> {
        let limits = a.limits(self.ctx.depth().saturating_add(1));
        let agent = self
            .ex
            .factory
            .build(&BuildRequest {
                agent: a,
                name: run_name,
                limits,
                extra_tools: &[],
            })
            .map_err(|source| ExecError::Build {
                node: node.to_string(),
                source,
            })?;
        let reg_node = match (&self.ex.registry, reg) {
            (Some(r), Some(Reg::Under(p))) => Some(r.add(Some(p), run_name, "agent", a.rationale.as_deref())),
            (Some(_), Some(Reg::Is(id))) => Some(id),
            _ => None,
        };
        let out = SubAgent::new(agent)
            .invoke_in_parent(self.ctx, task)
            .await
            .map_err(|source| ExecError::Run {
                node: node.to_string(),
                source,
                partial: BTreeMap::new(),
            })?;
        if let (Some(r), Some(id)) = (&self.ex.registry, reg_node) {
            r.bind(id, out.run.run_id, out.run.depth);
            r.set_status(id, SpawnStatus::Done);
        }
        Ok(match a.response_format() {
            Some(_) => {
                serde_json::from_str(strip_fences(&out.text)).unwrap_or_else(|_| Value::String(out.text.to_string()))
            }
            None => Value::String(out.text.to_string()),
        })
    }

    async fn run_subgraph(
        &self,
        node: &str,
        s: &SubgraphPlan,
        run_name: &str,
        scope: Scope<'_>,
        reg_parent: Option<RegId>,
    ) -> Result<Value, ExecError> {
        let fail = |message: String| ExecError::Node {
            node: node.to_string(),
            message,
            partial: BTreeMap::new(),
        };
        let named;
        let (sub, library) = if s.is_blueprint {
            match self.library.get(&s.uses) {
                Some(p) => (p.as_ref(), self.library),
                None => return Err(fail(format!("no nested blueprint `{}`", s.uses))),
            }
        } else {
            named = self.ex.factory.named_plan(&s.uses).ok_or_else(|| {
                fail(format!(
                    "no graph named `{}` is registered with the agent factory",
                    s.uses
                ))
            })?;
            (named.as_ref(), &named.subplans)
        };
        let uses = self.stack.iter().filter(|n| **n == s.uses).count();
        if let Some(max) = sub.max_depth
            && uses >= max as usize
        {
            return Err(fail(format!("`{}` is nested more than its max_depth of {max}", s.uses)));
        }
        let inputs: Inputs = s
            .with
            .iter()
            .map(|(k, t)| (k.clone(), self.input_value(t, scope)))
            .collect();
        let child = self
            .ctx
            .spawn_child(run_name, &RunLimits::inherit(), ChildEvents::Parent)
            .map_err(|source| ExecError::Run {
                node: node.to_string(),
                source,
                partial: BTreeMap::new(),
            })?;
        self.ctx.emit_with(|| EventKind::SubAgentStarted {
            name: run_name.into(),
            child_run_id: child.run_id(),
            child_depth: child.depth(),
        });
        let reg = match &self.ex.registry {
            Some(r) => {
                if let Some(p) = reg_parent {
                    r.add(Some(p), run_name, "subgraph", None);
                }
                Some(r.ensure_run(&child))
            }
            None => None,
        };
        let mut stack = self.stack.clone();
        stack.push(s.uses.clone());
        let result = self.ex.run_plan(sub, library, &child, inputs, reg, stack).await;
        self.ctx.absorb_child(&child);
        self.ctx.emit_with(|| EventKind::SubAgentCompleted {
            name: run_name.into(),
            child_run_id: child.run_id(),
            child_depth: child.depth(),
            ok: result.is_ok(),
            usage: child.total_usage(),
            cost: child.total_cost(),
        });
        result.map(|o| o.value)
    }
}

/// Checks that every input the plan declares is given, with its type.
pub(crate) fn check_inputs(plan: &Plan, inputs: &Inputs) -> Result<(), ExecError> {
    for input in &plan.inputs {
        let Some(v) = inputs.get(&input.name) else {
            return Err(ExecError::MissingInput {
                name: input.name.clone(),
            });
        };
        let ok = match input.ty {
            ValueType::List => v.is_array() || v.as_str().is_some_and(|s| parse_list(s).is_some()),
            ValueType::Object => v.is_object(),
            _ => true,
        };
        if !ok {
            return Err(ExecError::InputType {
                name: input.name.clone(),
                expected: input.ty.keyword(),
            });
        }
    }
    Ok(())
}
