//! The optimized IR: a [`Plan`] of typed nodes, data edges and parallel
//! stages, each node keeping its description's rationale and its estimate.
//!
//! A plan is what the interim executor runs and what lowering to
//! `tinyagents-graph` ([`crate::lower`]) consumes: agents map to sub-agent nodes, `map` to
//! a fan-out, `router` to conditional edges, `subgraph` to a subgraph.
//! Nodes are numbered in declaration order of the live nodes; `stages`
//! lists them by topological level (all nodes of a stage are independent of
//! each other and may run at once).

mod render;

use std::collections::BTreeMap;
use std::sync::Arc;

use tinyagents_core::RunLimits;

use crate::diagnostic::Diagnostic;
use crate::ir::{AgentBudget, Condition, ExpectedOutput, InputSpec, Ref, Template, ValueType};

pub use crate::estimate::Estimate;

/// Index of a node in [`Plan::nodes`].
pub type NodeId = usize;

/// A compiled blueprint.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The blueprint's name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// Its inputs.
    pub inputs: Vec<InputSpec>,
    /// Live nodes (pruned ones are in `pruned`).
    pub nodes: Vec<PlanNode>,
    /// Edges between live nodes.
    pub edges: Vec<PlanEdge>,
    /// Parallel stages: topological levels of the forward graph.
    pub stages: Vec<Vec<NodeId>>,
    /// The node(s) whose value is the result (several are joined).
    pub output: Vec<NodeId>,
    /// Bounded loops (router routes back).
    pub loops: Vec<PlanLoop>,
    /// What the optimizer removed, and why.
    pub pruned: Vec<Pruned>,
    /// Estimated work of one run of this plan (subgraphs included).
    pub estimate: Estimate,
    /// How deep this blueprint may use itself (`recursion.max_depth`).
    pub max_depth: Option<u32>,
    /// Compiled nested blueprints by name (on the root plan only: the
    /// library every `subgraph` node of the tree refers to).
    pub subplans: BTreeMap<String, Arc<Plan>>,
    /// Warnings the compiler found (pruned nodes, unreachable routes).
    pub warnings: Vec<Diagnostic>,
}

impl Plan {
    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&PlanNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Number of agent descriptions in this plan and its subplans (map
    /// bodies and reducers count once).
    pub fn agent_count(&self) -> usize {
        let own = self.nodes.iter().filter(|n| n.agent().is_some()).count();
        own + self.subplans.values().map(|p| p.agent_count()).sum::<usize>()
    }

    /// Every tool any agent of the plan (or its subplans) uses.
    pub fn tools(&self) -> std::collections::BTreeSet<String> {
        let mut out: std::collections::BTreeSet<String> = self
            .nodes
            .iter()
            .filter_map(PlanNode::agent)
            .flat_map(|a| a.tools.iter().cloned())
            .collect();
        for p in self.subplans.values() {
            out.extend(p.tools());
        }
        out
    }

    /// The stage a node runs in.
    pub fn stage_of(&self, id: NodeId) -> Option<usize> {
        self.nodes.get(id).map(|n| n.stage)
    }
}

/// A node of a plan.
#[derive(Clone, Debug)]
pub struct PlanNode {
    /// Its index.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// What it does.
    pub kind: PlanNodeKind,
    /// Why it exists (from the description), shown in plans and events.
    pub rationale: Option<String>,
    /// Nodes it reads or runs after (forward edges).
    pub deps: Vec<NodeId>,
    /// Routers that must select it for it to run.
    pub gates: Vec<NodeId>,
    /// Loop members it reads from the previous iteration (back edges).
    pub feedback: Vec<NodeId>,
    /// Its stage.
    pub stage: usize,
    /// Its estimated work (loops and subgraphs included).
    pub estimate: Estimate,
    /// The coarse type of its value.
    pub output_type: ValueType,
}

impl PlanNode {
    /// The agent this node runs (itself, its map body or its reducer).
    pub fn agent(&self) -> Option<&AgentPlan> {
        match &self.kind {
            PlanNodeKind::Agent(a) => Some(a),
            PlanNodeKind::Map(m) => match &m.body {
                MapBody::Agent(a) => Some(a),
                MapBody::Subgraph(_) => None,
            },
            PlanNodeKind::Reduce { agent, .. } => agent.as_ref(),
            _ => None,
        }
    }

    /// The kind keyword.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            PlanNodeKind::Agent(_) => "agent",
            PlanNodeKind::Map(_) => "map",
            PlanNodeKind::Reduce { .. } => "reduce",
            PlanNodeKind::Router { .. } => "router",
            PlanNodeKind::Join { .. } => "join",
            PlanNodeKind::Subgraph(_) => "subgraph",
        }
    }
}

