//! The compiler driver: resolve → validate → capability check → optimize →
//! estimate → [`Plan`].
//!
//! ```
//! use tinyagents_blueprint::{CapabilityGrant, CompileOptions, compile, parse_text};
//!
//! let src = r#"blueprint team {
//!   model "m"
//!   output writer
//!   agent researcher { task "Find facts." tools [web_search] }
//!   agent critic { task "Find flaws." }
//!   agent writer { task "Write from {{deps.researcher}} and {{deps.critic}}." }
//!   agent idle { task "Nobody reads me." }
//! }"#;
//! let bp = parse_text("team.ta", src).unwrap().blueprint;
//! let plan = compile(&bp, &CompileOptions::new().grant(CapabilityGrant::tools(["web_search"]))).unwrap();
//! assert_eq!(plan.stages.len(), 2); // researcher and critic run together
//! assert_eq!(plan.pruned[0].name, "idle");
//!
//! // A tool the grant lacks is refused, naming the tool.
//! let err = compile(&bp, &CompileOptions::new().grant(CapabilityGrant::none())).unwrap_err();
//! assert!(err[0].message.contains("`web_search`"));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use tinyagents_core::PriceTable;

use crate::capability::{self, CapabilityGrant};
use crate::diagnostic::{Diagnostic, Report};
use crate::estimate::{self, Estimate, EstimateDefaults};
use crate::graph::sccs;
use crate::ir::{AgentSpec, Blueprint, Node, Ref, RouterSpec, SubgraphSpec, Template};
use crate::load::{Loaded, load_file};
use crate::optimize::{self, Optimized, schema_at};
use crate::plan::{
    AgentPlan, EdgeKind, MapBody, MapPlan, Plan, PlanEdge, PlanLoop, PlanNode, PlanNodeKind, PlanRoute, Pruned,
    SubgraphPlan,
};
use crate::resolve::{self, BpInfo, Tree};
use crate::validate::{self, Flow};

/// What the compiler needs besides the blueprint.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Tools the spawner may grant (default: unrestricted; a
    /// `spawn_agents` call always passes its owner's tools).
    pub grant: CapabilityGrant,
    /// Model for agents and blueprints that name none.
    pub default_model: Option<String>,
    /// Prices, for the estimate.
    pub prices: Arc<PriceTable>,
    /// Names of graphs available at run time (usable by `subgraph`).
    pub graphs: Vec<String>,
    /// Estimate defaults.
    pub estimates: EstimateDefaults,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            grant: CapabilityGrant::unrestricted(),
            default_model: None,
            prices: Arc::new(PriceTable::new()),
            graphs: Vec::new(),
            estimates: EstimateDefaults::default(),
        }
    }
}

impl CompileOptions {
    /// Unrestricted grant, no default model, no prices.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the capability grant.
    #[must_use]
    pub fn grant(mut self, grant: CapabilityGrant) -> Self {
        self.grant = grant;
        self
    }
    /// Sets the default model.
    #[must_use]
    pub fn default_model(mut self, model: impl Into<String>) -> Self {
        self.default_model = Some(model.into());
        self
    }
    /// Sets the price table.
    #[must_use]
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.prices = Arc::new(prices);
        self
    }
    /// Sets a shared price table.
    #[must_use]
    pub fn shared_prices(mut self, prices: Arc<PriceTable>) -> Self {
        self.prices = prices;
        self
    }
    /// Declares a graph available by name.
    #[must_use]
    pub fn graph(mut self, name: impl Into<String>) -> Self {
        self.graphs.push(name.into());
        self
    }
    /// Sets the estimate defaults.
    #[must_use]
    pub fn estimates(mut self, e: EstimateDefaults) -> Self {
        self.estimates = e;
        self
    }
}

/// Compiles a blueprint. On success the plan carries the warnings; on
/// failure every diagnostic found is returned (errors first).
pub fn compile(bp: &Blueprint, opts: &CompileOptions) -> Result<Plan, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let tree = resolve::resolve(bp, &opts.graphs, &mut diags);
    let flows = validate::validate(&tree, opts.default_model.as_deref(), &mut diags);
    capability::check(&tree, &opts.grant, &mut diags);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(sorted(diags));
    }
    let opt = optimize::optimize(&tree, &flows, &mut diags);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(sorted(diags));
    }
    let mut builder = Builder {
        tree: &tree,
        opts,
        local: Vec::new(),
        memo: HashMap::new(),
    };
    for (b, info) in tree.blueprints.iter().enumerate() {
        let empty_flow = Flow::default();
        let empty_opt = Optimized::default();
        let built = builder.build(
            info,
            flows.get(b).unwrap_or(&empty_flow),
            opt.get(b).unwrap_or(&empty_opt),
        );
        builder.local.push(built);
    }
    let depth = builder.initial_depth();
    let mut plans: Vec<Plan> = (0..tree.blueprints.len()).map(|b| builder.finish(b, depth)).collect();
    let mut root = if plans.is_empty() {
        return Err(sorted(diags));
    } else {
        plans.remove(0)
    };
    root.subplans = plans.into_iter().map(|p| (p.name.clone(), Arc::new(p))).collect();
    root.warnings = sorted(diags);
    Ok(root)
}

