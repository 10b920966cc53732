//! Pass 4, optimize: prune what cannot matter, find what can run at once.
//!
//! 1. **Unreachable routes.** A route whose condition repeats an earlier
//!    route's, follows a catch-all (`contains ""`), or compares with a value
//!    outside the producer's schema (`enum`/`const`) can never be taken.
//!    It is dropped, with a warning.
//! 2. **Unreachable nodes.** A node that only dropped routes select never
//!    runs, nor does anything that needs it (a join needs just one input).
//! 3. **Dead nodes.** A node whose value nothing on the way to the output
//!    reads is dead: running it would cost tokens for nothing. The output
//!    is the blueprint's `output` node (or, without one, every node nobody
//!    reads).
//! 4. **Stages.** The live nodes are grouped by topological level of the
//!    forward graph (loop back edges removed): every node of a stage
//!    depends only on earlier stages, so a stage runs concurrently.

use std::collections::HashSet;

use crate::diagnostic::Diagnostic;
use crate::graph::levels;
use crate::ir::reference::RefRoot;
use crate::ir::{Condition, ExpectedOutput, Node, Ref};
use crate::plan::PruneReason;
use crate::resolve::{EdgeKind, Tree};
use crate::validate::Flow;

/// What the optimizer decided for one blueprint.
#[derive(Clone, Debug, Default)]
pub struct Optimized {
    /// Live nodes.
    pub live: Vec<bool>,
    /// Removed nodes and why.
    pub pruned: Vec<(usize, PruneReason)>,
    /// Routes dropped: `(router, route index)`; the default has index `routes.len()`.
    pub dead_routes: HashSet<(usize, usize)>,
    /// Stage of each live node.
    pub stage: Vec<usize>,
    /// Output nodes.
    pub outputs: Vec<usize>,
}

/// Optimizes every blueprint of the tree.
pub fn optimize(tree: &Tree<'_>, flows: &[Flow], diags: &mut Vec<Diagnostic>) -> Vec<Optimized> {
    tree.blueprints
        .iter()
        .enumerate()
        .map(|(b, _)| {
            let empty = Flow::default();
            optimize_one(tree, b, flows.get(b).unwrap_or(&empty), diags)
        })
        .collect()
}

pub(crate) fn schema_at<'a>(
    tree: &Tree<'a>,
    b: usize,
    r: &Ref,
) -> Option<&'a serde_json::Map<String, serde_json::Value>> {
    let info = tree.blueprints.get(b)?;
    let RefRoot::Node(name) = &r.root else { return None };
    let node = info.nodes.get(*info.by_name.get(name.as_str())?)?;
    let mut s = match node.node {
        Node::Agent(a) => match &a.output {
            Some(ExpectedOutput::Schema(s)) => s,
            _ => return None,
        },
        Node::Reduce(red) => match red.agent.as_ref().and_then(|a| a.output.as_ref()) {
            Some(ExpectedOutput::Schema(s)) => s,
            _ => return None,
        },
        _ => return None,
    };
    for seg in &r.path {
        s = match s.get("type").and_then(serde_json::Value::as_str) {
            Some("object") => s.get("properties")?.as_object()?.get(seg)?.as_object()?,
            Some("array") => s.get("items")?.as_object()?,
            _ => return None,
        };
    }
    Some(s)
}

