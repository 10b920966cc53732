//! Self-authoring: a model returns a JSON blueprint through structured
//! output; it is compiled and run on the same runtime.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use tinyagents_blueprint::author::{Author, AuthorError, plan_from_model};
use tinyagents_blueprint::{CapabilityGrant, Inputs, Toolbox, blueprint_json_schema, execute};
use tinyagents_core::{ModelResponse, RunConfig, RunContext, SharedModel, tool_fn};
use tinyagents_providers::ScriptedModel;

const PLAN: &str = r#"```json
{"name": "self_made", "model": "m", "output": "summary",
 "nodes": [
  {"kind": "agent", "name": "facts", "task": "List facts about otters.", "tools": ["web_search"], "rationale": "gather"},
  {"kind": "agent", "name": "jokes", "task": "Tell an otter joke.", "rationale": "levity"},
  {"kind": "agent", "name": "summary", "task": "Combine {{deps.facts}} and {{deps.jokes}}.", "rationale": "one answer"}
 ]}
```"#;

#[tokio::test]
async fn a_model_authored_blueprint_is_compiled_and_run_end_to_end() {
    let planner = ScriptedModel::new([ModelResponse::text(PLAN)]);
    let authored = plan_from_model(
        &planner,
        "Tell me about otters",
        &CapabilityGrant::tools(["web_search"]),
    )
    .await
    .unwrap();
    let req = &planner.requests()[0];
    assert_eq!(
        req.response_format.as_deref(),
        Some(&blueprint_json_schema()),
        "structured output"
    );
    assert!(task_of(req).contains("otters"));
    assert_eq!(authored.attempts, 1);
    assert_eq!(authored.plan.stages.len(), 2, "facts and jokes run together");

    let workers = by_agent(|agent, task| format!("{agent}: {task}"));
    let shared: SharedModel = workers.clone();
    let web = tool_fn("web_search", "Searches", |_: serde_json::Value| async {
        Ok::<_, std::convert::Infallible>("r")
    });
    let factory = Toolbox::new().default_model(shared).tool(web);
    let out = execute(
        &authored.plan,
        &RunContext::root("root", &RunConfig::new()),
        &factory,
        &Inputs::new(),
    )
    .await
    .unwrap();
    assert!(
        out.text.starts_with("summary: Combine facts: List facts"),
        "{}",
        out.text
    );
    assert_eq!(workers.request_count(), 3);
}

#[tokio::test]
async fn a_plan_that_does_not_compile_is_sent_back_with_its_diagnostics() {
    let bad =
        r#"{"name": "p", "model": "m", "nodes": [{"kind": "agent", "name": "a", "task": "x", "tools": ["shell"]}]}"#;
    let good = r#"{"name": "p", "model": "m", "nodes": [{"kind": "agent", "name": "a", "task": "x"}]}"#;
    let planner = ScriptedModel::new([ModelResponse::text(bad), ModelResponse::text(good)]);
    let authored = Author::new(&planner)
        .grant(CapabilityGrant::none())
        .plan("do x")
        .await
        .unwrap();
    assert_eq!(authored.attempts, 2);
    let retry = task_of(&planner.requests()[1]);
    assert!(retry.contains("requests tool `shell`"), "{retry}");
}

#[tokio::test]
async fn giving_up_after_the_attempts_returns_the_last_diagnostics() {
    let planner = ScriptedModel::cycle([ModelResponse::text("not json at all")]);
    let err = Author::new(&planner).attempts(3).plan("x").await.unwrap_err();
    match err {
        AuthorError::Invalid { report, attempts } => {
            assert_eq!(attempts, 3);
            assert_eq!(report.diagnostics[0].code, "blueprint::json");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(planner.request_count(), 3);
}

#[tokio::test]
async fn planning_calls_are_charged_to_the_run() {
    let planner = Arc::new(ScriptedModel::new([ModelResponse::text(
        r#"{"name": "p", "model": "m", "nodes": [{"kind": "agent", "name": "a", "task": "x"}]}"#,
    )
    .with_usage(tinyagents_core::Usage::call(40, 20))]));
    let run = RunContext::root("root", &RunConfig::new());
    Author::new(planner.as_ref())
        .in_run(run.clone())
        .plan("x")
        .await
        .unwrap();
    assert_eq!(run.own_usage().total_tokens(), 60);
}
