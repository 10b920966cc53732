//! Pass 1, resolve: names, references and templates.
//!
//! Builds the [`Tree`] every later pass works on: each blueprint of the
//! nesting tree (the root first) with its nodes, their parsed templates, and
//! their incoming dependency edges. Reports duplicate and invalid names,
//! references to nodes, inputs or blueprints that do not exist (with a
//! "did you mean" hint), placeholders used out of context (`{{item}}`
//! outside a map body), and templates that do not parse.
//!
//! Nested blueprints form one library: their names are unique in the whole
//! tree, and a `subgraph` anywhere may use any of them.

use std::collections::{BTreeMap, HashMap};

use crate::diagnostic::{Diagnostic, JsonPath, did_you_mean};
use crate::ir::reference::{RefRoot, is_ident};
use crate::ir::{AgentSpec, Blueprint, Node, Ref, Template, ValueType};

/// Names a node may not have: they are template roots.
pub const RESERVED: [&str; 5] = ["inputs", "deps", "item", "index", "items"];

/// Why a node depends on another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// It reads the other's value.
    Data,
    /// It runs after the other (`after`), without reading it.
    Order,
    /// A router routes to it.
    Route,
}

/// An incoming edge of a node.
#[derive(Clone, Debug)]
pub struct DepEdge {
    /// The node depended on.
    pub from: usize,
    /// Why.
    pub kind: EdgeKind,
    /// Where the dependency is written.
    pub at: JsonPath,
}

/// What a consumer needs from a reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anything (it is rendered as text).
    Any,
    /// A value of this type.
    Type(ValueType),
}

/// One use of a reference, for the type check.
#[derive(Clone, Debug)]
pub struct RefUse {
    /// The reference.
    pub r: Ref,
    /// Where it is written.
    pub at: JsonPath,
    /// What the consumer needs.
    pub need: Need,
}

/// A node and what resolving it found.
#[derive(Debug)]
pub struct NodeInfo<'a> {
    /// The node.
    pub node: &'a Node,
    /// Its path.
    pub path: JsonPath,
    /// The agent it runs (itself, its map body or its reducer) and that agent's path.
    pub agent: Option<(&'a AgentSpec, JsonPath)>,
    /// The agent's parsed task.
    pub task: Option<Template>,
    /// The blueprint its subgraph (or map-body subgraph) uses, when it is one of the tree.
    pub uses: Option<usize>,
    /// The name its subgraph uses (a blueprint or a registered graph).
    pub uses_name: Option<&'a str>,
    /// The subgraph's parsed input templates.
    pub with: BTreeMap<String, Template>,
    /// Incoming edges.
    pub deps: Vec<DepEdge>,
    /// Reference uses, for the type check.
    pub refs: Vec<RefUse>,
}

/// A blueprint of the tree, resolved.
#[derive(Debug)]
pub struct BpInfo<'a> {
    /// The blueprint.
    pub bp: &'a Blueprint,
    /// Its path from the root.
    pub path: JsonPath,
    /// The default model in force (its own, or an enclosing blueprint's).
    pub model: Option<&'a str>,
    /// Its nodes, in order.
    pub nodes: Vec<NodeInfo<'a>>,
    /// Node index by name.
    pub by_name: HashMap<&'a str, usize>,
    /// The output node, when named and found.
    pub output: Option<usize>,
}

/// The resolved blueprint tree (root first).
#[derive(Debug)]
pub struct Tree<'a> {
    /// Every blueprint of the tree; index 0 is the root.
    pub blueprints: Vec<BpInfo<'a>>,
    /// Blueprint index by name.
    pub by_name: HashMap<&'a str, usize>,
}

