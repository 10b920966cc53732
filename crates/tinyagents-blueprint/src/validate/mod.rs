//! Pass 2, validate: cycles, recursion, types and models.
//!
//! * **Cycles.** A dependency cycle is an error unless it closes through a
//!   router's route back to an earlier node (a review loop) *and* the
//!   blueprint bounds it with `recursion { max_iterations N }`. The route
//!   back and the reads of later nodes by the loop's entry become back
//!   edges; what remains must be acyclic.
//! * **Recursive blueprints.** A blueprint that uses itself as a subgraph
//!   (directly or through others) needs `recursion { max_depth N }`.
//! * **Types.** The expected output of a producer must agree with what its
//!   consumer reads: `map` and `reduce` need lists; `{{deps.x.field}}`
//!   needs `x` to produce an object (a schema); a subgraph input declared
//!   `list` must get a list.
//! * **Models.** Every agent needs a model id (its own, a blueprint's, or
//!   the compile default).

use std::collections::HashSet;

use crate::diagnostic::Diagnostic;
use crate::graph::sccs;
use crate::ir::reference::RefRoot;
use crate::ir::{ExpectedOutput, Node, Ref, TemplatePart, ValueType, schema_type};
use crate::resolve::{EdgeKind, Need, Tree};

/// A bounded loop: a router routing back to an earlier node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopInfo {
    /// The router that closes the loop.
    pub router: usize,
    /// The node the router routes back to.
    pub entry: usize,
    /// Nodes of the cycle.
    pub members: Vec<usize>,
}

/// What validation found about one blueprint's flow.
#[derive(Clone, Debug, Default)]
pub struct Flow {
    /// Edges `(from, to)` that close loops; removed for staging.
    pub back: HashSet<(usize, usize)>,
    /// The loops.
    pub loops: Vec<LoopInfo>,
    /// Output type of each node.
    pub types: Vec<ValueType>,
}

/// Validates the tree; returns the flow of each blueprint (same order).
pub fn validate(tree: &Tree<'_>, default_model: Option<&str>, diags: &mut Vec<Diagnostic>) -> Vec<Flow> {
    check_blueprint_recursion(tree, diags);
    let types = TypeEnv::new(tree);
    tree.blueprints
        .iter()
        .enumerate()
        .map(|(b, info)| {
            check_models(tree, b, default_model, diags);
            check_types(tree, b, &types, diags);
            let mut flow = cycles(tree, b, diags);
            flow.types = (0..info.nodes.len()).map(|n| types.node(b, n)).collect();
            flow
        })
        .collect()
}

fn check_models(tree: &Tree<'_>, b: usize, default_model: Option<&str>, diags: &mut Vec<Diagnostic>) {
    let Some(info) = tree.blueprints.get(b) else { return };
    for n in &info.nodes {
        if let Some((a, at)) = &n.agent
            && a.model.is_none()
            && info.model.is_none()
            && default_model.is_none()
        {
            diags.push(
                Diagnostic::error(
                    "blueprint::no-model",
                    at.key("name"),
                    format!("agent `{}` has no model", a.name),
                )
                .hint("set `model \"…\"` on the agent or the blueprint, or compile with a default model"),
            );
        }
    }
}

fn check_blueprint_recursion(tree: &Tree<'_>, diags: &mut Vec<Diagnostic>) {
    let n = tree.blueprints.len();
    let succ: Vec<Vec<usize>> = tree
        .blueprints
        .iter()
        .map(|b| b.nodes.iter().filter_map(|n| n.uses).collect())
        .collect();
    for comp in sccs(n, &succ) {
        let cyclic = comp.len() > 1 || comp.first().is_some_and(|&c| succ[c].contains(&c));
        if !cyclic {
            continue;
        }
        let bounded = comp.iter().any(|&c| {
            tree.blueprints[c]
                .bp
                .recursion
                .as_ref()
                .is_some_and(|r| r.max_depth.is_some())
        });
        if bounded {
            continue;
        }
        let names: Vec<&str> = comp.iter().map(|&c| tree.blueprints[c].bp.name.as_str()).collect();
        let &first = comp.first().unwrap_or(&0);
        let at = tree.blueprints[first]
            .nodes
            .iter()
            .find(|n| n.uses.is_some_and(|u| comp.contains(&u)))
            .map_or_else(|| tree.blueprints[first].path.clone(), |n| n.path.key("uses"));
        diags.push(
            Diagnostic::error(
                "blueprint::recursion",
                at,
                format!(
                    "blueprints use each other recursively ({}) without a bound",
                    names.join(" → ")
                ),
            )
            .hint("add `recursion { max_depth N }` to one of them"),
        );
    }
}

