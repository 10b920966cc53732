//! Lowering: a [`Plan`] compiled into a `tinyagents-graph` state graph and
//! run on the same run tree.
//!
//! # The graph
//!
//! * **State**: one channel per plan node (its JSON value, `LastValue`),
//!   one appending channel per `map` (`__items.NAME`: item results in item
//!   order, since a superstep applies writes in task order), the inputs
//!   (`__inputs`), the scheduler's control record (`__ctl`) and the result
//!   (`__result`).
//! * **Nodes**: an `agent` (and a `reduce` with an agent) becomes a
//!   [`SubAgentNode`] built by the [`AgentFactory`], with the description's
//!   limits (its budget at the depth it runs at) and timeout as policy, an
//!   input mapper (the rendered task) and an output mapper (the answer
//!   parsed as JSON when the agent declares a schema, into its channel); a
//!   `map` becomes a node of its body (a `SubAgentNode`, or a
//!   [`SubgraphNode`]) that the scheduler fans out with one
//!   [`Send`] per item, at most `concurrency` items per superstep; a
//!   `subgraph` becomes a [`SubgraphNode`] running the nested blueprint's
//!   own lowered graph (a [`GraphSlot`] per blueprint, so recursive
//!   blueprints lower once); `router`, `join` and plain `reduce` nodes are
//!   small function nodes writing their value.
//! * **Edges**: `START → __plan`, every node `→ __plan`, and `__plan`'s
//!   conditional routes: the scheduler node reads the state after each
//!   superstep, evaluates the routers (a route back resets the loop body,
//!   at most `max_iterations` times), skips what no route selected and
//!   returns the next parallel stage's tasks (a [`Command`] of [`Send`]s)
//!   or `END`. All nodes of a stage run in the same superstep, so
//!   independent agents overlap.
//!
//! The semantics are the interim executor's ([`crate::execute`]): same
//! values, same agents called, same usage; the tests check both side by
//! side. Every node launched with a rationale emits
//! [`EventKind::NodeRationale`] (graph, node, namespace, kind, rationale)
//! on the graph run, so the run tree shows why each compiled node exists.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tinyagents_core::{Cost, EventKind, RunConfig, RunContext, RunLimits};
use tinyagents_graph::{
    Command, CompiledGraph, END, GraphBuilder, GraphError, GraphSlot, NodeContext, NodeError, NodeInput, Reducer,
    RunOptions, START, Send, SubAgentNode, SubAgentPolicy, SubgraphNode, Update,
};

use crate::diagnostic::{Diagnostic, JsonPath, Report};
use crate::execute::{AgentFactory, BuildRequest, ExecError, ExecOutput, Inputs, check_inputs};
use crate::plan::{AgentPlan, MapBody, NodeId, Plan, PlanNodeKind, SubgraphPlan};
use crate::values::{Scope, Values, as_list, latest, matches, strip_fences, text_of};

const PLAN: &str = "__plan";
const CTL: &str = "__ctl";
const INPUTS: &str = "__inputs";
const RESULT: &str = "__result";

fn items_channel(node: &str) -> String {
    format!("__items.{node}")
}

