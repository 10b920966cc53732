//! Built-in example graphs of the graph runtime (`tinyagents-graph`).
//!
//! `tinyagents graph --example NAME` prints their Mermaid (or DOT) text and
//! `tinyagents run --graph-example NAME` runs them on scripted models with
//! the live run tree. Every agent in them answers from the echo model
//! ([`crate::echo`]), except the reviewer of `review_loop`, which is
//! scripted to ask for one revision and then approve, so the router loops
//! once.
//!
//! * `review_loop`: a writer sub-agent node, a reviewer sub-agent node and
//!   a router that sends the draft back or on to `publish`.
//! * `research_fanout`: a planner node fans out one researcher sub-agent
//!   task per question with `Send`; a writer sub-agent joins the findings.
//! * `report`: a research subgraph and a writer sub-agent run in parallel,
//!   a join waits for both, a reviewer node may call the whole graph again
//!   (a self-recursive subgraph node; the scripted run does not take it).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tinyagents_core::ModelResponse;
use tinyagents_graph::{
    CompileError, CompiledGraph, END, GraphBuilder, NodeContext, NodeError, NodeInput, Reducer, START, Send,
    SubAgentNode, SubgraphNode, Update,
};
use tinyagents_harness::Agent;
use tinyagents_providers::ScriptedModel;

use crate::echo::{echo_model, echo_reply};

/// Names of the built-in example graphs.
pub const NAMES: &[&str] = &["review_loop", "research_fanout", "report"];

/// A built example: the graph and the input it runs on.
#[derive(Debug, Clone)]
pub struct Example {
    /// The compiled graph.
    pub graph: CompiledGraph,
    /// The initial state update.
    pub input: Value,
    /// The channel holding the result.
    pub output: &'static str,
}

/// Builds the example `name`, or `None` if there is none by that name.
pub fn build(name: &str) -> Option<Result<Example, CompileError>> {
    match name {
        "review_loop" => Some(review_loop()),
        "research_fanout" => Some(research_fanout()),
        "report" => Some(report()),
        _ => None,
    }
}

