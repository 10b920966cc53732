//! Mermaid and DOT renderings of a plan: one box per stage, so the
//! parallel stages are visible; loop edges dashed; rationale and estimate
//! in each node's label.

use std::fmt::Write;

use super::{EdgeKind, Plan, PlanNode, PlanNodeKind};

fn label(n: &PlanNode) -> String {
    let mut s = format!("{} ({})", n.name, n.kind_name());
    if let Some(a) = n.agent() {
        let _ = write!(s, "\\nmodel: {}", a.model);
        if !a.tools.is_empty() {
            let _ = write!(s, "\\ntools: {}", a.tools.join(", "));
        }
    }
    if let PlanNodeKind::Map(m) = &n.kind {
        let _ = write!(s, "\\nover {} ×{}", m.over, m.expected_items);
    }
    if n.estimate.model_calls > 0 {
        let _ = write!(s, "\\n≈{} tok, {}", n.estimate.total_tokens(), n.estimate.cost);
    }
    if let Some(r) = &n.rationale {
        let short: String = r.chars().take(60).collect();
        let _ = write!(s, "\\nwhy: {short}");
    }
    s.replace('"', "'")
}

impl Plan {
    /// A Mermaid flowchart: one subgraph box per parallel stage.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for (i, stage) in self.stages.iter().enumerate() {
            let _ = writeln!(out, "  subgraph stage{i}[\"stage {i}\"]");
            for &id in stage {
                if let Some(n) = self.nodes.get(id) {
                    let l = label(n).replace("\\n", "<br/>");
                    let shape = match n.kind {
                        PlanNodeKind::Router { .. } => format!("{{\"{l}\"}}"),
                        PlanNodeKind::Map(_) => format!("[[\"{l}\"]]"),
                        _ => format!("[\"{l}\"]"),
                    };
                    let _ = writeln!(out, "    n{id}{shape}");
                }
            }
            out.push_str("  end\n");
        }
        for e in &self.edges {
            let arrow = match e.kind {
                EdgeKind::Data => "-->".to_string(),
                EdgeKind::Order => "-.->".to_string(),
                EdgeKind::Route => "-->|route|".to_string(),
                EdgeKind::Back => "-.->|loop|".to_string(),
            };
            let _ = writeln!(out, "  n{} {arrow} n{}", e.from, e.to);
        }
        let _ = writeln!(out, "  %% estimate: {}", self.estimate);
        out
    }

    /// A Graphviz DOT digraph: one cluster per parallel stage.
    pub fn to_dot(&self) -> String {
        let mut out = format!(
            "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box];\n",
            self.name.replace('"', "'")
        );
        for (i, stage) in self.stages.iter().enumerate() {
            let _ = writeln!(out, "  subgraph cluster_stage{i} {{\n    label=\"stage {i}\";");
            for &id in stage {
                if let Some(n) = self.nodes.get(id) {
                    let shape = match n.kind {
                        PlanNodeKind::Router { .. } => "diamond",
                        PlanNodeKind::Map(_) => "box3d",
                        PlanNodeKind::Join { .. } | PlanNodeKind::Reduce { .. } => "invhouse",
                        _ => "box",
                    };
                    let _ = writeln!(out, "    n{id} [label=\"{}\", shape={shape}];", label(n));
                }
            }
            out.push_str("  }\n");
        }
        for e in &self.edges {
            let style = match e.kind {
                EdgeKind::Data => "",
                EdgeKind::Order => " [style=dotted]",
                EdgeKind::Route => " [label=\"route\"]",
                EdgeKind::Back => " [style=dashed, label=\"loop\"]",
            };
            let _ = writeln!(out, "  n{} -> n{}{style};", e.from, e.to);
        }
        let _ = writeln!(
            out,
            "  label=\"{}\";\n}}",
            format!("estimate: {}", self.estimate).replace('"', "'")
        );
        out
    }
}