/// Output types, computed lazily (routers and subgraphs take theirs from
/// what they read).
struct TypeEnv<'t, 'a> {
    tree: &'t Tree<'a>,
}

impl<'t, 'a> TypeEnv<'t, 'a> {
    fn new(tree: &'t Tree<'a>) -> Self {
        Self { tree }
    }

    fn node(&self, b: usize, n: usize) -> ValueType {
        self.node_guarded(b, n, 0)
    }

    fn node_guarded(&self, b: usize, n: usize, depth: usize) -> ValueType {
        if depth > 64 {
            return ValueType::Json;
        }
        let Some(info) = self.tree.blueprints.get(b).and_then(|bp| bp.nodes.get(n)) else {
            return ValueType::Json;
        };
        match info.node {
            Node::Agent(a) => a.output.as_ref().map_or(ValueType::Text, ExpectedOutput::value_type),
            Node::Map(_) => ValueType::List,
            Node::Reduce(r) => r.agent.as_ref().map_or(ValueType::List, |a| {
                a.output.as_ref().map_or(ValueType::Text, ExpectedOutput::value_type)
            }),
            Node::Router(r) => Ref::parse_source(&r.on).map_or(ValueType::Json, |r| self.reference(b, &r, depth + 1).0),
            Node::Join(_) => ValueType::Object,
            Node::Subgraph(_) => info
                .uses
                .and_then(|u| self.tree.blueprints.get(u).map(|x| (u, x)))
                .and_then(|(u, x)| x.output.map(|o| self.node_guarded(u, o, depth + 1)))
                .unwrap_or(ValueType::Json),
        }
    }

