//! Export: Mermaid and Graphviz DOT text of a compiled graph, offline.
//!
//! Nodes are drawn with their kind (function, sub-agent, subgraph), static
//! edges as solid arrows, router targets as dashed arrows, joins as arrows
//! labelled `join`. A subgraph node is drawn as a cluster containing the
//! subgraph, recursively; a graph that is already being drawn further out
//! (self-recursion, mutual recursion) is drawn as a reference instead, so
//! the output is finite.
//!
//! The `tinyagents graph FILE` command prints these for a graph defined by
//! an example: it calls [`to_mermaid`] or [`to_dot`] on the compiled graph.

use std::fmt::Write;

use crate::builder::{CompiledGraph, GraphInner, GraphRef, NodeKind};
use crate::node::{END, START};

fn ident(prefix: &str, name: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + name.len() + 1);
    s.push_str(prefix);
    for c in name.chars() {
        s.push(if c.is_ascii_alphanumeric() { c } else { '_' });
    }
    s
}

fn escape(s: &str) -> String {
    s.replace('"', "'")
}

struct Drawer {
    out: String,
    path: Vec<String>,
    mermaid: bool,
}

impl Drawer {
    fn node_id(&self, prefix: &str, name: &str) -> String {
        match name {
            START => ident(prefix, "__start__"),
            END => ident(prefix, "__end__"),
            n => ident(prefix, &format!("n_{n}")),
        }
    }

    fn resolve(g: &GraphRef, current: &GraphInner) -> Option<CompiledGraph> {
        match g {
            GraphRef::Graph(g) => Some(g.clone()),
            GraphRef::Slot(s) => s.get().cloned(),
            GraphRef::SelfRef => None.or_else(|| {
                let _ = current;
                None
            }),
        }
    }