/// What a plan node does.
#[derive(Clone, Debug)]
pub enum PlanNodeKind {
    /// Runs one agent.
    Agent(AgentPlan),
    /// Runs its body once per item.
    Map(MapPlan),
    /// Folds a list.
    Reduce {
        /// The list.
        from: Ref,
        /// The folding agent (none: the value is the list).
        agent: Option<AgentPlan>,
    },
    /// Selects downstream nodes.
    Router {
        /// The value routed on.
        on: Ref,
        /// Routes in order (the default last, with no condition).
        routes: Vec<PlanRoute>,
    },
    /// Collects values.
    Join {
        /// The nodes joined.
        of: Vec<NodeId>,
    },
    /// Runs a nested blueprint or a named graph.
    Subgraph(SubgraphPlan),
}

/// A `map` node.
#[derive(Clone, Debug)]
pub struct MapPlan {
    /// The list.
    pub over: Ref,
    /// What runs per item.
    pub body: MapBody,
    /// At most this many items at once.
    pub concurrency: Option<u32>,
    /// Items assumed by the estimate.
    pub expected_items: u32,
}

/// The body of a map.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // one per map node; boxing buys nothing
pub enum MapBody {
    /// An agent per item.
    Agent(AgentPlan),
    /// A subgraph per item.
    Subgraph(SubgraphPlan),
}

/// A subgraph use.
#[derive(Clone, Debug)]
pub struct SubgraphPlan {
    /// The body's name (for run paths).
    pub name: String,
    /// The nested blueprint (a key of the root's `subplans`) or graph name.
    pub uses: String,
    /// Whether `uses` names a nested blueprint (else a graph registered by name).
    pub is_blueprint: bool,
    /// Input templates.
    pub with: BTreeMap<String, Template>,
}

/// One route of a router.
#[derive(Clone, Debug)]
pub struct PlanRoute {
    /// The condition (`None` for the default route).
    pub when: Option<Condition>,
    /// The node it selects (`None` when that node was pruned: taking the
    /// route then runs nothing).
    pub target: Option<NodeId>,
    /// True when it routes back to an earlier node (a loop).
    pub back: bool,
}

/// A bounded loop.
#[derive(Clone, Debug)]
pub struct PlanLoop {
    /// The router that routes back.
    pub router: NodeId,
    /// Where it routes back to.
    pub entry: NodeId,
    /// Nodes that run again on each iteration (the entry and what follows it).
    pub body: Vec<NodeId>,
    /// Most times the router may route back.
    pub max_iterations: u32,
}

/// A node the optimizer removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pruned {
    /// Its name.
    pub name: String,
    /// Why it was removed.
    pub reason: PruneReason,
}

/// Why a node was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneReason {
    /// Nothing that leads to the output reads it.
    Unread,
    /// Only routes that can never be taken lead to it.
    Unreachable,
}

/// Kind of a plan edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    /// Reads the value.
    Data,
    /// Runs after.
    Order,
    /// Router selects.
    Route,
    /// Loop: routes back, or reads the previous iteration.
    Back,
}

/// An edge between live nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanEdge {
    /// Source.
    pub from: NodeId,
    /// Target.
    pub to: NodeId,
    /// Kind.
    pub kind: EdgeKind,
}

/// An agent, ready to build.
#[derive(Clone, Debug)]
pub struct AgentPlan {
    /// Its name (the run's name).
    pub name: String,
    /// System prompt.
    pub role: Option<String>,
    /// Task template.
    pub task: Template,
    /// Model id.
    pub model: String,
    /// Tools (already checked against the grant).
    pub tools: Vec<String>,
    /// Expected output.
    pub output: Option<ExpectedOutput>,
    /// Budget asked for.
    pub budget: Option<AgentBudget>,
    /// Why.
    pub rationale: Option<String>,
    /// Estimate of one run of it.
    pub estimate: Estimate,
}

impl AgentPlan {
    /// The JSON Schema of its structured output, if it declares one.
    pub fn response_format(&self) -> Option<serde_json::Value> {
        match &self.output {
            Some(ExpectedOutput::Schema(s)) => Some(serde_json::Value::Object(s.clone())),
            _ => None,
        }
    }

    /// The limits it asks for when it runs at `depth`.
    pub fn limits(&self, depth: u32) -> RunLimits {
        self.budget
            .as_ref()
            .map_or_else(RunLimits::inherit, |b| b.to_limits(depth))
    }
}
