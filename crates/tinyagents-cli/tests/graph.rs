//! The built-in graph-runtime examples, drawn (`graph --example`) and run
//! (`run --graph-example`) by the real binary.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

const EXAMPLES: &[&str] = &["review_loop", "research_fanout", "report"];

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyagents"))
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_run(name: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
    let out = run(&["run", "--json", "--no-control", "--graph-example", name]);
    assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
    let mut values: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let result = values.pop().expect("a result line");
    (values, result)
}

fn count(events: &[serde_json::Value], ty: &str, key: &str, value: &str) -> usize {
    events.iter().filter(|e| e["type"] == ty && e[key] == value).count()
}

fn tokens(usage: &serde_json::Value) -> u64 {
    usage["input_tokens"].as_u64().unwrap_or(0) + usage["output_tokens"].as_u64().unwrap_or(0)
}

#[test]
fn every_example_prints_as_mermaid_and_dot() {
    for name in EXAMPLES {
        let mermaid = run(&["graph", "--example", name]);
        assert_eq!(mermaid.status.code(), Some(0), "{name}: {}", stderr(&mermaid));
        let text = stdout(&mermaid);
        assert!(text.starts_with("flowchart"), "{text}");
        assert!(text.contains("START") && text.contains("END"), "{text}");
        let dot = stdout(&run(&["graph", "--dot", "--example", name]));
        assert!(dot.starts_with("digraph"), "{dot}");
    }
    let review = stdout(&run(&["graph", "--example", "review_loop"]));
    assert!(
        review.contains("sub-agent: writer") && review.contains("sub-agent: reviewer"),
        "{review}"
    );
    let report = stdout(&run(&["graph", "--example", "report"]));
    assert!(
        report.contains("subgraph n_research"),
        "the subgraph is drawn inside: {report}"
    );
}

#[test]
fn an_unknown_example_is_a_usage_error_listing_the_examples() {
    for args in [
        &["graph", "--example", "nope"][..],
        &["run", "--no-control", "--graph-example", "nope"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("review_loop, research_fanout, report"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn every_example_runs_with_graph_events_and_usage_rolled_up() {
    for name in EXAMPLES {
        let (events, result) = json_run(name);
        assert_eq!(result["ok"], true, "{name}: {result}");
        assert!(count(&events, "graph_started", "graph_id", name) >= 1, "{name}");
        assert!(events.iter().any(|e| e["type"] == "graph_task_completed"), "{name}");
        let calls: u64 = events
            .iter()
            .filter(|e| e["type"] == "model_call_completed")
            .map(|e| tokens(&e["usage"]))
            .sum();
        let root = events
            .iter()
            .find(|e| e["type"] == "run_completed" && e["parent_run_id"].is_null())
            .expect("the root completes");
        assert!(calls > 0);
        assert_eq!(tokens(&root["total_usage"]), calls, "{name}");
        assert_eq!(result["total_tokens"].as_u64(), Some(calls), "{name}");
    }
}

#[test]
fn the_review_loop_routes_back_once_then_publishes() {
    let (events, result) = json_run("review_loop");
    assert_eq!(count(&events, "run_started", "name", "writer"), 2);
    assert_eq!(count(&events, "run_started", "name", "reviewer"), 2);
    assert_eq!(count(&events, "graph_task_completed", "node_id", "publish"), 1);
    assert!(
        result["answer"]
            .as_str()
            .unwrap()
            .starts_with("published: [scripted] writer"),
        "{result}"
    );
}

#[test]
fn the_research_fanout_runs_one_researcher_task_per_question() {
    let (events, _) = json_run("research_fanout");
    assert_eq!(count(&events, "graph_task_started", "node_id", "research"), 3);
    assert_eq!(count(&events, "run_started", "name", "researcher"), 3);
    assert_eq!(count(&events, "run_started", "name", "writer"), 1);
}

#[test]
fn the_report_runs_its_subgraph_as_a_child_graph_run() {
    let (events, _) = json_run("report");
    let outer = events
        .iter()
        .find(|e| e["type"] == "graph_started" && e["graph_id"] == "report")
        .expect("the outer graph run");
    let inner = events
        .iter()
        .find(|e| e["type"] == "graph_started" && e["graph_id"] == "research")
        .expect("the subgraph run");
    assert_eq!(inner["parent_run_id"], outer["run_id"]);
    assert_eq!(inner["depth"].as_u64(), Some(2));
}

#[test]
fn plain_output_shows_graph_runs_and_their_tasks() {
    let out = run(&["run", "--no-control", "--graph-example", "report"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("start    report/report (depth 1)"), "{text}");
    assert!(text.contains("task     report/report: write"), "{text}");
    assert!(text.contains("task ok  report/report/research: read"), "{text}");
    assert!(text.contains("answer:\n[scripted] writer"), "{text}");
}

#[test]
fn an_example_name_works_in_place_of_a_file() {
    let by_name = run(&["graph", "review_loop"]);
    assert_eq!(by_name.status.code(), Some(0), "{}", stderr(&by_name));
    assert_eq!(stdout(&by_name), stdout(&run(&["graph", "--example", "review_loop"])));
}