/// Lowers `plan` onto a state graph whose agents run at `depth + 1` (the
/// graph run's depth is `depth`; with [`run_lowered`] it is one below the
/// calling run). Nested blueprints and named graphs (from
/// [`AgentFactory::named_plan`]) are lowered once each into subgraphs.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use tinyagents_blueprint::{CompileOptions, Inputs, Toolbox, compile, lower, parse_text, run_graph};
/// use tinyagents_core::{ModelResponse, RunConfig, RunContext};
/// use tinyagents_providers::ScriptedModel;
///
/// let bp = parse_text("t.ta", r#"blueprint t { model "m" output b
///   agent a { task "a" rationale "first" } agent b { task "{{deps.a}}!" } }"#).unwrap().blueprint;
/// let plan = compile(&bp, &CompileOptions::new()).unwrap();
/// // A factory without the model is refused at lowering time, naming the node.
/// assert!(lower(&plan, &Toolbox::new(), 1).unwrap_err().render_plain().contains("node `a`"));
///
/// let model = Arc::new(ScriptedModel::from_fn(|req| {
///     Ok(ModelResponse::text(req.messages.last().and_then(|m| m.text()).unwrap_or_default().to_uppercase()))
/// }));
/// let graph = lower(&plan, &Toolbox::new().default_model(model), 1).unwrap();
/// assert!(graph.node_names().contains(&"a"));
/// let root = RunContext::root("root", &RunConfig::new());
/// let out = run_graph(&plan, &graph, &root, &Inputs::new()).await.unwrap();
/// assert_eq!(out.text, "A!");
/// # });
/// ```
pub fn lower(plan: &Plan, factory: &dyn AgentFactory, depth: u32) -> Result<CompiledGraph, Report> {
    let mut cx = Lowering {
        factory,
        slots: HashMap::new(),
    };
    cx.lower_plan(plan, &plan.subplans, &plan.name, depth)
}

/// Lowers `plan` and runs it as a child graph run of `ctx` (same run tree:
/// budgets narrow, depth counts, usage and cost roll up to `ctx`).
///
/// The output is the interim executor's [`ExecOutput`]: the result, every
/// node's value, skipped nodes, loop iterations and the usage of the runs
/// this call started.
pub async fn run_lowered(
    plan: &Plan,
    ctx: &RunContext,
    factory: &dyn AgentFactory,
    inputs: &Inputs,
) -> Result<ExecOutput, ExecError> {
    check_inputs(plan, inputs)?;
    let graph = lower(plan, factory, ctx.depth().saturating_add(1)).map_err(|r| ExecError::Node {
        node: plan.name.clone(),
        message: r.render_plain(),
        partial: BTreeMap::new(),
    })?;
    run_graph(plan, &graph, ctx, inputs).await
}

/// Runs a graph made by [`lower`] from `plan` as a child run of `ctx`.
pub async fn run_graph(
    plan: &Plan,
    graph: &CompiledGraph,
    ctx: &RunContext,
    inputs: &Inputs,
) -> Result<ExecOutput, ExecError> {
    check_inputs(plan, inputs)?;
    let before = (ctx.descendants_usage(), ctx.total_cost());
    let config = RunConfig::new()
        .sink(ctx.sink().clone())
        .prices(ctx.prices().clone())
        .limits(RunLimits::inherit());
    let mut opts = RunOptions::new().config(config);
    if let Some(n) = ctx.limits().max_concurrent_children {
        opts = opts.max_concurrency(n.max(1));
    }
    let input = serde_json::json!({ INPUTS: inputs });
    let out = graph
        .invoke_in(ctx, input, &opts)
        .await
        .map_err(|e| graph_error(plan, e))?;
    let ctl: Ctl = out
        .get(CTL)
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let values: BTreeMap<String, Value> = plan
        .nodes
        .iter()
        .filter(|n| ctl.done.get(n.id).copied().unwrap_or(false))
        .map(|n| (n.name.clone(), out.get(&n.name).cloned().unwrap_or(Value::Null)))
        .collect();
    if let Some(Value::Object(o)) = out.get(RESULT)
        && let Some(Value::String(missing)) = o.get("no_output")
    {
        return Err(ExecError::NoOutput {
            node: missing.clone(),
            partial: values,
        });
    }
    let value = out
        .get(RESULT)
        .and_then(|r| r.get("value"))
        .cloned()
        .unwrap_or(Value::Null);
    let after = ctx.descendants_usage();
    Ok(ExecOutput {
        text: text_of(&value),
        value,
        values,
        skipped: plan
            .nodes
            .iter()
            .filter(|n| ctl.skipped.get(n.id).copied().unwrap_or(false))
            .map(|n| n.name.clone())
            .collect(),
        loop_iterations: ctl.iterations.iter().sum(),
        usage: after.saturating_sub(&before.0),
        cost: Cost(ctx.total_cost().0.saturating_sub(before.1.0)),
    })
}