/// `tinyagents graph --example NAME [--dot]`.
pub fn print(name: &str, dot: bool) -> ExitCode {
    match build(name) {
        Some(Ok(example)) => {
            let text = if dot {
                tinyagents_graph::to_dot(&example.graph)
            } else {
                tinyagents_graph::to_mermaid(&example.graph)
            };
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(Err(e)) => {
            eprintln!("error: example graph `{name}` does not compile: {e}");
            ExitCode::from(1)
        }
        None => {
            eprintln!("error: no example graph `{name}` (examples: {})", NAMES.join(", "));
            ExitCode::from(2)
        }
    }
}

fn agent(name: &str, role: &str) -> Agent {
    Agent::builder(name).system(role).model(echo_model(name)).build()
}

fn state_str(input: &NodeInput, channel: &str) -> String {
    match input.to_value().get(channel) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn review_loop() -> Result<Example, CompileError> {
    let writer = SubAgentNode::new(agent("writer", "You write and revise drafts."))
        .input(|input| {
            Ok(format!(
                "Write a draft for: {}. Reviewer comments (empty the first time): {}",
                state_str(input, "brief"),
                state_str(input, "verdict")
            ))
        })
        .output(|out, _| Ok(Update::new().set("draft", &*out.text)));
    // The reviewer asks for one revision, then approves.
    let calls = Arc::new(AtomicUsize::new(0));
    let reviewer_model = ScriptedModel::from_fn(move |req| {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        let echoed = echo_reply("reviewer", req);
        let verdict = if n == 0 {
            "revise: [scripted] add a source"
        } else {
            "approve"
        };
        Ok(ModelResponse::text(verdict).with_usage(echoed.usage))
    })
    .with_id("scripted-echo");
    let reviewer = Agent::builder("reviewer")
        .system("You review drafts strictly.")
        .model(reviewer_model)
        .build();
    let review = SubAgentNode::new(reviewer)
        .input(|input| Ok(format!("Review this draft: {}", state_str(input, "draft"))))
        .output(|out, _| Ok(Update::new().set("verdict", &*out.text)));
    let graph = GraphBuilder::new("review_loop")
        .channel("brief", Reducer::LastValue)
        .channel("draft", Reducer::LastValue)
        .channel("verdict", Reducer::LastValue)
        .channel("published", Reducer::LastValue)
        .subagent_node("write", writer)
        .subagent_node("review", review)
        .node("publish", |s: Value, _: NodeContext| async move {
            let draft = s.get("draft").and_then(Value::as_str).unwrap_or_default().to_string();
            Ok::<_, NodeError>(Update::new().set("published", format!("published: {draft}")))
        })
        .edge(START, "write")
        .edge("write", "review")
        .conditional_edge("review", &["publish", "write"], |s: Value| {
            let approved = s
                .get("verdict")
                .and_then(Value::as_str)
                .is_some_and(|v| v.starts_with("approve"));
            if approved { "publish" } else { "write" }
        })
        .edge("publish", END)
        .compile()?;
    Ok(Example {
        graph,
        input: json!({"brief": "a short note on hermit crabs"}),
        output: "published",
    })
}

fn research_fanout() -> Result<Example, CompileError> {
    let researcher = SubAgentNode::new(agent("researcher", "You answer one research question."))
        .output(|out, _| Ok(Update::new().set("findings", vec![&*out.text])));
    let writer = SubAgentNode::new(agent("writer", "You write short reports."))
        .input(|input| {
            Ok(format!(
                "Write a report on {} from these findings: {}",
                state_str(input, "topic"),
                state_str(input, "findings")
            ))
        })
        .output(|out, _| Ok(Update::new().set("report", &*out.text)));
    let graph = GraphBuilder::new("research_fanout")
        .channel("topic", Reducer::LastValue)
        .channel("questions", Reducer::LastValue)
        .channel("findings", Reducer::Append)
        .channel("report", Reducer::LastValue)
        .node("plan", |s: Value, _: NodeContext| async move {
            let topic = s.get("topic").and_then(Value::as_str).unwrap_or_default().to_string();
            let questions: Vec<String> = ["habitat", "diet", "shell swaps"]
                .iter()
                .map(|aspect| format!("What about the {aspect} of {topic}?"))
                .collect();
            Ok::<_, NodeError>(Update::new().set("questions", questions))
        })
        .subagent_node("research", researcher)
        .subagent_node("write", writer)
        .edge(START, "plan")
        .conditional_edge("plan", &["research"], |s: Value| {
            s.get("questions")
                .and_then(Value::as_array)
                .map(|qs| qs.iter().map(|q| Send::new("research", q)).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .edge("research", "write")
        .edge("write", END)
        .compile()?;
    Ok(Example {
        graph,
        input: json!({"topic": "hermit crabs"}),
        output: "report",
    })
}

async fn note(step: &'static str, s: Value) -> Result<Update, NodeError> {
    let topic = s.get("topic").and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(Update::new().set("notes", vec![format!("[scripted] {step}: {topic}")]))
}

fn report() -> Result<Example, CompileError> {
    let research = GraphBuilder::new("research")
        .channel("topic", Reducer::LastValue)
        .channel("notes", Reducer::Append)
        .node("search", |s: Value, _: NodeContext| note("search", s))
        .node("read", |s: Value, _: NodeContext| note("read", s))
        .edge(START, "search")
        .edge("search", "read")
        .edge("read", END)
        .compile()?;
    let writer = SubAgentNode::new(agent("writer", "You write short reports."))
        .input(|input| Ok(format!("Write a report on {}", state_str(input, "topic"))))
        .output(|out, _| Ok(Update::new().set("draft", &*out.text)));
    let graph = GraphBuilder::new("report")
        .channel("topic", Reducer::LastValue)
        .channel("notes", Reducer::Append)
        .channel("draft", Reducer::LastValue)
        .channel("reviewed", Reducer::LastValue)
        .node("plan", |_: Value, _: NodeContext| async {
            Ok::<_, NodeError>(Update::new())
        })
        .subgraph_node("research", SubgraphNode::new(research))
        .subagent_node("write", writer)
        .node("review", |s: Value, _: NodeContext| async move {
            let notes = s.get("notes").and_then(Value::as_array).map_or(0, Vec::len);
            let draft = s.get("draft").and_then(Value::as_str).unwrap_or_default().to_string();
            Ok::<_, NodeError>(Update::new().set("reviewed", format!("{draft} (checked against {notes} notes)")))
        })
        .subgraph_node("revise", SubgraphNode::this_graph())
        .edge(START, "plan")
        .edge("plan", "research")
        .edge("plan", "write")
        .join(&["research", "write"], "review")
        .conditional_edge("review", &["revise", END], |_: Value| END)
        .compile()?;
    Ok(Example {
        graph,
        input: json!({"topic": "hermit crabs"}),
        output: "reviewed",
    })
}