fn sorted(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diags.sort_by_key(|d| !d.is_error());
    diags
}

/// Compiles a loaded blueprint; diagnostics point into its source.
pub fn compile_loaded(loaded: &Loaded, opts: &CompileOptions) -> Result<Plan, Report> {
    compile(&loaded.blueprint, opts).map_err(|d| Report::new(Some(loaded.source.clone()), d))
}

/// A checked file: its plan and its warnings (as a report on its source).
#[derive(Clone, Debug)]
pub struct Checked {
    /// The blueprint and its source.
    pub loaded: Loaded,
    /// The plan.
    pub plan: Plan,
    /// Warnings, pointing into the source.
    pub warnings: Report,
}

/// Loads and compiles a `.json` or `.ta` file: what `tinyagents check` runs.
pub fn check_file(path: &Path, opts: &CompileOptions) -> Result<Checked, Report> {
    let loaded = load_file(path)?;
    let plan = compile_loaded(&loaded, opts)?;
    let warnings = Report::new(Some(loaded.source.clone()), plan.warnings.clone());
    Ok(Checked { loaded, plan, warnings })
}

/// A plan whose node estimates do not yet include subgraphs.
struct Local {
    plan: Plan,
    /// Per node: the blueprint it uses as a subgraph, and how many times
    /// (map items × loop iterations).
    subgraph: Vec<Option<(usize, u64)>>,
}

struct Builder<'t, 'a> {
    tree: &'t Tree<'a>,
    opts: &'t CompileOptions,
    local: Vec<Local>,
    memo: HashMap<(usize, u32), Estimate>,
}

impl Builder<'_, '_> {
    fn agent(&self, a: &AgentSpec, task: Option<&Template>, info: &BpInfo<'_>) -> AgentPlan {
        let model = a
            .model
            .as_deref()
            .or(info.model)
            .or(self.opts.default_model.as_deref())
            .unwrap_or_default()
            .to_string();
        let est = estimate::agent(&model, a.estimate.as_ref(), &self.opts.estimates, &self.opts.prices);
        AgentPlan {
            name: a.name.clone(),
            role: a.role.clone(),
            task: task.cloned().unwrap_or_default(),
            model,
            tools: a.tools.clone(),
            output: a.output.clone(),
            budget: a.budget.clone(),
            rationale: a.rationale.clone(),
            estimate: est,
        }
    }

    fn subgraph(&self, s: &SubgraphSpec, with: &BTreeMap<String, Template>, uses: Option<usize>) -> SubgraphPlan {
        SubgraphPlan {
            name: s.name.clone(),
            uses: s.uses.clone(),
            is_blueprint: uses.is_some(),
            with: with.clone(),
        }
    }