/// Why a route can never be taken, if it cannot.
fn unreachable_route(
    routes: &[crate::ir::Route],
    k: usize,
    schema: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Option<String> {
    let route = routes.get(k)?;
    for (j, earlier) in routes.iter().enumerate().take(k) {
        if earlier.when == route.when {
            return Some(format!("route {k} repeats the condition of route {j}"));
        }
        if earlier.when == Condition::Contains(String::new()) {
            return Some(format!("route {j} (`contains \"\"`) always matches first"));
        }
    }
    if let (Condition::Equals(v), Some(s)) = (&route.when, schema) {
        if let Some(allowed) = s.get("enum").and_then(serde_json::Value::as_array)
            && !allowed.contains(v)
        {
            return Some(format!(
                "{v} is not one of the values the schema allows ({})",
                serde_json::Value::Array(allowed.clone())
            ));
        }
        if let Some(c) = s.get("const")
            && c != v
        {
            return Some(format!("the schema fixes the value to {c}"));
        }
    }
    None
}

fn optimize_one(tree: &Tree<'_>, b: usize, flow: &Flow, diags: &mut Vec<Diagnostic>) -> Optimized {
    let Some(info) = tree.blueprints.get(b) else {
        return Optimized::default();
    };
    let n = info.nodes.len();
    let mut out = Optimized::default();
    // 1. Unreachable routes.
    for (i, node) in info.nodes.iter().enumerate() {
        let Node::Router(r) = node.node else { continue };
        let schema = Ref::parse_source(&r.on).ok().and_then(|on| schema_at(tree, b, &on));
        for k in 0..r.routes.len() {
            if let Some(why) = unreachable_route(&r.routes, k, schema) {
                out.dead_routes.insert((i, k));
                diags.push(
                    Diagnostic::warning(
                        "blueprint::unreachable-route",
                        node.path.key("routes").index(k),
                        format!("this route of `{}` can never be taken: {why}", r.name),
                    )
                    .hint("remove it, or fix its condition"),
                );
            }
        }
        if r.default.is_some() && r.routes.iter().any(|x| x.when == Condition::Contains(String::new())) {
            out.dead_routes.insert((i, r.routes.len()));
        }
    }
    // Forward predecessors (back edges removed).
    let pred: Vec<Vec<usize>> = info
        .nodes
        .iter()
        .enumerate()
        .map(|(v, node)| {
            let mut p: Vec<usize> = node
                .deps
                .iter()
                .filter(|d| !flow.back.contains(&(d.from, v)))
                .map(|d| d.from)
                .collect();
            p.sort_unstable();
            p.dedup();
            p
        })
        .collect();
    let Some(level) = levels(n, &pred) else {
        // Validation reported the cycle.
        out.live = vec![false; n];
        return out;
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&v| (level[v], v));
    // 2. Nodes that can never run.
    let mut never = vec![false; n];
    for &v in &order {
        let node = &info.nodes[v];
        let forward = |kind: EdgeKind| {
            node.deps
                .iter()
                .filter(move |d| d.kind == kind && !flow.back.contains(&(d.from, v)))
        };
        let gates: Vec<usize> = forward(EdgeKind::Route).map(|d| d.from).collect();
        let gated_off = !gates.is_empty()
            && gates
                .iter()
                .all(|&g| never[g] || !route_targets(info.nodes[g].node, node.node.name(), &out.dead_routes, g));
        let data: Vec<usize> = forward(EdgeKind::Data)
            .chain(forward(EdgeKind::Order))
            .map(|d| d.from)
            .collect();
        let data_never = if matches!(node.node, Node::Join(_)) {
            !data.is_empty() && data.iter().all(|&d| never[d])
        } else {
            data.iter().any(|&d| never[d])
        };
        never[v] = gated_off || data_never;
    }
    // 3. Dead nodes: backward closure from the outputs.
    let mut has_succ = vec![false; n];
    for node in &info.nodes {
        for d in &node.deps {
            if let Some(s) = has_succ.get_mut(d.from) {
                *s = true;
            }
        }
    }
    out.outputs = match info.output {
        Some(o) => vec![o],
        None => (0..n).filter(|&v| !has_succ[v]).collect(),
    };
    let mut needed = vec![false; n];
    let mut stack = out.outputs.clone();
    while let Some(v) = stack.pop() {
        if std::mem::replace(&mut needed[v], true) {
            continue;
        }
        for d in &info.nodes[v].deps {
            if !needed[d.from] {
                stack.push(d.from);
            }
        }
    }
    for o in out.outputs.clone() {
        if never[o] {
            diags.push(
                Diagnostic::error(
                    "blueprint::unreachable-output",
                    info.nodes[o].path.key("name"),
                    format!(
                        "the output `{}` can never run: no route that can be taken leads to it",
                        info.nodes[o].node.name()
                    ),
                )
                .hint("fix the router conditions that lead to it"),
            );
        }
    }
    out.live = (0..n).map(|v| needed[v] && !never[v]).collect();
    for v in 0..n {
        let reason = if never[v] {
            Some(PruneReason::Unreachable)
        } else if !needed[v] {
            Some(PruneReason::Unread)
        } else {
            None
        };
        if let Some(reason) = reason {
            out.pruned.push((v, reason));
            let why = match reason {
                PruneReason::Unread => "nothing on the way to the output reads its value",
                PruneReason::Unreachable => "only routes that can never be taken lead to it",
            };
            diags.push(
                Diagnostic::warning(
                    "blueprint::pruned",
                    info.nodes[v].path.key("name"),
                    format!("`{}` is pruned: {why}", info.nodes[v].node.name()),
                )
                .hint("remove it, or make the output depend on it"),
            );
        }
    }
    // 4. Stages of the live nodes.
    let live_pred: Vec<Vec<usize>> = (0..n)
        .map(|v| {
            if out.live[v] {
                pred[v].iter().copied().filter(|&p| out.live[p]).collect()
            } else {
                Vec::new()
            }
        })
        .collect();
    out.stage = levels(n, &live_pred).unwrap_or(level);
    out
}

/// True when router `node` (index `g`) has a live route to `target`.
fn route_targets(node: &Node, target: &str, dead: &HashSet<(usize, usize)>, g: usize) -> bool {
    let Node::Router(r) = node else { return false };
    r.routes
        .iter()
        .enumerate()
        .any(|(k, route)| route.to == target && !dead.contains(&(g, k)))
        || (r.default.as_deref() == Some(target) && !dead.contains(&(g, r.routes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::resolve;
    use crate::syntax::parse;
    use crate::validate::validate;

    fn opt(src: &str) -> (Optimized, Vec<Diagnostic>, Vec<String>) {
        let (bp, _) = parse(src).unwrap();
        let mut d = Vec::new();
        let tree = resolve(&bp, &[], &mut d);
        let flows = validate(&tree, Some("m"), &mut d);
        assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
        let o = optimize(&tree, &flows, &mut d);
        let names = bp.nodes.iter().map(|n| n.name().to_string()).collect();
        (o.into_iter().next().unwrap(), d, names)
    }

    #[test]
    fn nodes_nobody_reads_are_pruned() {
        let (o, d, _) = opt(r#"blueprint t { output b
               agent a { task "x" } agent b { task "{{deps.a}}" } agent orphan { task "y" } }"#);
        assert_eq!(o.live, vec![true, true, false]);
        assert_eq!(o.pruned, vec![(2, PruneReason::Unread)]);
        assert!(
            d.iter()
                .any(|d| d.code == "blueprint::pruned" && d.message.contains("orphan"))
        );
    }

    #[test]
    fn without_an_output_every_sink_is_kept() {
        let (o, _, _) = opt(r#"blueprint t { agent a { task "x" } agent b { task "y" } }"#);
        assert_eq!(o.live, vec![true, true]);
        assert_eq!(o.outputs, vec![0, 1]);
    }

    #[test]
    fn independent_agents_share_a_stage() {
        let (o, _, _) = opt(r#"blueprint t { output d
               agent a { task "x" } agent b { task "y" } agent c { task "{{deps.a}}" }
               agent d { task "{{deps.b}} {{deps.c}}" } }"#);
        assert_eq!(o.stage, vec![0, 0, 1, 2]);
    }

    #[test]
    fn routes_outside_the_schema_enum_and_repeated_ones_are_dropped_with_their_targets() {
        let (o, d, _) = opt(r#"blueprint t { output done
               agent r { task "x" output schema {"type": "object", "properties": {"v": {"type": "string", "enum": ["ok", "redo"]}}} }
               router g on r.v { when == "ok" -> a when == "reject" -> b when == "ok" -> b }
               agent a { task "a" } agent b { task "b" }
               join done of [a, b] }"#);
        assert!(o.dead_routes.contains(&(1, 1)) && o.dead_routes.contains(&(1, 2)));
        assert_eq!(o.live, vec![true, true, true, false, true]);
        assert_eq!(o.pruned, vec![(3, PruneReason::Unreachable)]);
        assert_eq!(d.iter().filter(|d| d.code == "blueprint::unreachable-route").count(), 2);
    }

    #[test]
    fn an_output_behind_an_impossible_route_is_an_error() {
        let (bp, _) = parse(
            r#"blueprint t { output b
               agent r { task "x" output schema {"type": "string", "const": "yes"} }
               router g on r { when == "no" -> b } agent b { task "b" } }"#,
        )
        .unwrap();
        let mut d = Vec::new();
        let tree = resolve(&bp, &[], &mut d);
        let flows = validate(&tree, Some("m"), &mut d);
        optimize(&tree, &flows, &mut d);
        assert!(d.iter().any(|d| d.code == "blueprint::unreachable-output"), "{d:?}");
    }
}
