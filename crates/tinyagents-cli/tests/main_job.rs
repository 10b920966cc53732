//! The main job (`tinyagents run "TASK"` with no script): a planner writes a
//! team as grammar-constrained JSON, the transpiler compiles it, the team
//! runs. Checked with a scripted model (always) and with the embedded local
//! model (when its file is present; `.ci/run` pulls it).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use serde_json::json;
use tinyagents_cli::orchestrate::{self, OrchestrateError, WRITER, parse_plan, plan_schema};
use tinyagents_core::{
    CollectingSink, Event, EventKind, Message, ModelRequest, ModelResponse, RunConfig, RunContext, SharedModel, Usage,
};
use tinyagents_providers::ScriptedModel;

const PLAN: &str = r#"{"agents":[{"name":"researcher","task":"Find the key facts.","why":"Facts first"},{"name":"critic","task":"List common mistakes.","why":"Warn about pitfalls"}]}"#;

/// A model that plans when asked for the plan's schema, and otherwise
/// answers with a note naming the agent's system prompt's first words.
fn team_model(plan: &'static str) -> ScriptedModel {
    ScriptedModel::from_fn(move |req: &ModelRequest| {
        let text = if req.response_format.is_some() {
            plan.to_string()
        } else {
            let system = req
                .messages
                .iter()
                .find(|m| matches!(m, Message::System { .. }))
                .and_then(|m| m.text())
                .unwrap_or("");
            let last = req.messages.iter().last().and_then(|m| m.text()).unwrap_or("");
            if system.contains("final answer") {
                format!("ANSWER from notes: {}", last.replace('\n', " | "))
            } else {
                format!("note for: {}", last.lines().next().unwrap_or(""))
            }
        };
        Ok(ModelResponse::text(text).with_usage(Usage::call(10, 5)))
    })
    .with_id("m")
}

async fn run_main_job(
    model: impl Into<Arc<ScriptedModel>>,
    task: &str,
) -> (Result<String, OrchestrateError>, Vec<Event>, RunContext) {
    let sink = CollectingSink::new();
    let config = RunConfig::new().sink(sink.clone());
    let ctx = RunContext::root("orchestrator", &config);
    let model: SharedModel = model.into();
    let result = orchestrate::orchestrate(&ctx, model, task).await;
    (result, sink.events(), ctx)
}

#[tokio::test]
async fn the_planner_writes_a_team_that_is_compiled_and_run_under_the_root() {
    let model = Arc::new(team_model(PLAN));
    let (result, events, ctx) = run_main_job(model.clone(), "Make coffee").await;
    let answer = result.unwrap();
    // The writer read both agents' notes, which were about their own tasks.
    assert!(answer.starts_with("ANSWER from notes:"), "{answer}");
    assert!(answer.contains("researcher: note for: Find the key facts."), "{answer}");
    assert!(answer.contains("critic: note for: List common mistakes."), "{answer}");
    assert!(answer.contains("Make coffee"), "{answer}");

    // The planner was asked for the plan's schema, with the task.
    let requests = model.requests();
    let plan_req = requests.iter().find(|r| r.response_format.is_some()).unwrap();
    assert_eq!(**plan_req.response_format.as_ref().unwrap(), plan_schema());
    assert_eq!(plan_req.max_output_tokens, Some(orchestrate::PLANNER_MAX_TOKENS));
    assert_eq!(requests.len(), 4, "planner, two agents, writer");

    // Runs: orchestrator > planner, and the team's agents below the root,
    // each with the planner's rationale.
    let started: Vec<(String, u32)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RunStarted { name } => Some((name.to_string(), e.depth)),
            _ => None,
        })
        .collect();
    for name in ["planner", "researcher", "critic", WRITER] {
        assert!(started.iter().any(|(n, d)| n == name && *d >= 1), "{name}: {started:?}");
    }
    let rationales: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::NodeRationale { rationale, .. } => Some(rationale.to_string()),
            _ => None,
        })
        .collect();
    assert!(rationales.iter().any(|r| r == "Facts first"), "{rationales:?}");
    assert!(rationales.iter().any(|r| r == "Warn about pitfalls"), "{rationales:?}");
    // Usage rolls up exactly: four calls of 15 tokens.
    assert_eq!(ctx.total_usage().total_tokens(), 60);
}

#[tokio::test]
async fn a_plan_that_is_not_the_schema_fails_naming_the_planner_run() {
    let (result, _, _) = run_main_job(team_model(r#"{"agents": "none"}"#), "t").await;
    let err = result.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OrchestrateError::BadPlan { depth: 1, .. }), "{text}");
    assert!(text.starts_with("orchestrator/planner (depth 1)"), "{text}");
    assert!(text.contains("the planner answered"), "{text}");
}