/// Resolves `root`; `graphs` are names of graphs available at run time.
pub fn resolve<'a>(root: &'a Blueprint, graphs: &[String], diags: &mut Vec<Diagnostic>) -> Tree<'a> {
    // Collect the library, iteratively.
    let mut flat: Vec<(&'a Blueprint, JsonPath, Option<&'a str>)> = Vec::new();
    let mut stack = vec![(root, JsonPath::root(), None::<&'a str>)];
    while let Some((bp, path, model)) = stack.pop() {
        let model = bp.model.as_deref().or(model);
        for (i, child) in bp.blueprints.iter().enumerate().rev() {
            stack.push((child, path.key("blueprints").index(i), model));
        }
        flat.push((bp, path, model));
    }
    let mut by_name: HashMap<&'a str, usize> = HashMap::new();
    for (i, (bp, path, _)) in flat.iter().enumerate() {
        check_ident(&bp.name, "blueprint", &path.key("name"), diags);
        if by_name.insert(bp.name.as_str(), i).is_some() {
            diags.push(
                Diagnostic::error(
                    "blueprint::duplicate-name",
                    path.key("name"),
                    format!("a blueprint named `{}` is already defined", bp.name),
                )
                .hint("nested blueprints share one namespace: rename one"),
            );
        }
    }
    let names: Vec<&str> = flat.iter().map(|(b, _, _)| b.name.as_str()).collect();
    let blueprints = flat
        .iter()
        .map(|(bp, path, model)| resolve_one(bp, path.clone(), *model, &by_name, &names, graphs, diags))
        .collect();
    Tree { blueprints, by_name }
}

fn check_ident(name: &str, what: &str, at: &JsonPath, diags: &mut Vec<Diagnostic>) -> bool {
    if is_ident(name) {
        return true;
    }
    diags.push(
        Diagnostic::error(
            "blueprint::invalid-name",
            at.clone(),
            format!("{what} name `{name}` is not an identifier"),
        )
        .hint("names start with a letter or `_` and use letters, digits, `_` and `-`"),
    );
    false
}

/// Where a template or reference is written, which decides the placeholders it may use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Plain,
    MapBody,
    Reducer,
}

struct Ctx<'r, 'a> {
    by_name: &'r HashMap<&'a str, usize>,
    inputs: &'r [&'a str],
    diags: &'r mut Vec<Diagnostic>,
}

impl Ctx<'_, '_> {
    fn unknown_node(&mut self, name: &str, at: &JsonPath) {
        let mut d = Diagnostic::error(
            "blueprint::unknown-name",
            at.clone(),
            format!("no node named `{name}` in this blueprint"),
        );
        d = match did_you_mean(name, self.by_name.keys().copied()) {
            Some(s) => d.hint(format!("did you mean `{s}`?")),
            None => d.hint("reference a node defined in the same blueprint"),
        };
        self.diags.push(d);
    }

    /// Checks a reference; returns the node it reads, if any.
    fn check_ref(&mut self, r: &Ref, at: &JsonPath, scope: Scope) -> Option<usize> {
        match &r.root {
            RefRoot::Node(n) => {
                let found = self.by_name.get(n.as_str()).copied();
                if found.is_none() {
                    self.unknown_node(n, at);
                }
                found
            }
            RefRoot::Input(n) => {
                if !self.inputs.contains(&n.as_str()) {
                    let mut d = Diagnostic::error(
                        "blueprint::unknown-input",
                        at.clone(),
                        format!("the blueprint has no input `{n}`"),
                    );
                    d = match did_you_mean(n, self.inputs.iter().copied()) {
                        Some(s) => d.hint(format!("did you mean `inputs.{s}`?")),
                        None => d.hint(format!("declare it: `input {n}`")),
                    };
                    self.diags.push(d);
                }
                None
            }
            RefRoot::Item | RefRoot::Index if scope != Scope::MapBody => {
                self.diags.push(
                    Diagnostic::error(
                        "blueprint::placeholder-scope",
                        at.clone(),
                        format!("`{r}` is only defined in a map body"),
                    )
                    .hint("move the agent into a `map … over LIST { … }`"),
                );
                None
            }
            RefRoot::Items if scope != Scope::Reducer => {
                self.diags.push(
                    Diagnostic::error(
                        "blueprint::placeholder-scope",
                        at.clone(),
                        "`items` is only defined in a reducer agent",
                    )
                    .hint("use `{{deps.NODE}}` to read another node's list"),
                );
                None
            }
            _ => None,
        }
    }