    fn build(&self, info: &BpInfo<'_>, flow: &Flow, opt: &Optimized) -> Local {
        let b_idx = self.tree.by_name.get(info.bp.name.as_str()).copied().unwrap_or(0);
        let n = info.nodes.len();
        let mut new_id = vec![usize::MAX; n];
        let mut live_ids = Vec::new();
        for (v, slot) in new_id.iter_mut().enumerate() {
            if opt.live.get(v).copied().unwrap_or(false) {
                *slot = live_ids.len();
                live_ids.push(v);
            }
        }
        let id = |v: usize| new_id.get(v).copied().filter(|&x| x != usize::MAX);
        // Loop multipliers.
        let mut mult = vec![1u64; n];
        let iterations = info.bp.recursion.as_ref().and_then(|r| r.max_iterations).unwrap_or(1);
        for l in &flow.loops {
            for &m in &l.members {
                mult[m] = u64::from(iterations.max(1));
            }
        }
        let mut nodes = Vec::with_capacity(live_ids.len());
        let mut edges = Vec::new();
        let mut subgraph = Vec::with_capacity(live_ids.len());
        for &v in &live_ids {
            let ni = &info.nodes[v];
            let mut est = Estimate::default();
            let mut sub = None;
            let kind = match ni.node {
                Node::Agent(a) => {
                    let ap = self.agent(a, ni.task.as_ref(), info);
                    est = ap.estimate;
                    PlanNodeKind::Agent(ap)
                }
                Node::Map(m) => {
                    let over = Ref::parse_source(&m.over).unwrap_or_else(|_| Ref::node(""));
                    let items = estimate::map_items(
                        m.expected_items,
                        schema_at(self.tree, b_idx, &over),
                        &self.opts.estimates,
                    );
                    let body = match m.each.as_ref() {
                        Node::Subgraph(s) => {
                            sub = ni.uses.map(|u| (u, u64::from(items)));
                            MapBody::Subgraph(self.subgraph(s, &ni.with, ni.uses))
                        }
                        _ => {
                            let ap = match &ni.agent {
                                Some((a, _)) => self.agent(a, ni.task.as_ref(), info),
                                None => self.agent(&AgentSpec::default(), None, info),
                            };
                            est = ap.estimate.times(u64::from(items));
                            MapBody::Agent(ap)
                        }
                    };
                    PlanNodeKind::Map(MapPlan {
                        over,
                        body,
                        concurrency: m.concurrency,
                        expected_items: items,
                    })
                }
                Node::Reduce(r) => {
                    let agent = ni.agent.as_ref().map(|(a, _)| self.agent(a, ni.task.as_ref(), info));
                    if let Some(a) = &agent {
                        est = a.estimate;
                    }
                    PlanNodeKind::Reduce {
                        from: Ref::parse_source(&r.from).unwrap_or_else(|_| Ref::node("")),
                        agent,
                    }
                }
                Node::Router(r) => PlanNodeKind::Router {
                    on: Ref::parse_source(&r.on).unwrap_or_else(|_| Ref::node("")),
                    routes: self.routes(r, v, info, flow, opt, &id),
                },
                Node::Join(j) => PlanNodeKind::Join {
                    of: j
                        .of
                        .iter()
                        .filter_map(|name| info.by_name.get(name.as_str()).and_then(|&x| id(x)))
                        .collect(),
                },
                Node::Subgraph(s) => {
                    sub = ni.uses.map(|u| (u, 1));
                    PlanNodeKind::Subgraph(self.subgraph(s, &ni.with, ni.uses))
                }
            };
            let me = id(v).unwrap_or(0);
            let (mut deps, mut gates, mut feedback) = (Vec::new(), Vec::new(), Vec::new());
            for d in &ni.deps {
                let Some(from) = id(d.from) else { continue };
                let back = flow.back.contains(&(d.from, v));
                let kind = match (back, d.kind) {
                    (true, resolve::EdgeKind::Data) => {
                        feedback.push(from);
                        EdgeKind::Back
                    }
                    (true, _) => EdgeKind::Back,
                    (false, resolve::EdgeKind::Route) => {
                        gates.push(from);
                        EdgeKind::Route
                    }
                    (false, resolve::EdgeKind::Data) => {
                        deps.push(from);
                        EdgeKind::Data
                    }
                    (false, resolve::EdgeKind::Order) => {
                        deps.push(from);
                        EdgeKind::Order
                    }
                };
                edges.push(PlanEdge { from, to: me, kind });
            }
            for list in [&mut deps, &mut gates, &mut feedback] {
                list.sort_unstable();
                list.dedup();
            }
            let m = mult[v];
            subgraph.push(sub.map(|(u, k)| (u, k.saturating_mul(m))));
            nodes.push(PlanNode {
                id: me,
                name: ni.node.name().to_string(),
                kind,
                rationale: ni.node.rationale().map(str::to_string),
                deps,
                gates,
                feedback,
                stage: opt.stage.get(v).copied().unwrap_or(0),
                estimate: est.times(m),
                output_type: flow.types.get(v).copied().unwrap_or_default(),
            });
        }
        // Compact stages.
        let mut levels: Vec<usize> = nodes.iter().map(|n| n.stage).collect();
        levels.sort_unstable();
        levels.dedup();
        for node in &mut nodes {
            node.stage = levels.binary_search(&node.stage).unwrap_or(0);
        }
        let mut stages: Vec<Vec<usize>> = vec![Vec::new(); levels.len()];
        for node in &nodes {
            if let Some(s) = stages.get_mut(node.stage) {
                s.push(node.id);
            }
        }
        let loops = flow
            .loops
            .iter()
            .filter_map(|l| {
                let (router, entry) = (id(l.router)?, id(l.entry)?);
                Some(PlanLoop {
                    router,
                    entry,
                    body: reachable(&nodes, entry),
                    max_iterations: iterations,
                })
            })
            .collect();
        let pruned = opt
            .pruned
            .iter()
            .map(|&(v, reason)| Pruned {
                name: info.nodes[v].node.name().to_string(),
                reason,
            })
            .collect();
        Local {
            plan: Plan {
                name: info.bp.name.clone(),
                description: info.bp.description.clone(),
                inputs: info.bp.inputs.clone(),
                nodes,
                edges,
                stages,
                output: opt.outputs.iter().filter_map(|&o| id(o)).collect(),
                loops,
                pruned,
                estimate: Estimate::default(),
                max_depth: info.bp.recursion.as_ref().and_then(|r| r.max_depth),
                subplans: BTreeMap::new(),
                warnings: Vec::new(),
            },
            subgraph,
        }
    }

