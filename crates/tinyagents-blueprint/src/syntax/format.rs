//! The formatter: prints a [`Blueprint`] as canonical `.ta` text.
//!
//! Canonical means one rendering per blueprint: fields in a fixed order,
//! two-space indentation, unset fields left out. Together with the parser
//! this is lossless: `parse(format(bp)) == bp` for every blueprint, which
//! is what makes JSON → text → JSON the identity.

use std::fmt::Write;

use crate::ir::{
    AgentSpec, Blueprint, Condition, ExpectedOutput, JoinSpec, MapSpec, Node, ReduceSpec, RouterSpec, SubgraphSpec,
};

/// Prints `bp` as canonical `.ta` text.
pub fn format_blueprint(bp: &Blueprint) -> String {
    let mut f = Formatter { out: String::new() };
    f.blueprint(bp, 0);
    f.out
}

struct Formatter {
    out: String,
}

/// True when `s` lexes as one word (so it can be written bare).
fn is_word(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        && !s.ends_with('-')
}

fn name(s: &str) -> String {
    if is_word(s) { s.to_string() } else { quote(s) }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A string literal: `"""` raw form for multi-line text when it is safe.
fn text(s: &str) -> String {
    let raw_ok = s.contains('\n') && !s.contains("\"\"\"") && !s.ends_with('"') && !s.contains('\r');
    if raw_ok { format!("\"\"\"\n{s}\"\"\"") } else { quote(s) }
}

fn list(items: &[String]) -> String {
    let names: Vec<String> = items.iter().map(|s| name(s)).collect();
    format!("[{}]", names.join(", "))
}

fn json(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

impl Formatter {
    fn line(&mut self, indent: usize, s: &str) {
        for _ in 0..indent {
            self.out.push_str("  ");
        }
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn opt_text(&mut self, indent: usize, key: &str, v: Option<&String>) {
        if let Some(v) = v {
            self.line(indent, &format!("{key} {}", text(v)));
        }
    }

    fn blueprint(&mut self, bp: &Blueprint, indent: usize) {
        self.line(indent, &format!("blueprint {} {{", name(&bp.name)));
        let i = indent + 1;
        self.opt_text(i, "description", bp.description.as_ref());
        if let Some(m) = &bp.model {
            self.line(i, &format!("model {}", quote(m)));
        }
        for input in &bp.inputs {
            let mut s = format!("input {}", name(&input.name));
            if !input.ty.is_text() {
                let _ = write!(s, ": {}", input.ty.keyword());
            }
            if let Some(d) = &input.description {
                let _ = write!(s, " {}", text(d));
            }
            self.line(i, &s);
        }
        if let Some(r) = &bp.recursion {
            let mut s = String::from("recursion {");
            if let Some(n) = r.max_iterations {
                let _ = write!(s, " max_iterations {n}");
            }
            if let Some(n) = r.max_depth {
                let _ = write!(s, " max_depth {n}");
            }
            s.push_str(" }");
            self.line(i, &s);
        }
        if let Some(o) = &bp.output {
            self.line(i, &format!("output {}", name(o)));
        }
        for n in &bp.nodes {
            self.out.push('\n');
            self.node(n, i);
        }
        for child in &bp.blueprints {
            self.out.push('\n');
            self.blueprint(child, i);
        }
        self.line(indent, "}");
    }

    fn node(&mut self, n: &Node, indent: usize) {
        match n {
            Node::Agent(a) => self.agent(a, indent),
            Node::Map(m) => self.map(m, indent),
            Node::Reduce(r) => self.reduce(r, indent),
            Node::Router(r) => self.router(r, indent),
            Node::Join(j) => self.join(j, indent),
            Node::Subgraph(s) => self.subgraph(s, indent),
        }
    }

    fn agent(&mut self, a: &AgentSpec, indent: usize) {
        self.line(indent, &format!("agent {} {{", name(&a.name)));
        let i = indent + 1;
        self.opt_text(i, "role", a.role.as_ref());
        self.line(i, &format!("task {}", text(&a.task)));
        if let Some(m) = &a.model {
            self.line(i, &format!("model {}", quote(m)));
        }
        if !a.tools.is_empty() {
            self.line(i, &format!("tools {}", list(&a.tools)));
        }
        match &a.output {
            Some(ExpectedOutput::Description(d)) => self.line(i, &format!("output {}", text(d))),
            Some(ExpectedOutput::Schema(s)) => {
                self.line(
                    i,
                    &format!("output schema {}", json(&serde_json::Value::Object(s.clone()))),
                );
            }
            None => {}
        }
        if !a.after.is_empty() {
            self.line(i, &format!("after {}", list(&a.after)));
        }
        if let Some(b) = &a.budget {
            let mut s = String::from("budget {");
            if let Some(v) = b.tokens {
                let _ = write!(s, " tokens {v}");
            }
            if let Some(v) = b.cost_usd {
                let _ = write!(s, " cost_usd {v}");
            }
            if let Some(v) = b.turns {
                let _ = write!(s, " turns {v}");
            }
            if let Some(v) = b.depth {
                let _ = write!(s, " depth {v}");
            }
            if let Some(v) = b.descendants {
                let _ = write!(s, " descendants {v}");
            }
            if let Some(v) = b.timeout_ms {
                let _ = write!(s, " timeout_ms {v}");
            }
            s.push_str(" }");
            self.line(i, &s);
        }
        if let Some(e) = &a.estimate {
            let mut s = String::from("estimate {");
            if let Some(v) = e.input_tokens {
                let _ = write!(s, " input_tokens {v}");
            }
            if let Some(v) = e.output_tokens {
                let _ = write!(s, " output_tokens {v}");
            }
            if let Some(v) = e.turns {
                let _ = write!(s, " turns {v}");
            }
            s.push_str(" }");
            self.line(i, &s);
        }
        self.opt_text(i, "rationale", a.rationale.as_ref());
        self.line(indent, "}");
    }

    fn map(&mut self, m: &MapSpec, indent: usize) {
        self.line(indent, &format!("map {} over {} {{", name(&m.name), name(&m.over)));
        let i = indent + 1;
        if let Some(c) = m.concurrency {
            self.line(i, &format!("concurrency {c}"));
        }
        if let Some(c) = m.expected_items {
            self.line(i, &format!("expected_items {c}"));
        }
        self.opt_text(i, "rationale", m.rationale.as_ref());
        self.node(&m.each, i);
        self.line(indent, "}");
    }

    fn reduce(&mut self, r: &ReduceSpec, indent: usize) {
        let head = format!("reduce {} from {}", name(&r.name), name(&r.from));
        if r.agent.is_none() && r.rationale.is_none() {
            self.line(indent, &head);
            return;
        }
        self.line(indent, &format!("{head} {{"));
        self.opt_text(indent + 1, "rationale", r.rationale.as_ref());
        if let Some(a) = &r.agent {
            self.agent(a, indent + 1);
        }
        self.line(indent, "}");
    }

    fn router(&mut self, r: &RouterSpec, indent: usize) {
        self.line(indent, &format!("router {} on {} {{", name(&r.name), name(&r.on)));
        let i = indent + 1;
        self.opt_text(i, "rationale", r.rationale.as_ref());
        for route in &r.routes {
            let cond = match &route.when {
                Condition::Equals(v) => format!("== {}", json(v)),
                Condition::Contains(s) => format!("contains {}", quote(s)),
                Condition::Present => "present".to_string(),
            };
            self.line(i, &format!("when {cond} -> {}", name(&route.to)));
        }
        if let Some(d) = &r.default {
            self.line(i, &format!("else -> {}", name(d)));
        }
        self.line(indent, "}");
    }

    fn join(&mut self, j: &JoinSpec, indent: usize) {
        let head = format!("join {} of {}", name(&j.name), list(&j.of));
        match &j.rationale {
            None => self.line(indent, &head),
            Some(r) => {
                self.line(indent, &format!("{head} {{"));
                self.line(indent + 1, &format!("rationale {}", text(r)));
                self.line(indent, "}");
            }
        }
    }

    fn subgraph(&mut self, s: &SubgraphSpec, indent: usize) {
        let head = format!("subgraph {} uses {}", name(&s.name), name(&s.uses));
        if s.with.is_empty() && s.rationale.is_none() {
            self.line(indent, &head);
            return;
        }
        self.line(indent, &format!("{head} {{"));
        for (k, v) in &s.with {
            self.line(indent + 1, &format!("with {} = {}", name(k), text(v)));
        }
        self.opt_text(indent + 1, "rationale", s.rationale.as_ref());
        self.line(indent, "}");
    }
}