/// A failed graph run as the executor's error: a failed agent keeps its
/// child run error (run path and depth); the node is the outermost plan
/// node that failed.
fn graph_error(plan: &Plan, e: GraphError) -> ExecError {
    if let GraphError::Node { node, source, .. } = &e {
        let name = node.as_str().to_string();
        let mut inner = source;
        // Down through subgraphs to the agent's own error.
        while let NodeError::Graph(g) = inner {
            match &**g {
                GraphError::Node { source, .. } => inner = source,
                _ => break,
            }
        }
        if let NodeError::Run(r) = inner {
            return ExecError::Run {
                node: name,
                source: (**r).clone(),
                partial: BTreeMap::new(),
            };
        }
        return ExecError::Node {
            node: name,
            message: source.to_string(),
            partial: BTreeMap::new(),
        };
    }
    ExecError::Node {
        node: plan.name.clone(),
        message: e.to_string(),
        partial: BTreeMap::new(),
    }
}

struct Lowering<'f> {
    factory: &'f dyn AgentFactory,
    slots: HashMap<String, GraphSlot>,
}

fn diag(node: &str, message: String) -> Report {
    Report::new(
        None,
        vec![Diagnostic::error(
            "blueprint::lower",
            JsonPath::root().key("nodes"),
            format!("node `{node}`: {message}"),
        )],
    )
}

/// The value of an agent's answer: JSON when it declares a schema.
fn answer_value(a: &AgentPlan, text: &str) -> Value {
    match a.response_format() {
        Some(_) => serde_json::from_str(strip_fences(text)).unwrap_or_else(|_| Value::String(text.to_string())),
        None => Value::String(text.to_string()),
    }
}

fn payload_task(input: &NodeInput) -> Result<String, NodeError> {
    match input {
        NodeInput::Payload(v) => Ok(v.get("task").and_then(Value::as_str).unwrap_or_default().to_string()),
        NodeInput::State(_) => Err(NodeError::Input(
            "a lowered agent node runs from its Send payload".into(),
        )),
    }
}