    fn routes(
        &self,
        r: &RouterSpec,
        v: usize,
        info: &BpInfo<'_>,
        flow: &Flow,
        opt: &Optimized,
        id: &dyn Fn(usize) -> Option<usize>,
    ) -> Vec<PlanRoute> {
        let target = |name: &str| info.by_name.get(name).copied();
        let mut out: Vec<PlanRoute> = r
            .routes
            .iter()
            .enumerate()
            .filter(|(k, _)| !opt.dead_routes.contains(&(v, *k)))
            .map(|(_, route)| {
                let t = target(&route.to);
                PlanRoute {
                    when: Some(route.when.clone()),
                    target: t.and_then(id),
                    back: t.is_some_and(|t| flow.back.contains(&(v, t))),
                }
            })
            .collect();
        if let Some(d) = &r.default
            && !opt.dead_routes.contains(&(v, r.routes.len()))
        {
            let t = target(d);
            out.push(PlanRoute {
                when: None,
                target: t.and_then(id),
                back: t.is_some_and(|t| flow.back.contains(&(v, t))),
            });
        }
        out
    }

    fn initial_depth(&self) -> u32 {
        let n = self.tree.blueprints.len();
        let succ: Vec<Vec<usize>> = self
            .local
            .iter()
            .map(|l| l.subgraph.iter().flatten().map(|&(u, _)| u).collect())
            .collect();
        let recursive = sccs(n, &succ)
            .iter()
            .any(|c| c.len() > 1 || c.first().is_some_and(|&x| succ[x].contains(&x)));
        if recursive {
            self.tree
                .blueprints
                .iter()
                .filter_map(|b| b.bp.recursion.as_ref().and_then(|r| r.max_depth))
                .max()
                .unwrap_or(1)
                .clamp(1, 16)
        } else {
            u32::try_from(n + 1).unwrap_or(u32::MAX)
        }
    }

    fn total(&mut self, b: usize, depth: u32) -> Estimate {
        if depth == 0 {
            return Estimate::default();
        }
        if let Some(e) = self.memo.get(&(b, depth)) {
            return *e;
        }
        let subs: Vec<(usize, Option<(usize, u64)>)> = self
            .local
            .get(b)
            .map(|l| l.subgraph.iter().copied().enumerate().collect())
            .unwrap_or_default();
        let mut total = Estimate::default();
        for (i, sub) in subs {
            let mut e = self
                .local
                .get(b)
                .and_then(|l| l.plan.nodes.get(i))
                .map(|n| n.estimate)
                .unwrap_or_default();
            if let Some((u, k)) = sub {
                e += self.total(u, depth - 1).times(k);
            }
            total += e;
        }
        self.memo.insert((b, depth), total);
        total
    }

    fn finish(&mut self, b: usize, depth: u32) -> Plan {
        let subs: Vec<Option<(usize, u64)>> = self.local.get(b).map(|l| l.subgraph.clone()).unwrap_or_default();
        let extra: Vec<Estimate> = subs
            .iter()
            .map(|s| {
                s.map_or_else(Estimate::default, |(u, k)| {
                    self.total(u, depth.saturating_sub(1)).times(k)
                })
            })
            .collect();
        let total = self.total(b, depth);
        let Some(local) = self.local.get(b) else {
            return Plan {
                name: String::new(),
                description: None,
                inputs: Vec::new(),
                nodes: Vec::new(),
                edges: Vec::new(),
                stages: Vec::new(),
                output: Vec::new(),
                loops: Vec::new(),
                pruned: Vec::new(),
                estimate: Estimate::default(),
                max_depth: None,
                subplans: BTreeMap::new(),
                warnings: Vec::new(),
            };
        };
        let mut plan = local.plan.clone();
        for (node, e) in plan.nodes.iter_mut().zip(extra) {
            node.estimate += e;
        }
        plan.estimate = total;
        plan
    }
}

/// Live nodes reachable from `entry` along forward edges (entry included).
fn reachable(nodes: &[PlanNode], entry: usize) -> Vec<usize> {
    let mut seen = vec![false; nodes.len()];
    let mut stack = vec![entry];
    while let Some(v) = stack.pop() {
        if seen.get(v).copied().unwrap_or(true) {
            continue;
        }
        seen[v] = true;
        for n in nodes {
            if (n.deps.contains(&v) || n.gates.contains(&v)) && !seen[n.id] {
                stack.push(n.id);
            }
        }
    }
    (0..nodes.len()).filter(|&v| seen[v]).collect()
}