#[tokio::test]
async fn a_plan_with_too_many_agents_or_colliding_names_is_handled() {
    let four = r#"{"agents":[{"name":"a","task":"t1 long enough","why":"w"},{"name":"b","task":"t2 long enough","why":"w"},{"name":"c","task":"t3 long enough","why":"w"},{"name":"d","task":"t4 long enough","why":"w"}]}"#;
    let (result, _, _) = run_main_job(team_model(four), "t").await;
    assert!(result.unwrap_err().to_string().contains("4 agents planned"));

    // Same names, the writer's name, and template braces from the model
    // become distinct, valid nodes with literal text.
    let clash = r#"{"agents":[{"name":"writer","task":"Say {{inputs.secret}} twice","why":"w"},{"name":"writer","task":"Other part","why":"w"}]}"#;
    let plan = parse_plan(clash).unwrap();
    let bp = orchestrate::to_blueprint(&plan, "m").unwrap();
    let names: Vec<&str> = bp.nodes.iter().map(|n| n.name()).collect();
    assert_eq!(names, ["writer_2", "writer_3", WRITER]);
    let (result, _, _) = run_main_job(team_model(clash), "the task").await;
    let answer = result.unwrap();
    assert!(answer.contains("((inputs.secret))"), "{answer}");
}

#[test]
fn the_plan_schema_bounds_the_team_and_forbids_extra_fields() {
    let schema = plan_schema();
    assert_eq!(schema["properties"]["agents"]["minItems"], json!(2));
    assert_eq!(schema["properties"]["agents"]["maxItems"], json!(3));
    assert_eq!(
        schema["properties"]["agents"]["items"]["additionalProperties"],
        json!(false)
    );
    assert!(parse_plan(&format!("```json\n{PLAN}\n```")).is_ok());
    assert!(parse_plan(r#"{"agents":[{"name":"a","task":"t","why":"w","x":1}]}"#).is_err());
}

// ---- the binary ----

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tinyagents"));
    cmd.env("NO_COLOR", "1").env_remove("TINYAGENTS_PROVIDER");
    cmd
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// The default model file, when pulled (`tinyagents model path` exits 0).
fn local_model() -> Option<PathBuf> {
    if !cfg!(feature = "local") {
        eprintln!("skipped: this build has no `local` feature");
        return None;
    }
    let out = bin().args(["model", "path"]).output().unwrap();
    if out.status.success() {
        Some(PathBuf::from(text(&out.stdout).trim()))
    } else {
        eprintln!(
            "skipped: the local model is not pulled ({}); `tinyagents model pull` fetches it",
            text(&out.stderr).trim()
        );
        None
    }
}

fn run_local(extra: &[&str]) -> Output {
    bin()
        .args(["run", "--no-control", "--json", "--provider", "local"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn the_main_job_runs_on_the_embedded_model_and_streams_tokens_per_run() {
    let Some(_) = local_model() else { return };
    let out = bin()
        .args(["run", "--no-control", "--json", "Give three tips for learning Rust."])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    let mut lines: Vec<&str> = stdout.lines().collect();
    let result: serde_json::Value = serde_json::from_str(lines.pop().unwrap()).unwrap();
    let events: Vec<Event> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(result["ok"], json!(true), "{result}");
    assert!(!result["answer"].as_str().unwrap().trim().is_empty(), "{result}");
    // The default provider is the local model: the planner, two or three
    // planned agents and the writer ran, each streaming its own tokens.
    let names: Vec<(String, tinyagents_core::RunId)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RunStarted { name } => Some((name.to_string(), e.run_id)),
            _ => None,
        })
        .collect();
    let agents = names
        .iter()
        .filter(|(n, _)| !["orchestrator", "planner", "team", WRITER].contains(&n.as_str()))
        .count();
    assert!((2..=3).contains(&agents), "{names:?}");
    for (name, id) in &names {
        if ["orchestrator", "team"].contains(&name.as_str()) {
            continue;
        }
        let deltas = events
            .iter()
            .filter(|e| e.run_id == *id && matches!(e.kind, EventKind::ModelDelta { .. }))
            .count();
        assert!(deltas > 0, "{name} streamed no tokens");
    }
    // The root's total is every call's usage: 4 or 5 model calls, tokens counted.
    let calls: u64 = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ModelCallCompleted { usage, .. } => Some(usage.total_tokens()),
            _ => None,
        })
        .sum();
    assert_eq!(result["total_tokens"], json!(calls), "{result}");
    assert!(calls > 0);
}

#[test]
fn a_missing_or_broken_model_file_is_a_clear_error() {
    if !cfg!(feature = "local") {
        eprintln!("skipped: this build has no `local` feature");
        return;
    }
    let out = run_local(&["--model", "/nonexistent/model.gguf"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("/nonexistent/model.gguf") && err.contains("does not exist"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("truncated.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00").unwrap();
    let out = run_local(&["--model", bad.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("truncated.gguf"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn model_path_names_the_file_run_would_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.gguf");
    std::fs::write(&file, b"x").unwrap();
    let out = bin()
        .args(["model", "path", "--model", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout).trim(), file.to_str().unwrap());

    // An empty models folder: the default is not pulled yet, and it says how.
    let out = bin()
        .args(["model", "path"])
        .env_remove("TINYAGENTS_MODEL")
        .env("TINYAGENTS_MODELS_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("tinyagents model pull"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn scripted_and_local_options_are_checked() {
    let out = bin()
        .args([
            "run",
            "--no-control",
            "--provider",
            "local",
            "--base-url",
            "http://127.0.0.1:1/v1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--base-url does not apply to the embedded model"),
        "{}",
        text(&out.stderr)
    );
}