impl Lowering<'_> {
    fn agent_node(&self, node: &str, a: &AgentPlan, depth: u32, target: Target) -> Result<SubAgentNode, Report> {
        let limits = a.limits(depth.saturating_add(1));
        let agent = self
            .factory
            .build(&BuildRequest {
                agent: a,
                name: &a.name,
                limits: limits.clone(),
                extra_tools: &[],
            })
            .map_err(|e| diag(node, e.to_string()))?;
        let policy = SubAgentPolicy {
            timeout: limits.timeout,
            limits,
            // The task scope lets `spawn_agents` find the calling task (to
            // splice its fragment there); it costs an event per harness
            // step, so only agents that may spawn get one.
            task_scope: a.tools.iter().any(|t| t == crate::spawn::SPAWN_TOOL),
            ..SubAgentPolicy::default()
        };
        let a2 = a.clone();
        Ok(SubAgentNode::new(agent)
            .policy(policy)
            .input(payload_task)
            .output(move |out, _| {
                let v = answer_value(&a2, &out.text);
                Ok(target.write(v))
            }))
    }

    fn subgraph_slot(
        &mut self,
        s: &SubgraphPlan,
        library: &BTreeMap<String, Arc<Plan>>,
        depth: u32,
    ) -> Result<GraphSlot, Report> {
        let key = if s.is_blueprint {
            s.uses.clone()
        } else {
            format!("graph:{}", s.uses)
        };
        if let Some(slot) = self.slots.get(&key) {
            return Ok(slot.clone());
        }
        let slot = GraphSlot::new();
        self.slots.insert(key, slot.clone());
        let graph = if s.is_blueprint {
            let sub = library
                .get(&s.uses)
                .cloned()
                .ok_or_else(|| diag(&s.name, format!("no nested blueprint `{}`", s.uses)))?;
            self.lower_plan(&sub, library, &s.uses, depth)?
        } else {
            let named = self.factory.named_plan(&s.uses).ok_or_else(|| {
                diag(
                    &s.name,
                    format!("no graph named `{}` is registered with the agent factory", s.uses),
                )
            })?;
            self.lower_plan(&named, &named.subplans, &s.uses, depth)?
        };
        slot.set(graph);
        Ok(slot)
    }

    fn subgraph_node(
        &mut self,
        s: &SubgraphPlan,
        library: &BTreeMap<String, Arc<Plan>>,
        depth: u32,
        target: Target,
    ) -> Result<SubgraphNode, Report> {
        let slot = self.subgraph_slot(s, library, depth.saturating_add(1))?;
        Ok(SubgraphNode::new(slot).output(move |state| {
            let v = state
                .get(RESULT)
                .and_then(|r| r.get("value"))
                .cloned()
                .unwrap_or(Value::Null);
            Ok(target.write(v))
        }))
    }

    fn lower_plan(
        &mut self,
        plan: &Plan,
        library: &BTreeMap<String, Arc<Plan>>,
        id: &str,
        depth: u32,
    ) -> Result<CompiledGraph, Report> {
        let mut b = GraphBuilder::new(id)
            .channel(CTL, Reducer::LastValue)
            .channel(INPUTS, Reducer::LastValue)
            .channel(RESULT, Reducer::LastValue)
            .edge(START, PLAN);
        for node in &plan.nodes {
            let name = node.name.as_str();
            b = b.channel(name, Reducer::LastValue);
            let own = Target::Value(name.into());
            b = match &node.kind {
                PlanNodeKind::Agent(a) => b.subagent_node(name, self.agent_node(name, a, depth, own)?),
                PlanNodeKind::Reduce { agent: Some(a), .. } => {
                    b.subagent_node(name, self.agent_node(name, a, depth, own)?)
                }
                PlanNodeKind::Map(m) => {
                    let items = items_channel(name);
                    b = b.channel(items.as_str(), Reducer::Append);
                    let t = Target::Item(items.into());
                    match &m.body {
                        MapBody::Agent(a) => b.subagent_node(name, self.agent_node(name, a, depth, t)?),
                        MapBody::Subgraph(s) => b.subgraph_node(name, self.subgraph_node(s, library, depth, t)?),
                    }
                }
                PlanNodeKind::Subgraph(s) => b.subgraph_node(name, self.subgraph_node(s, library, depth, own)?),
                PlanNodeKind::Reduce { agent: None, .. } | PlanNodeKind::Router { .. } | PlanNodeKind::Join { .. } => {
                    let ch: Arc<str> = name.into();
                    b.node(name, move |p: Value, _ctx: NodeContext| {
                        let ch = ch.clone();
                        async move {
                            let v = p.get("value").cloned().unwrap_or(Value::Null);
                            Ok::<_, NodeError>(Update::new().set(ch, v))
                        }
                    })
                }
            };
            b = b.edge(name, PLAN);
        }
        let shared = Arc::new(SchedPlan {
            plan: Arc::new(plan.clone()),
            by_name: plan.nodes.iter().map(|n| (n.name.clone(), n.id)).collect(),
            library: library.clone(),
            factory_named: plan
                .nodes
                .iter()
                .filter_map(|n| match &n.kind {
                    PlanNodeKind::Subgraph(s) if !s.is_blueprint => Some(s.uses.clone()),
                    PlanNodeKind::Map(m) => match &m.body {
                        MapBody::Subgraph(s) if !s.is_blueprint => Some(s.uses.clone()),
                        _ => None,
                    },
                    _ => None,
                })
                .filter_map(|u| self.factory.named_plan(&u).map(|p| (u, p)))
                .collect(),
        });
        b = b.node(PLAN, move |state: serde_json::Map<String, Value>, ctx: NodeContext| {
            let shared = shared.clone();
            async move { schedule(&shared, state, &ctx) }
        });
        b.compile().map_err(|e| diag(id, e.to_string()))
    }
}