    fn template(&mut self, text: &str, at: &JsonPath, scope: Scope, out: &mut NodeDraft) -> Option<Template> {
        match Template::parse(text) {
            Ok(t) => {
                for r in t.refs() {
                    if let Some(n) = self.check_ref(r, at, scope) {
                        out.dep(n, EdgeKind::Data, at);
                    }
                    out.refs.push(RefUse {
                        r: r.clone(),
                        at: at.clone(),
                        need: Need::Any,
                    });
                }
                Some(t)
            }
            Err(e) => {
                self.diags.push(
                    Diagnostic::error(
                        "blueprint::template",
                        at.clone(),
                        format!("bad template: {}", e.message),
                    )
                    .hint(e.hint),
                );
                None
            }
        }
    }

    fn source(&mut self, text: &str, at: &JsonPath, need: Need, out: &mut NodeDraft) {
        match Ref::parse_source(text) {
            Ok(r) => {
                if let Some(n) = self.check_ref(&r, at, Scope::Plain) {
                    out.dep(n, EdgeKind::Data, at);
                }
                out.refs.push(RefUse {
                    r,
                    at: at.clone(),
                    need,
                });
            }
            Err(e) => self
                .diags
                .push(Diagnostic::error("blueprint::reference", at.clone(), e.message).hint(e.hint)),
        }
    }

    fn node_name(&mut self, name: &str, at: &JsonPath) -> Option<usize> {
        let found = self.by_name.get(name).copied();
        if found.is_none() {
            self.unknown_node(name, at);
        }
        found
    }

    fn agent(&mut self, a: &AgentSpec, at: &JsonPath, scope: Scope, out: &mut NodeDraft) -> Option<Template> {
        let task = self.template(&a.task, &at.key("task"), scope, out);
        for (i, dep) in a.after.iter().enumerate() {
            let p = at.key("after").index(i);
            if let Some(n) = self.node_name(dep, &p) {
                out.dep(n, EdgeKind::Order, &p);
            }
        }
        task
    }
}

#[derive(Default)]
struct NodeDraft {
    deps: Vec<DepEdge>,
    refs: Vec<RefUse>,
}

impl NodeDraft {
    fn dep(&mut self, from: usize, kind: EdgeKind, at: &JsonPath) {
        if !self.deps.iter().any(|d| d.from == from && d.kind == kind) {
            self.deps.push(DepEdge {
                from,
                kind,
                at: at.clone(),
            });
        }
    }
}