    fn schema(&self, b: usize, n: usize) -> Option<&'a serde_json::Map<String, serde_json::Value>> {
        let info = self.tree.blueprints.get(b)?.nodes.get(n)?;
        match info.node {
            Node::Agent(a) => match &a.output {
                Some(ExpectedOutput::Schema(s)) => Some(s),
                _ => None,
            },
            Node::Reduce(r) => match r.agent.as_ref().and_then(|a| a.output.as_ref()) {
                Some(ExpectedOutput::Schema(s)) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    /// The type of a reference, and an error message when its path cannot
    /// exist in the producer's output.
    fn reference(&self, b: usize, r: &Ref, depth: usize) -> (ValueType, Option<String>) {
        let Some(info) = self.tree.blueprints.get(b) else {
            return (ValueType::Json, None);
        };
        let (root_ty, schema, what) = match &r.root {
            RefRoot::Input(name) => {
                let ty = info
                    .bp
                    .inputs
                    .iter()
                    .find(|i| &i.name == name)
                    .map_or(ValueType::Json, |i| i.ty);
                (ty, None, format!("input `{name}`"))
            }
            RefRoot::Node(name) => match info.by_name.get(name.as_str()) {
                Some(&n) => (self.node_guarded(b, n, depth), self.schema(b, n), format!("`{name}`")),
                None => return (ValueType::Json, None),
            },
            RefRoot::Index => (ValueType::Text, None, "index".into()),
            RefRoot::Items => (ValueType::List, None, "items".into()),
            RefRoot::Item => (ValueType::Json, None, "item".into()),
        };
        if r.path.is_empty() {
            return (root_ty, None);
        }
        if root_ty == ValueType::Text {
            return (
                ValueType::Json,
                Some(format!(
                    "{what} produces text, so `{r}` has no field `{}`",
                    r.path.join(".")
                )),
            );
        }
        let Some(mut s) = schema else {
            return (ValueType::Json, None);
        };
        for seg in &r.path {
            let next = match s.get("type").and_then(serde_json::Value::as_str) {
                Some("object") => match s.get("properties").and_then(serde_json::Value::as_object) {
                    Some(props) => match props.get(seg) {
                        Some(p) => p.as_object(),
                        None => {
                            return (
                                ValueType::Json,
                                Some(format!("{what}'s output schema has no property `{seg}` (in `{r}`)")),
                            );
                        }
                    },
                    None => None,
                },
                Some("array") => s.get("items").and_then(serde_json::Value::as_object),
                Some(t) => {
                    return (
                        ValueType::Json,
                        Some(format!("{what}'s output is a {t}; `{r}` reads a field of it")),
                    );
                }
                None => None,
            };
            match next {
                Some(n) => s = n,
                None => return (ValueType::Json, None),
            }
        }
        (schema_type(s), None)
    }
}

fn compatible(actual: ValueType, need: ValueType) -> bool {
    actual == need || actual == ValueType::Json || need == ValueType::Json
}

fn type_hint(r: &Ref, need: ValueType) -> String {
    match (r.node_name(), need) {
        (Some(n), ValueType::List) => {
            format!("give `{n}` `output schema {{\"type\": \"array\"}}`, or read a list-valued field of it")
        }
        (Some(n), ValueType::Object) => format!("give `{n}` `output schema {{\"type\": \"object\", …}}`"),
        (None, _) => format!("declare the input with type `{}`", need.keyword()),
        (Some(n), _) => format!("change what `{n}` returns, or what reads it"),
    }
}

fn check_types(tree: &Tree<'_>, b: usize, types: &TypeEnv<'_, '_>, diags: &mut Vec<Diagnostic>) {
    let Some(info) = tree.blueprints.get(b) else { return };
    for n in &info.nodes {
        for u in &n.refs {
            let (ty, err) = types.reference(b, &u.r, 0);
            if let Some(msg) = err {
                diags.push(
                    Diagnostic::error("blueprint::type", u.at.clone(), msg)
                        .hint("give the producer an output schema with that property, or read its whole value"),
                );
                continue;
            }
            if let Need::Type(need) = u.need
                && !compatible(ty, need)
            {
                diags.push(
                    Diagnostic::error(
                        "blueprint::type",
                        u.at.clone(),
                        format!("`{}` is {}, but a {} is needed here", u.r, ty.keyword(), need.keyword()),
                    )
                    .hint(type_hint(&u.r, need)),
                );
            }
        }
        if let Node::Map(m) = n.node
            && m.concurrency == Some(0)
        {
            diags.push(
                Diagnostic::error(
                    "blueprint::map",
                    n.path.key("concurrency"),
                    "a concurrency of 0 runs nothing",
                )
                .hint("use at least 1, or leave it out"),
            );
        }
        // Subgraph inputs: every declared input given, no unknown one, types agree.
        let Some(u) = n.uses.and_then(|u| tree.blueprints.get(u)) else {
            continue;
        };
        let sub_at = match n.node {
            Node::Map(_) => n.path.key("each"),
            _ => n.path.clone(),
        };
        for input in &u.bp.inputs {
            match n.with.get(&input.name) {
                None if !matches!(n.node, Node::Map(_)) || input.name != "item" => diags.push(
                    Diagnostic::error(
                        "blueprint::subgraph-input",
                        sub_at.key("with"),
                        format!(
                            "subgraph `{}` does not give input `{}` of `{}`",
                            n.node.name(),
                            input.name,
                            u.bp.name
                        ),
                    )
                    .hint(format!("add `with {} = \"…\"`", input.name)),
                ),
                None => {}
                Some(t) => {
                    let ty = match t.parts.as_slice() {
                        [TemplatePart::Ref(r, _)] => types.reference(b, r, 0).0,
                        _ => ValueType::Text,
                    };
                    if !compatible(ty, input.ty) {
                        diags.push(
                            Diagnostic::error(
                                "blueprint::type",
                                sub_at.key("with").key(input.name.clone()),
                                format!(
                                    "input `{}` of `{}` is {}, but it is given {}",
                                    input.name,
                                    u.bp.name,
                                    input.ty.keyword(),
                                    ty.keyword()
                                ),
                            )
                            .hint("pass a single placeholder of the right type, e.g. `{{deps.planner}}`"),
                        );
                    }
                }
            }
        }
        for k in n.with.keys() {
            if !u.bp.inputs.iter().any(|i| &i.name == k) {
                diags.push(
                    Diagnostic::error(
                        "blueprint::subgraph-input",
                        sub_at.key("with").key(k.clone()),
                        format!("`{}` has no input `{k}`", u.bp.name),
                    )
                    .hint("declare it in the nested blueprint with `input NAME`, or remove it"),
                );
            }
        }
    }
}

fn cycles(tree: &Tree<'_>, b: usize, diags: &mut Vec<Diagnostic>) -> Flow {
    let mut flow = Flow::default();
    let Some(info) = tree.blueprints.get(b) else {
        return flow;
    };
    let n = info.nodes.len();
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (v, node) in info.nodes.iter().enumerate() {
        for d in &node.deps {
            if let Some(s) = succ.get_mut(d.from) {
                s.push(v);
            }
        }
    }
    for comp in sccs(n, &succ) {
        let cyclic = comp.len() > 1 || comp.first().is_some_and(|&c| succ[c].contains(&c));
        if !cyclic {
            continue;
        }
        let members: HashSet<usize> = comp.iter().copied().collect();
        let names = || {
            comp.iter()
                .map(|&c| info.nodes[c].node.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let first_at = |c: usize| info.nodes[c].path.key("name");
        // Back routes: router → target inside the cycle.
        let mut back_routes: Vec<(usize, usize)> = Vec::new();
        for &t in &comp {
            for d in &info.nodes[t].deps {
                if d.kind == EdgeKind::Route && members.contains(&d.from) {
                    back_routes.push((d.from, t));
                }
            }
        }
        let &c0 = comp.first().unwrap_or(&0);
        if back_routes.is_empty() {
            diags.push(
                Diagnostic::error(
                    "blueprint::cycle",
                    first_at(c0),
                    format!("dependency cycle among {}", names()),
                )
                .hint("break the cycle, or close it through a router route with `recursion { max_iterations N }`"),
            );
            continue;
        }
        let bound = info.bp.recursion.as_ref().and_then(|r| r.max_iterations);
        if bound.is_none() {
            let (router, _) = back_routes[0];
            diags.push(
                Diagnostic::error(
                    "blueprint::unbounded-loop",
                    first_at(router),
                    format!(
                        "router `{}` loops back ({}) without a bound",
                        info.nodes[router].node.name(),
                        names()
                    ),
                )
                .hint("add `recursion { max_iterations 3 }` to the blueprint"),
            );
            continue;
        }
        let entries: HashSet<usize> = back_routes.iter().map(|&(_, t)| t).collect();
        for &e in &entries {
            for d in &info.nodes[e].deps {
                if members.contains(&d.from) {
                    flow.back.insert((d.from, e));
                }
            }
        }
        // What remains of the cycle must be acyclic.
        let sub: Vec<Vec<usize>> = (0..n)
            .map(|v| {
                if !members.contains(&v) {
                    return Vec::new();
                }
                succ[v]
                    .iter()
                    .copied()
                    .filter(|w| members.contains(w) && !flow.back.contains(&(v, *w)))
                    .collect()
            })
            .collect();
        if sccs(n, &sub)
            .iter()
            .any(|c| c.len() > 1 || c.first().is_some_and(|&x| sub[x].contains(&x)))
        {
            diags.push(
                Diagnostic::error(
                    "blueprint::cycle",
                    first_at(c0),
                    format!(
                        "the cycle among {} does not pass through the router's route back",
                        names()
                    ),
                )
                .hint("only a router may send the flow back to an earlier node"),
            );
            continue;
        }
        for (router, entry) in back_routes {
            flow.loops.push(LoopInfo {
                router,
                entry,
                members: comp.clone(),
            });
        }
    }
    flow
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::resolve;
    use crate::syntax::parse;

    fn check(src: &str) -> (Vec<Flow>, Vec<Diagnostic>) {
        let (bp, _) = parse(src).unwrap();
        let mut d = Vec::new();
        let tree = resolve(&bp, &[], &mut d);
        assert!(d.is_empty(), "resolve: {d:?}");
        let flows = validate(&tree, Some("m"), &mut d);
        (flows, d)
    }

    const LOOP: &str = r#"
        agent writer { task "Write. Feedback: {{deps.reviewer}}" }
        agent reviewer { task "Review {{deps.writer}}" }
        router gate on reviewer { when contains "APPROVED" -> publish else -> writer }
        agent publish { task "{{deps.writer}}" }"#;

    #[test]
    fn a_plain_cycle_is_rejected() {
        let (_, d) = check(r#"blueprint t { agent a { task "{{deps.b}}" } agent b { task "{{deps.a}}" } }"#);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, "blueprint::cycle");
    }

    #[test]
    fn a_router_loop_needs_a_bound_and_is_accepted_with_one() {
        let (_, d) = check(&format!("blueprint t {{ {LOOP} }}"));
        assert_eq!(
            d.iter().map(|d| d.code).collect::<Vec<_>>(),
            vec!["blueprint::unbounded-loop"]
        );
        let (flows, d) = check(&format!("blueprint t {{ recursion {{ max_iterations 3 }} {LOOP} }}"));
        assert!(d.is_empty(), "{d:?}");
        let f = &flows[0];
        assert_eq!(f.loops.len(), 1);
        assert_eq!((f.loops[0].router, f.loops[0].entry), (2, 0));
        assert!(f.back.contains(&(2, 0)) && f.back.contains(&(1, 0)));
    }

    #[test]
    fn map_over_text_is_a_type_error_naming_the_fix() {
        let (_, d) = check(r#"blueprint t { agent p { task "x" } map m over p { agent w { task "{{item}}" } } }"#);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, "blueprint::type");
        assert!(d[0].hint.as_deref().unwrap().contains("array"), "{:?}", d[0]);
        let (_, d) = check(
            r#"blueprint t { agent p { task "x" output schema {"type": "array"} }
               map m over p { agent w { task "{{item}}" } } }"#,
        );
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn field_reads_must_exist_in_the_producer_schema() {
        let (_, d) = check(
            r#"blueprint t { agent r { task "x" output schema {"type": "object", "properties": {"verdict": {"type": "string"}}} }
               agent a { task "{{deps.r.verdict}}" } agent b { task "{{deps.r.score}}" } agent c { task "x" } agent e { task "{{deps.c.x}}" } }"#,
        );
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].message.contains("score"));
        assert!(d[1].message.contains("text"));
    }

    #[test]
    fn recursive_blueprints_need_max_depth() {
        let (_, d) = check(r#"blueprint t { subgraph s uses t }"#);
        assert_eq!(d[0].code, "blueprint::recursion");
        let (_, d) = check(r#"blueprint t { recursion { max_depth 3 } subgraph s uses t }"#);
        assert!(d.is_empty());
    }

    #[test]
    fn subgraph_inputs_are_checked() {
        let (_, d) = check(
            r#"blueprint t { agent p { task "x" }
               subgraph s uses inner { with qs = "{{deps.p}}" with extra = "x" }
               blueprint inner { input qs: list input topic agent a { task "{{inputs.topic}}" } } }"#,
        );
        let codes: Vec<_> = d.iter().map(|d| d.code).collect();
        assert_eq!(
            codes,
            vec![
                "blueprint::type",
                "blueprint::subgraph-input",
                "blueprint::subgraph-input"
            ],
            "{d:?}"
        );
    }
}