/// Where a node's answer goes.
#[derive(Clone)]
enum Target {
    /// The node's own channel.
    Value(Arc<str>),
    /// Appended to a map's item channel.
    Item(Arc<str>),
}

impl Target {
    fn write(&self, v: Value) -> Update {
        match self {
            Self::Value(c) => Update::new().set(c.clone(), v),
            Self::Item(c) => Update::new().set(c.clone(), Value::Array(vec![v])),
        }
    }
}

/// What the scheduler node knows about its plan.
struct SchedPlan {
    plan: Arc<Plan>,
    by_name: HashMap<String, NodeId>,
    library: BTreeMap<String, Arc<Plan>>,
    factory_named: BTreeMap<String, Arc<Plan>>,
}

/// The scheduler's control record (the `__ctl` channel).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Ctl {
    started: bool,
    stage: usize,
    done: Vec<bool>,
    previous: Vec<Option<Value>>,
    skipped: Vec<bool>,
    chosen: Vec<Option<Option<NodeId>>>,
    iterations: Vec<u32>,
    running: Vec<NodeId>,
    maps: Vec<MapRun>,
}

/// A map whose items are being sent in waves.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct MapRun {
    node: NodeId,
    offset: usize,
    cap: usize,
    pending: Vec<Value>,
}

struct View<'a> {
    sp: &'a SchedPlan,
    inputs: &'a serde_json::Map<String, Value>,
    vals: &'a [Option<Value>],
    previous: &'a [Option<Value>],
}

impl Values for View<'_> {
    fn input(&self, name: &str) -> Option<&Value> {
        self.inputs.get(name)
    }

    fn node(&self, name: &str) -> Option<&Value> {
        latest(self.vals, self.previous, *self.sp.by_name.get(name)?)
    }
}

fn task_payload(task: String) -> Value {
    serde_json::json!({ "task": task })
}

