//! The agent loop: bad model output, tool errors and panics, concurrency, and
//! the O(N) transcript.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use tinyagents_core::{Message, ModelResponse, RunError, ToolCall, ToolError, ToolErrorKind, Usage, tool_fn};
use tinyagents_harness::{Agent, AgentRun, Step, SubAgent};
use tinyagents_providers::ScriptedModel;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

fn add_tool() -> tinyagents_core::SharedTool {
    tool_fn("add", "Adds two integers.", |args: AddArgs| async move {
        Ok::<_, ToolError>(args.a + args.b)
    })
}

fn tool_result(req: &tinyagents_core::ModelRequest, idx_from_end: usize) -> (String, bool) {
    match req.messages.iter_rev().nth(idx_from_end) {
        Some(Message::Tool { content, is_error, .. }) => (content.to_string(), *is_error),
        other => panic!("expected a tool message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_typed_tool_gets_parsed_arguments_and_its_output_reaches_the_model() {
    let model = Arc::new(ScriptedModel::new([
        ScriptedModel::call("add", serde_json::json!({"a": 2, "b": 40})),
        ModelResponse::text("42"),
    ]));
    let agent = Agent::builder("calc")
        .shared_model(model.clone())
        .tool(add_tool())
        .build();
    let out = agent.run("2+40?").await.unwrap();
    assert_eq!(&*out.text, "42");
    assert_eq!(tool_result(&model.requests()[1], 0), ("42".into(), false));
    // The schema the model saw was derived from the Rust type.
    let spec = &model.requests()[0].tools[0];
    assert_eq!(spec.parameters["properties"]["a"]["type"], "integer");
    assert!(out.is_clean());
}

#[tokio::test]
async fn malformed_arguments_and_unknown_tools_go_back_to_the_model_as_tool_errors() {
    let model = Arc::new(ScriptedModel::new([
        ModelResponse::tool_calls(vec![
            ToolCall::raw("c1", "add", "{\"a\": 1, \"b\": "),
            ToolCall::raw("c2", "add", r#"{"a": "one", "b": 2}"#),
            ToolCall::raw("c3", "subtract", r#"{"a": 1}"#),
            ToolCall::raw("c4", "add", r#"{"a": 1, "b": 2}"#),
        ]),
        ModelResponse::text("recovered"),
    ]));
    let agent = Agent::builder("calc")
        .shared_model(model.clone())
        .tool(add_tool())
        .build();
    let out = agent.run("go").await.unwrap();
    assert_eq!(&*out.text, "recovered");
    let req = &model.requests()[1];
    let (c1, e1) = tool_result(req, 3);
    let (c2, e2) = tool_result(req, 2);
    let (c3, e3) = tool_result(req, 1);
    let (c4, e4) = tool_result(req, 0);
    assert!(e1 && c1.contains("InvalidArguments") && c1.contains("EOF"), "{c1}");
    assert!(e2 && c2.contains("invalid type"), "{c2}");
    assert!(
        e3 && c3.contains("unknown tool \"subtract\"") && c3.contains("available tools: add"),
        "{c3}"
    );
    assert_eq!((c4.as_str(), e4), ("3", false));
    let kinds: Vec<ToolErrorKind> = out.failures.iter().map(|f| f.error.kind()).collect();
    assert_eq!(
        kinds,
        [
            ToolErrorKind::InvalidArguments,
            ToolErrorKind::InvalidArguments,
            ToolErrorKind::NotFound
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_that_panics_becomes_a_typed_error_while_its_siblings_finish() {
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let slow_ok = tool_fn("slow_ok", "Sleeps then succeeds.", move |_: serde_json::Value| {
        let f = f.clone();
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            f.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ToolError>("fine")
        }
    });
    let bomb = tool_fn("bomb", "Panics.", |_: serde_json::Value| async move {
        if true {
            panic!("kaboom");
        }
        Ok::<_, ToolError>("unreachable")
    });
    let model = Arc::new(ScriptedModel::new([
        ModelResponse::tool_calls(vec![
            ToolCall::raw("a", "slow_ok", "{}"),
            ToolCall::raw("b", "bomb", "{}"),
            ToolCall::raw("c", "slow_ok", "{}"),
        ]),
        ModelResponse::text("survived"),
    ]));
    let agent = Agent::builder("a")
        .shared_model(model.clone())
        .tool(slow_ok)
        .tool(bomb)
        .build();
    let out = agent.run("go").await.unwrap();
    assert_eq!(&*out.text, "survived");
    assert_eq!(finished.load(Ordering::SeqCst), 2);
    assert_eq!(out.failures.len(), 1);
    assert!(matches!(&out.failures[0].error, ToolError::Panicked { message } if message == "kaboom"));
    let req = &model.requests()[1];
    assert_eq!(tool_result(req, 2), ("fine".into(), false));
    assert!(tool_result(req, 1).0.contains("kaboom"));
    assert_eq!(tool_result(req, 0), ("fine".into(), false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_agent_that_panics_is_a_typed_child_error_and_its_siblings_join() {
    let crasher = Agent::builder("crasher")
        .model(ScriptedModel::from_fn(|req| {
            if last_text(req) == "crash" {
                panic!("model exploded");
            }
            Ok(ModelResponse::text(format!("did {}", last_text(req))).with_usage(Usage::call(1, 1)))
        }))
        .build();
    let model = Arc::new(ScriptedModel::new([
        ModelResponse::tool_calls(vec![
            ToolCall::new("a", "crasher", &serde_json::json!({"input": "one"})),
            ToolCall::new("b", "crasher", &serde_json::json!({"input": "crash"})),
            ToolCall::new("c", "crasher", &serde_json::json!({"input": "three"})),
        ]),
        ModelResponse::text("joined"),
    ]));
    let root = Agent::builder("root")
        .shared_model(model.clone())
        .subagent(SubAgent::new(crasher))
        .build();
    let out = root.run("go").await.unwrap();
    assert_eq!(out.failures.len(), 1);
    let ToolError::ChildRun(e) = &out.failures[0].error else {
        panic!()
    };
    assert!(
        matches!(&**e, RunError::Panicked { message, depth: 1, path } if message == "model exploded" && path.to_string() == "root/crasher"),
        "{e:?}"
    );
    let req = &model.requests()[1];
    assert_eq!(tool_result(req, 2).0, "did one");
    assert_eq!(tool_result(req, 0).0, "did three");
    assert_eq!(out.total_usage.total_tokens(), 4);
}

#[tokio::test]
async fn a_model_error_is_typed_and_keeps_the_partial_transcript() {
    let model = ScriptedModel::with_results([
        Ok(ScriptedModel::call("add", serde_json::json!({"a": 1, "b": 1})).with_usage(Usage::call(2, 2))),
        Err(tinyagents_core::ModelError::RateLimited {
            retry_after_ms: Some(1000),
        }),
    ]);
    let agent = Agent::builder("a").model(model).tool(add_tool()).build();
    let err = agent.run("go").await.unwrap_err();
    let RunError::Model { source, partial, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(source.is_retryable());
    assert_eq!(partial.turns, 1);
    assert_eq!(partial.usage, Usage::call(2, 2));
    assert!(
        err.to_string()
            .starts_with("a (depth 0): model call failed: rate limited")
    );
}

#[tokio::test]
async fn an_exhausted_script_names_the_agent_and_turn() {
    let agent = Agent::builder("talker").model(ScriptedModel::new([])).build();
    let err = agent.run("go").await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("talker") && msg.contains("turn 0"), "{msg}");
}

#[tokio::test]
async fn an_agent_without_a_model_says_so() {
    let err = Agent::builder("nobody").build().run("go").await.unwrap_err();
    assert!(
        err.to_string().contains("agent \"nobody\" has no model configured"),
        "{err}"
    );
}

/// Regression: the reference crate cloned the transcript on every turn, so N
/// sequential delegations cost O(N²). Here every request shares the previous
/// request's transcript in memory: each turn appends, nothing is copied.
#[tokio::test]
async fn sequential_delegations_share_one_transcript_instead_of_copying_it() {
    const N: usize = 2_000;
    let worker = leaf("worker", "done");
    let model = Arc::new(ScriptedModel::from_fn(|req| {
        Ok(if req.turn as usize >= N {
            ModelResponse::text("all delegated")
        } else {
            ScriptedModel::call("worker", serde_json::json!({"input": req.turn.to_string()}))
        })
    }));
    let root = Agent::builder("root")
        .shared_model(model.clone())
        .subagent(SubAgent::new(worker))
        .limits(tinyagents_core::RunLimits::inherit().max_turns(N as u32 + 1))
        .build();
    let out = root.run("go").await.unwrap();
    assert_eq!(&*out.text, "all delegated");
    let requests = model.requests();
    assert_eq!(requests.len(), N + 1);
    for w in requests.windows(2) {
        assert!(
            w[0].messages.is_shared_prefix_of(&w[1].messages),
            "turn {} copied the transcript",
            w[1].turn
        );
        assert_eq!(w[1].messages.len(), w[0].messages.len() + 2);
    }
    assert!(requests[N].messages.is_shared_prefix_of(&out.transcript));
}

#[test]
fn the_state_machine_round_trips_through_serde_between_every_step() {
    let mut run = AgentRun::new("a", [Message::user("go")]);
    let mut steps = 0;
    loop {
        // Save and restore before every step.
        let json = serde_json::to_string(&run).unwrap();
        run = serde_json::from_str(&json).unwrap();
        match run.next_step().unwrap() {
            Step::CallModel(req) => {
                let resp = if req.turn == 0 {
                    ModelResponse::tool_calls(vec![ToolCall::raw("c", "t", "{}")])
                } else {
                    ModelResponse::text("end")
                };
                let json = serde_json::to_string(&run).unwrap();
                run = serde_json::from_str(&json).unwrap();
                run.on_model(resp).unwrap();
            }
            Step::CallTools(calls) => {
                let json = serde_json::to_string(&run).unwrap();
                run = serde_json::from_str(&json).unwrap();
                run.on_tools(vec![tinyagents_harness::ToolOutcome::ok(&calls[0], "r")])
                    .unwrap();
            }
            Step::Done(text) => {
                assert_eq!(&*text, "end");
                break;
            }
        }
        steps += 1;
    }
    assert_eq!(steps, 3);
    assert_eq!(run.transcript().len(), 4);
}

#[tokio::test]
async fn a_tool_past_its_timeout_is_a_timeout_error_and_the_run_goes_on() {
    let sleepy = tool_fn("sleepy", "Sleeps a long time.", |_: serde_json::Value| async {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        Ok::<_, ToolError>("late")
    });
    let model = Arc::new(ScriptedModel::new([
        ScriptedModel::call("sleepy", serde_json::json!({})),
        ModelResponse::text("gave up waiting"),
    ]));
    let agent = Agent::builder("a")
        .shared_model(model.clone())
        .tool(sleepy)
        .tool_timeout(std::time::Duration::from_millis(50))
        .build();
    let started = std::time::Instant::now();
    let out = agent.run("go").await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(&*out.text, "gave up waiting");
    assert_eq!(out.failures[0].error.kind(), ToolErrorKind::Timeout);
    let (content, is_error) = tool_result(&model.requests()[1], 0);
    assert!(is_error && content.contains("Timeout"), "{content}");
}

#[tokio::test]
async fn an_agent_output_cap_reaches_every_model_request_and_survives_a_checkpoint() {
    let model = Arc::new(ScriptedModel::new([
        ScriptedModel::call("add", serde_json::json!({"a": 1, "b": 2})),
        ModelResponse::text("3"),
    ]));
    let agent = Agent::builder("capped")
        .shared_model(model.clone())
        .tool(add_tool())
        .max_output_tokens(48)
        .build();
    agent.run("add").await.unwrap();
    let caps: Vec<Option<u32>> = model.requests().iter().map(|r| r.max_output_tokens).collect();
    assert_eq!(caps, [Some(48), Some(48)]);

    // The cap is part of the run's saved state: a restored run asks for it too.
    let mut run = AgentRun::new("a", [Message::user("go")]).max_output_tokens(Some(7));
    let json = serde_json::to_string(&run).unwrap();
    let mut restored: AgentRun = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, run);
    let Step::CallModel(req) = restored.next_step().unwrap() else {
        panic!("expected a model call")
    };
    assert_eq!(req.max_output_tokens, Some(7));
    // An uncapped run's saved form has no such field, as before.
    run = run.max_output_tokens(None);
    assert!(!serde_json::to_string(&run).unwrap().contains("max_output_tokens"));
}

#[tokio::test]
async fn tokens_of_a_reply_cut_at_its_output_cap_are_charged_to_the_run_and_its_parent() {
    let cut = || tinyagents_core::ModelError::OutputCapReached {
        cap: 16,
        usage: Box::new(Usage::call(30, 16)),
    };
    let child = Agent::builder("writer")
        .model(ScriptedModel::with_results([Err(cut()), Err(cut())]))
        .build();
    let parent = Agent::builder("boss")
        .model(ScriptedModel::new([
            ScriptedModel::call("writer", serde_json::json!({"input": "write"})).with_usage(Usage::call(5, 5)),
            ModelResponse::text("gave up").with_usage(Usage::call(7, 1)),
        ]))
        .subagent(SubAgent::new(child.clone()))
        .build();
    let sink = tinyagents_core::CollectingSink::new();
    let out = parent
        .run_with(&tinyagents_core::RunConfig::new().sink(sink.clone()), "go")
        .await
        .unwrap();
    // The parent saw the child fail and finished; the child's spent tokens are in the roll-up.
    assert_eq!(
        out.total_usage,
        Usage::call(5, 5) + Usage::call(7, 1) + Usage::call(30, 16)
    );
    let charged: Vec<Usage> = sink
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            tinyagents_core::EventKind::ModelCallCompleted { usage, .. } if e.depth == 1 => Some(*usage),
            _ => None,
        })
        .collect();
    assert_eq!(charged, [Usage::call(30, 16)]);

    // On its own, the failed run's partial result counts them too.
    let err = child.run("write").await.unwrap_err();
    let RunError::Model { source, partial, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(source.spent(), Some(&Usage::call(30, 16)));
    assert_eq!(partial.usage, Usage::call(30, 16));
}