fn resolve_one<'a>(
    bp: &'a Blueprint,
    path: JsonPath,
    model: Option<&'a str>,
    library: &HashMap<&'a str, usize>,
    library_names: &[&str],
    graphs: &[String],
    diags: &mut Vec<Diagnostic>,
) -> BpInfo<'a> {
    let mut by_name: HashMap<&'a str, usize> = HashMap::with_capacity(bp.nodes.len());
    for (i, n) in bp.nodes.iter().enumerate() {
        let at = path.key("nodes").index(i).key("name");
        let name = n.name();
        if check_ident(name, n.kind(), &at, diags) && RESERVED.contains(&name) {
            diags.push(
                Diagnostic::error(
                    "blueprint::invalid-name",
                    at.clone(),
                    format!("`{name}` is a reserved name"),
                )
                .hint("reserved: inputs, deps, item, index, items"),
            );
        }
        if by_name.insert(name, i).is_some() {
            diags.push(
                Diagnostic::error(
                    "blueprint::duplicate-name",
                    at,
                    format!("a node named `{name}` is already defined in `{}`", bp.name),
                )
                .hint("node names are unique within a blueprint"),
            );
        }
    }
    let mut seen_inputs: Vec<&'a str> = Vec::with_capacity(bp.inputs.len());
    for (i, input) in bp.inputs.iter().enumerate() {
        let at = path.key("inputs").index(i).key("name");
        check_ident(&input.name, "input", &at, diags);
        if seen_inputs.contains(&input.name.as_str()) {
            diags.push(
                Diagnostic::error(
                    "blueprint::duplicate-name",
                    at,
                    format!("input `{}` is declared twice", input.name),
                )
                .hint("keep one"),
            );
        }
        seen_inputs.push(&input.name);
    }
    let mut ctx = Ctx {
        by_name: &by_name,
        inputs: &seen_inputs,
        diags,
    };
    let mut nodes = Vec::with_capacity(bp.nodes.len());
    for (i, node) in bp.nodes.iter().enumerate() {
        let npath = path.key("nodes").index(i);
        let mut draft = NodeDraft::default();
        let mut info = NodeInfo {
            node,
            path: npath.clone(),
            agent: None,
            task: None,
            uses: None,
            uses_name: None,
            with: BTreeMap::new(),
            deps: Vec::new(),
            refs: Vec::new(),
        };
        let subgraph = |ctx: &mut Ctx<'_, 'a>,
                        info: &mut NodeInfo<'a>,
                        draft: &mut NodeDraft,
                        s: &'a crate::ir::SubgraphSpec,
                        at: &JsonPath,
                        scope: Scope| {
            info.uses_name = Some(&s.uses);
            info.uses = library.get(s.uses.as_str()).copied();
            if info.uses.is_none() && !graphs.iter().any(|g| g == &s.uses) {
                let mut d = Diagnostic::error(
                    "blueprint::unknown-blueprint",
                    at.key("uses"),
                    format!("no blueprint or graph named `{}`", s.uses),
                );
                d = match did_you_mean(&s.uses, library_names.iter().copied()) {
                    Some(n) => d.hint(format!("did you mean `{n}`?")),
                    None => d.hint("declare it as a nested `blueprint NAME { … }`, or register a graph by that name"),
                };
                ctx.diags.push(d);
            }
            for (k, v) in &s.with {
                let wat = at.key("with").key(k.clone());
                if let Some(t) = ctx.template(v, &wat, scope, draft) {
                    info.with.insert(k.clone(), t);
                }
            }
        };
        match node {
            Node::Agent(a) => {
                info.task = ctx.agent(a, &npath, Scope::Plain, &mut draft);
                info.agent = Some((a, npath.clone()));
            }
            Node::Map(m) => {
                ctx.source(&m.over, &npath.key("over"), Need::Type(ValueType::List), &mut draft);
                let body = npath.key("each");
                match m.each.as_ref() {
                    Node::Agent(a) => {
                        check_ident(&a.name, "agent", &body.key("name"), ctx.diags);
                        info.task = ctx.agent(a, &body, Scope::MapBody, &mut draft);
                        info.agent = Some((a, body));
                    }
                    Node::Subgraph(s) => {
                        check_ident(&s.name, "subgraph", &body.key("name"), ctx.diags);
                        subgraph(&mut ctx, &mut info, &mut draft, s, &body, Scope::MapBody);
                    }
                    other => ctx.diags.push(
                        Diagnostic::error(
                            "blueprint::map-body",
                            body.key("kind"),
                            format!("a map body must be an agent or a subgraph, not a {}", other.kind()),
                        )
                        .hint("put the nodes that run per item in a nested blueprint and map over a subgraph using it"),
                    ),
                }
            }
            Node::Reduce(r) => {
                ctx.source(&r.from, &npath.key("from"), Need::Type(ValueType::List), &mut draft);
                if let Some(a) = &r.agent {
                    let apath = npath.key("agent");
                    check_ident(&a.name, "agent", &apath.key("name"), ctx.diags);
                    info.task = ctx.agent(a, &apath, Scope::Reducer, &mut draft);
                    info.agent = Some((a, apath));
                }
            }
            Node::Router(r) => {
                ctx.source(&r.on, &npath.key("on"), Need::Any, &mut draft);
                if r.routes.is_empty() && r.default.is_none() {
                    ctx.diags.push(
                        Diagnostic::error(
                            "blueprint::router",
                            npath.key("routes"),
                            format!("router `{}` has no routes", r.name),
                        )
                        .hint("add `when == \"value\" -> node` or `else -> node`"),
                    );
                }
            }
            Node::Join(j) => {
                if j.of.is_empty() {
                    ctx.diags.push(
                        Diagnostic::error(
                            "blueprint::join",
                            npath.key("of"),
                            format!("join `{}` joins nothing", j.name),
                        )
                        .hint("list the nodes to join: `join all of [a, b]`"),
                    );
                }
                for (k, n) in j.of.iter().enumerate() {
                    let p = npath.key("of").index(k);
                    if let Some(idx) = ctx.node_name(n, &p) {
                        draft.dep(idx, EdgeKind::Data, &p);
                    }
                }
            }
            Node::Subgraph(s) => subgraph(&mut ctx, &mut info, &mut draft, s, &npath, Scope::Plain),
        }
        info.deps = draft.deps;
        info.refs = draft.refs;
        nodes.push(info);
    }
    // Route edges are incoming edges of the targets.
    for (i, node) in bp.nodes.iter().enumerate() {
        let Node::Router(r) = node else { continue };
        let npath = path.key("nodes").index(i);
        let targets = r
            .routes
            .iter()
            .enumerate()
            .map(|(k, route)| (route.to.as_str(), npath.key("routes").index(k).key("to")))
            .chain(r.default.as_deref().map(|d| (d, npath.key("default"))));
        for (target, at) in targets {
            if let Some(t) = ctx.node_name(target, &at)
                && let Some(info) = nodes.get_mut(t)
                && !info
                    .deps
                    .iter()
                    .any(|d: &DepEdge| d.from == i && d.kind == EdgeKind::Route)
            {
                info.deps.push(DepEdge {
                    from: i,
                    kind: EdgeKind::Route,
                    at,
                });
            }
        }
    }
    let output = bp.output.as_deref().and_then(|o| ctx.node_name(o, &path.key("output")));
    if bp.nodes.is_empty() {
        ctx.diags.push(
            Diagnostic::error(
                "blueprint::empty",
                path.key("nodes"),
                format!("blueprint `{}` has no nodes", bp.name),
            )
            .hint("add at least one agent"),
        );
    }
    BpInfo {
        bp,
        path,
        model,
        nodes,
        by_name,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;

    fn diags_of(src: &str) -> Vec<Diagnostic> {
        let (bp, _) = parse(src).unwrap();
        let mut d = Vec::new();
        let _ = resolve(&bp, &[], &mut d);
        d
    }

    #[test]
    fn template_references_become_data_edges() {
        let (bp, _) = parse(
            r#"blueprint t { input topic
                agent a { task "{{inputs.topic}}" }
                agent b { task "{{deps.a}}" after [a] }
                router r on b { when == "x" -> c }
                agent c { task "go" } }"#,
        )
        .unwrap();
        let mut d = Vec::new();
        let tree = resolve(&bp, &[], &mut d);
        assert!(d.is_empty(), "{d:?}");
        let b = &tree.blueprints[0].nodes[1];
        assert_eq!(
            b.deps.iter().map(|e| (e.from, e.kind)).collect::<Vec<_>>(),
            vec![(0, EdgeKind::Data), (0, EdgeKind::Order)]
        );
        let c = &tree.blueprints[0].nodes[3];
        assert_eq!(c.deps[0].kind, EdgeKind::Route);
    }

    #[test]
    fn unknown_names_get_did_you_mean_hints() {
        let d = diags_of(r#"blueprint t { agent researcher { task "x" } agent w { task "{{deps.reseacher}}" } }"#);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, "blueprint::unknown-name");
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `researcher`?"));
        assert_eq!(d[0].path.to_string(), "$.nodes[1].task");
    }

    #[test]
    fn duplicates_reserved_names_and_placeholder_scope_are_reported() {
        let d =
            diags_of(r#"blueprint t { agent a { task "{{item}}" } agent a { task "x" } agent items { task "x" } }"#);
        let codes: Vec<_> = d.iter().map(|d| d.code).collect();
        assert!(codes.contains(&"blueprint::placeholder-scope"), "{codes:?}");
        assert!(codes.contains(&"blueprint::duplicate-name"), "{codes:?}");
        assert!(codes.contains(&"blueprint::invalid-name"), "{codes:?}");
    }

    #[test]
    fn subgraphs_resolve_against_the_whole_library_or_registered_graphs() {
        let src = r#"blueprint t {
            subgraph s uses inner
            subgraph g uses external
            subgraph x uses innr
            blueprint inner { agent a { task "x" } } }"#;
        let (bp, _) = parse(src).unwrap();
        let mut d = Vec::new();
        let tree = resolve(&bp, &["external".to_string()], &mut d);
        assert_eq!(tree.blueprints[0].nodes[0].uses, Some(1));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `inner`?"));
    }
}