/// One run of the scheduler node: settle the last superstep, pick the next.
fn schedule(sp: &SchedPlan, state: serde_json::Map<String, Value>, ctx: &NodeContext) -> Result<Command, NodeError> {
    let plan = &*sp.plan;
    let n = plan.nodes.len();
    let mut ctl: Ctl = state
        .get(CTL)
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let empty = serde_json::Map::new();
    let inputs = match state.get(INPUTS) {
        Some(Value::Object(o)) => o,
        _ => &empty,
    };
    if !ctl.started {
        let given: Inputs = inputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        check_inputs(plan, &given).map_err(|e| NodeError::Failed(e.to_string()))?;
        ctl = Ctl {
            started: true,
            done: vec![false; n],
            previous: vec![None; n],
            skipped: vec![false; n],
            chosen: vec![None; n],
            iterations: vec![0; plan.loops.len()],
            ..Ctl::default()
        };
    }
    let mut update = Update::new();
    let mut vals: Vec<Option<Value>> = plan
        .nodes
        .iter()
        .map(|node| {
            ctl.done
                .get(node.id)
                .copied()
                .unwrap_or(false)
                .then(|| state.get(&node.name).cloned().unwrap_or(Value::Null))
        })
        .collect();

    // 1. A map with items left: send its next wave.
    let mut sends = Vec::new();
    for m in &mut ctl.maps {
        if m.pending.is_empty() {
            continue;
        }
        let take = m.cap.min(m.pending.len());
        let name = &plan.nodes[m.node].name;
        sends.extend(m.pending.drain(..take).map(|p| Send::new(name.as_str(), p)));
    }
    if !sends.is_empty() {
        update = update.set(CTL, serde_json::to_value(&ctl)?);
        return Ok(Command::goto(sends).update(update));
    }

    // 2. Settle the nodes of the last superstep (routers last).
    if !ctl.running.is_empty() {
        for m in std::mem::take(&mut ctl.maps) {
            let items = match state.get(&items_channel(&plan.nodes[m.node].name)) {
                Some(Value::Array(a)) => a.get(m.offset..).map(<[Value]>::to_vec).unwrap_or_default(),
                _ => Vec::new(),
            };
            let v = Value::Array(items);
            update = update.set(plan.nodes[m.node].name.as_str(), v.clone());
            vals[m.node] = Some(v);
        }
        let mut running = std::mem::take(&mut ctl.running);
        running.sort_by_key(|&id| matches!(plan.nodes[id].kind, PlanNodeKind::Router { .. }));
        let s = ctl.stage;
        let mut jump: Option<usize> = None;
        for id in running {
            let v = vals[id]
                .clone()
                .unwrap_or_else(|| state.get(&plan.nodes[id].name).cloned().unwrap_or(Value::Null));
            let PlanNodeKind::Router { routes, .. } = &plan.nodes[id].kind else {
                vals[id] = Some(v);
                continue;
            };
            let mut chosen = None;
            for route in routes {
                if !route.when.as_ref().is_none_or(|c| matches(c, &v)) {
                    continue;
                }
                if route.back {
                    let Some(li) = plan
                        .loops
                        .iter()
                        .position(|l| l.router == id && Some(l.entry) == route.target)
                    else {
                        continue;
                    };
                    if ctl.iterations[li] >= plan.loops[li].max_iterations {
                        continue;
                    }
                    ctl.iterations[li] += 1;
                    let entry = plan.loops[li].entry;
                    let back_to = plan.nodes.get(entry).map_or(s, |n| n.stage);
                    jump = Some(jump.map_or(back_to, |j| j.min(back_to)));
                    for &b in &plan.loops[li].body {
                        if let Some(old) = vals[b].take() {
                            ctl.previous[b] = Some(old);
                            update = update.set(plan.nodes[b].name.as_str(), Value::Null);
                        }
                        ctl.skipped[b] = false;
                        ctl.chosen[b] = None;
                    }
                    chosen = route.target;
                    ctl.previous[id] = Some(v.clone());
                    break;
                }
                chosen = route.target;
                break;
            }
            // The router's own value is kept for the next iteration to read.
            let in_body = plan.loops.iter().any(|l| l.router == id && l.body.contains(&id));
            vals[id] = (jump.is_none() || !in_body).then_some(v);
            ctl.chosen[id] = Some(chosen);
        }
        ctl.stage = jump.unwrap_or(s + 1);
    }

    // 3. The next stage with something to run.
    let mut routes: Vec<Send> = Vec::new();
    while let Some(stage) = plan.stages.get(ctl.stage) {
        let mut to_run = Vec::new();
        for &id in stage {
            if vals[id].is_some() || ctl.skipped[id] {
                continue;
            }
            let node = &plan.nodes[id];
            let gated =
                !node.gates.is_empty() && !node.gates.iter().any(|&g| ctl.chosen.get(g) == Some(&Some(Some(id))));
            let live = !gated
                && if matches!(node.kind, PlanNodeKind::Join { .. }) {
                    node.deps.is_empty() || node.deps.iter().any(|&d| !ctl.skipped[d])
                } else {
                    !node.deps.iter().any(|&d| ctl.skipped[d])
                };
            if live {
                to_run.push(id);
            } else {
                ctl.skipped[id] = true;
            }
        }
        let view = View {
            sp,
            inputs,
            vals: &vals,
            previous: &ctl.previous,
        };
        let mut launched = Vec::new();
        let mut immediate = Vec::new();
        for id in to_run {
            let node = &plan.nodes[id];
            let name = node.name.as_str();
            let rationale = node
                .rationale
                .clone()
                .or_else(|| node.agent().and_then(|a| a.rationale.clone()));
            if let Some(r) = rationale {
                let run = &ctx.run();
                run.emit_with(|| EventKind::NodeRationale {
                    graph_id: ctx.graph_id().clone(),
                    node_id: name.into(),
                    namespace: ctx.namespace().into(),
                    kind: node.kind_name().into(),
                    rationale: r.into(),
                });
            }
            match &node.kind {
                PlanNodeKind::Agent(a) => {
                    routes.push(Send::new(name, task_payload(view.render(&a.task, Scope::default()))));
                    launched.push(id);
                }
                PlanNodeKind::Reduce { from, agent } => {
                    let list = Value::Array(as_list(&view.value_of(from, Scope::default())));
                    let payload = match agent {
                        Some(a) => task_payload(view.render(
                            &a.task,
                            Scope {
                                items: Some(&list),
                                ..Scope::default()
                            },
                        )),
                        None => serde_json::json!({ "value": list }),
                    };
                    routes.push(Send::new(name, payload));
                    launched.push(id);
                }
                PlanNodeKind::Router { on, .. } => {
                    routes.push(Send::new(
                        name,
                        serde_json::json!({ "value": view.value_of(on, Scope::default()) }),
                    ));
                    launched.push(id);
                }
                PlanNodeKind::Join { of } => {
                    let v: serde_json::Map<String, Value> = of
                        .iter()
                        .filter_map(|&d| Some((plan.nodes.get(d)?.name.clone(), vals.get(d)?.clone()?)))
                        .collect();
                    routes.push(Send::new(name, serde_json::json!({ "value": v })));
                    launched.push(id);
                }
                PlanNodeKind::Subgraph(s) => {
                    check_depth(sp, s, ctx)?;
                    let inputs: serde_json::Map<String, Value> = s
                        .with
                        .iter()
                        .map(|(k, t)| (k.clone(), view.input_value(t, Scope::default())))
                        .collect();
                    routes.push(Send::new(name, serde_json::json!({ INPUTS: inputs })));
                    launched.push(id);
                }
                PlanNodeKind::Map(m) => {
                    let items = as_list(&view.value_of(&m.over, Scope::default()));
                    if items.is_empty() {
                        immediate.push((id, Value::Array(Vec::new())));
                        continue;
                    }
                    let cap = m
                        .concurrency
                        .map_or(usize::MAX, |c| c as usize)
                        .min(ctx.run().limits().max_concurrent_children.unwrap_or(usize::MAX))
                        .max(1);
                    let mut payloads = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        let scope = Scope {
                            item: Some(item),
                            index: Some(i),
                            items: None,
                        };
                        payloads.push(match &m.body {
                            MapBody::Agent(a) => task_payload(view.render(&a.task, scope)),
                            MapBody::Subgraph(s) => {
                                check_depth(sp, s, ctx)?;
                                let inputs: serde_json::Map<String, Value> = s
                                    .with
                                    .iter()
                                    .map(|(k, t)| (k.clone(), view.input_value(t, scope)))
                                    .collect();
                                serde_json::json!({ INPUTS: inputs })
                            }
                        });
                    }
                    let offset = match state.get(&items_channel(name)) {
                        Some(Value::Array(a)) => a.len(),
                        _ => 0,
                    };
                    let first: Vec<Value> = payloads.drain(..cap.min(payloads.len())).collect();
                    routes.extend(first.into_iter().map(|p| Send::new(name, p)));
                    ctl.maps.push(MapRun {
                        node: id,
                        offset,
                        cap,
                        pending: payloads,
                    });
                    launched.push(id);
                }
            }
        }
        for (id, v) in immediate {
            update = update.set(plan.nodes[id].name.as_str(), v.clone());
            vals[id] = Some(v);
        }
        if launched.is_empty() {
            ctl.stage += 1;
            continue;
        }
        ctl.running = launched;
        break;
    }
    ctl.done = vals.iter().map(Option::is_some).collect();
    if !routes.is_empty() {
        update = update.set(CTL, serde_json::to_value(&ctl)?);
        return Ok(Command::goto(routes).update(update));
    }
    // 4. Done: the result.
    let mut outs = serde_json::Map::new();
    let mut single = None;
    let mut missing = None;
    for &o in &plan.output {
        let name = plan.nodes[o].name.clone();
        match vals[o].clone() {
            Some(v) => {
                single = Some(v.clone());
                outs.insert(name, v);
            }
            None if plan.output.len() == 1 => missing = Some(name),
            None => {}
        }
    }
    let result = match missing {
        Some(m) => serde_json::json!({ "no_output": m }),
        None if plan.output.len() == 1 => serde_json::json!({ "value": single.unwrap_or(Value::Null) }),
        None => serde_json::json!({ "value": outs }),
    };
    update = update.set(CTL, serde_json::to_value(&ctl)?).set(RESULT, result);
    Ok(Command::goto(END).update(update))
}