    fn graph(&mut self, g: &GraphInner, prefix: &str, indent: usize) {
        let pad = " ".repeat(indent);
        self.path.push(g.id.to_string());
        let start = self.node_id(prefix, START);
        let end = self.node_id(prefix, END);
        if self.mermaid {
            let _ = writeln!(self.out, "{pad}{start}([START])");
            let _ = writeln!(self.out, "{pad}{end}([END])");
        } else {
            let _ = writeln!(self.out, "{pad}{start} [label=\"START\", shape=oval];");
            let _ = writeln!(self.out, "{pad}{end} [label=\"END\", shape=oval];");
        }
        for n in &g.nodes {
            let id = self.node_id(prefix, n.name.as_str());
            let name = escape(n.name.as_str());
            match &n.kind {
                NodeKind::Function => {
                    if self.mermaid {
                        let _ = writeln!(self.out, "{pad}{id}[\"{name}\"]");
                    } else {
                        let _ = writeln!(self.out, "{pad}{id} [label=\"{name}\", shape=box];");
                    }
                }
                NodeKind::SubAgent { agent } => {
                    let agent = escape(agent);
                    if self.mermaid {
                        let _ = writeln!(self.out, "{pad}{id}[[\"{name} (sub-agent: {agent})\"]]");
                    } else {
                        let _ = writeln!(
                            self.out,
                            "{pad}{id} [label=\"{name}\\nsub-agent: {agent}\", shape=box, style=rounded];"
                        );
                    }
                }
                NodeKind::Subgraph(r) => {
                    let child = match r {
                        GraphRef::SelfRef => None,
                        other => Self::resolve(other, g),
                    };
                    let child_id = match (r, &child) {
                        (GraphRef::SelfRef, _) => g.id.to_string(),
                        (_, Some(c)) => c.0.id.to_string(),
                        (_, None) => "unset slot".to_string(),
                    };
                    let recursive = matches!(r, GraphRef::SelfRef) || self.path.contains(&child_id);
                    match child {
                        Some(c) if !recursive => {
                            let inner = format!("{id}__");
                            if self.mermaid {
                                let _ = writeln!(
                                    self.out,
                                    "{pad}subgraph {id}[\"{name} (subgraph: {})\"]",
                                    escape(&child_id)
                                );
                                let _ = writeln!(self.out, "{pad}  direction TB");
                            } else {
                                let _ = writeln!(self.out, "{pad}subgraph cluster_{id} {{");
                                let _ =
                                    writeln!(self.out, "{pad}  label=\"{name} (subgraph: {})\";", escape(&child_id));
                                let _ = writeln!(self.out, "{pad}  {id} [label=\"{name}\", shape=point];");
                            }
                            self.graph(&c.0, &inner, indent + 2);
                            if self.mermaid {
                                let _ = writeln!(self.out, "{pad}end");
                            } else {
                                let _ = writeln!(self.out, "{pad}}}");
                            }
                        }
                        _ => {
                            let label = format!("{name} (calls graph: {})", escape(&child_id));
                            if self.mermaid {
                                let _ = writeln!(self.out, "{pad}{id}[/\"{label}\"/]");
                            } else {
                                let _ = writeln!(self.out, "{pad}{id} [label=\"{label}\", shape=parallelogram];");
                            }
                        }
                    }
                }
            }
        }
        let arrow = |out: &mut String, from: &str, to: &str, style: &str| {
            if self.mermaid {
                let a = match style {
                    "dashed" => " -.-> ".to_string(),
                    "join" => " -- join --> ".to_string(),
                    _ => " --> ".to_string(),
                };
                let _ = writeln!(out, "{pad}{from}{a}{to}");
            } else {
                let attrs = match style {
                    "dashed" => " [style=dashed]",
                    "join" => " [label=\"join\"]",
                    _ => "",
                };
                let _ = writeln!(out, "{pad}{from} -> {to}{attrs};");
            }
        };
        let mut sources: Vec<&str> = std::iter::once(START)
            .chain(g.nodes.iter().map(|n| n.name.as_str()))
            .collect();
        sources.dedup();
        let mut out = std::mem::take(&mut self.out);
        for src in &sources {
            let from = self.node_id(prefix, src);
            if let Some(targets) = g.edges.get(*src) {
                for t in targets {
                    arrow(&mut out, &from, &self.node_id(prefix, t), "solid");
                }
            }
            if let Some(r) = g.routers.get(*src) {
                for t in &r.targets {
                    arrow(&mut out, &from, &self.node_id(prefix, t), "dashed");
                }
            }
        }
        for j in &g.joins {
            for s in &j.sources {
                arrow(
                    &mut out,
                    &self.node_id(prefix, s),
                    &self.node_id(prefix, &j.target),
                    "join",
                );
            }
        }
        self.out = out;
        self.path.pop();
    }
}

/// Mermaid flowchart text of `graph`, subgraphs included.
///
/// ```
/// use tinyagents_graph::{GraphBuilder, NodeContext, NodeError, Update, START, END, to_mermaid};
/// let g = GraphBuilder::new("demo")
///     .channel("x", Default::default())
///     .node("a", |_: serde_json::Value, _: NodeContext| async { Ok::<_, NodeError>(Update::new()) })
///     .edge(START, "a")
///     .edge("a", END)
///     .compile()
///     .unwrap();
/// let text = to_mermaid(&g);
/// assert!(text.starts_with("flowchart TD"));
/// assert!(text.contains("__start__ --> n_a"));
/// ```
pub fn to_mermaid(graph: &CompiledGraph) -> String {
    let mut d = Drawer {
        out: String::from("flowchart TD\n"),
        path: Vec::new(),
        mermaid: true,
    };
    d.graph(&graph.0, "", 2);
    d.out
}

/// Graphviz DOT text of `graph`, subgraphs as clusters.
pub fn to_dot(graph: &CompiledGraph) -> String {
    let mut d = Drawer {
        out: format!("digraph \"{}\" {{\n  rankdir=TB;\n", escape(graph.id().as_str())),
        path: Vec::new(),
        mermaid: false,
    };
    d.graph(&graph.0, "", 2);
    d.out.push_str("}\n");
    d.out
}

impl CompiledGraph {
    /// Mermaid text of the graph (see [`to_mermaid`]).
    pub fn to_mermaid(&self) -> String {
        to_mermaid(self)
    }
    /// Graphviz DOT text of the graph (see [`to_dot`]).
    pub fn to_dot(&self) -> String {
        to_dot(self)
    }
}