/// A nested blueprint used more than its `max_depth` is refused.
fn check_depth(sp: &SchedPlan, s: &SubgraphPlan, ctx: &NodeContext) -> Result<(), NodeError> {
    let sub = if s.is_blueprint {
        sp.library.get(&s.uses)
    } else {
        sp.factory_named.get(&s.uses)
    };
    let Some(max) = sub.and_then(|p| p.max_depth) else {
        return Ok(());
    };
    let uses = ctx
        .recursion_stack()
        .iter()
        .skip(1)
        .filter(|f| f.graph_id.as_str() == s.uses)
        .count();
    if uses >= max as usize {
        return Err(NodeError::Failed(format!(
            "`{}` is nested more than its max_depth of {max}",
            s.uses
        )));
    }
    Ok(())
}

/// `spawn_agents` inside a graph task: lowers the fragment and runs it as a
/// subgraph of the calling task (through the graph's tool path, which
/// continues the task's namespace, recursion stack and tree-wide counters),
/// records the outcome of each spliced node in the registry, and returns
/// the result as text.
pub(crate) async fn run_spliced(
    plan: &Plan,
    factory: &dyn AgentFactory,
    ctx: &tinyagents_core::ToolContext,
    inputs: &Inputs,
    registry: &crate::spawn::SpawnRegistry,
    parent: crate::spawn::RegId,
) -> Result<String, tinyagents_core::ToolError> {
    use crate::spawn::SpawnStatus;
    use tinyagents_core::ToolError;
    check_inputs(plan, inputs).map_err(ToolError::failed)?;
    let graph = lower(plan, factory, ctx.run.depth().saturating_add(1)).map_err(|r| ToolError::Denied {
        reason: format!("the blueprint was not spawned: {}", r.render_plain()),
    })?;
    let ids = registry.splice(parent, plan);
    let tool = graph.as_tool(crate::spawn::SPAWN_TOOL, "the spawned team", RunOptions::new());
    let args = serde_json::json!({ "input": { INPUTS: inputs } }).to_string();
    let called = tool.call_json(ctx.clone(), &args).await;
    let state: Value = match &called {
        Ok(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let ctl: Ctl = state
        .get(CTL)
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    for (node, &id) in plan.nodes.iter().zip(&ids) {
        let status = if ctl.done.get(node.id).copied().unwrap_or(false) {
            SpawnStatus::Done
        } else if ctl.skipped.get(node.id).copied().unwrap_or(false) {
            SpawnStatus::Skipped
        } else {
            SpawnStatus::Failed
        };
        registry.set_status(id, status);
    }
    called?;
    let result = state.get(RESULT).cloned().unwrap_or(Value::Null);
    if let Some(Value::String(missing)) = result.get("no_output") {
        return Err(ToolError::failed(format!(
            "the output `{missing}` did not run: no route selected it"
        )));
    }
    Ok(text_of(&result.get("value").cloned().unwrap_or(Value::Null)))
}
