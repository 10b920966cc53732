//! Record and replay: cassettes answer the requests they recorded, by
//! content, deterministically, and explain any mismatch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{Deltas, request, sse, tool};
use serde_json::json;
use tinyagents_core::{Message, Model, ModelError, ModelResponse, SharedModel, ToolChoice, Usage};
use tinyagents_providers::cassette::CassetteEntry;
use tinyagents_providers::{CassetteError, CassetteModel, OpenAiCompatible, ScriptedModel};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn entries(path: &std::path::Path) -> Vec<CassetteEntry> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_recorded_streaming_http_call_replays_offline_with_the_same_reply_and_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weather.jsonl");
    let chunk =
        |d: serde_json::Value| json!({"choices": [{"index": 0, "delta": d, "finish_reason": null}]}).to_string();
    let body = sse(&[
        ("", chunk(json!({"content": "Sun"}))),
        ("", chunk(json!({"content": "ny"}))),
        (
            "",
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}).to_string(),
        ),
        ("", "[DONE]".into()),
    ]);
    let mut req = request([Message::system("Be brief."), Message::user("Weather?")]);
    req.tools = Arc::from([tool("weather")]);
    req.response_format = Some(Arc::new(json!({"type": "object"})));
    req.tool_choice = ToolChoice::Auto;

    let recorded_deltas = Deltas::default();
    let recorded = {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
            .expect(1)
            .mount(&server)
            .await;
        let inner: SharedModel =
            Arc::new(OpenAiCompatible::new(format!("{}/v1", server.uri()), None, "gpt-test").unwrap());
        let recorder = CassetteModel::record(inner, &path).unwrap();
        assert!(!recorder.is_replaying());
        let d = recorded_deltas.clone();
        recorder.complete_streaming(&req, &move |x| d.push(x)).await.unwrap()
        // The server is dropped here: replay below is offline.
    };

    // The cassette holds the request as sent: model, messages, tools, schema.
    let lines = entries(&path);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].model, "gpt-test");
    assert_eq!(lines[0].request.messages, req.messages.to_vec());
    assert_eq!(lines[0].request.tools[0].name.as_ref(), "weather");
    assert_eq!(lines[0].request.response_format, Some(json!({"type": "object"})));

    let replay = CassetteModel::replay(&path).unwrap();
    assert!(replay.is_replaying());
    assert_eq!(replay.id(), "gpt-test", "pricing uses the recorded model id");
    let replayed_deltas = Deltas::default();
    let d = replayed_deltas.clone();
    let mut again = req.clone();
    again.run_id = tinyagents_core::RunId::new();
    let replayed = replay.complete_streaming(&again, &move |x| d.push(x)).await.unwrap();
    assert_eq!(replayed, recorded);
    assert_eq!(replayed.content.as_deref(), Some("Sunny"));
    assert_eq!(replayed.usage, Usage::call(9, 2));
    assert_eq!(replayed_deltas.all(), recorded_deltas.all());
    assert_eq!(replay.unused(), 0);
}

#[tokio::test]
async fn a_request_that_differs_names_the_first_differing_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.jsonl");
    let inner: SharedModel = Arc::new(ScriptedModel::new([ModelResponse::text("hi there")]));
    let rec = CassetteModel::record(inner, &path).unwrap();
    rec.complete(&request([Message::system("s"), Message::user("hi")]))
        .await
        .unwrap();

    let replay = CassetteModel::replay(&path).unwrap();
    let err = replay
        .complete(&request([Message::system("s"), Message::user("hello")]))
        .await
        .unwrap_err();
    let ModelError::Script { message } = err else {
        panic!("expected a script error, got {err:?}")
    };
    assert!(
        message.contains(r#"first difference: messages[1].content: recorded "hi", got "hello""#),
        "{message}"
    );
    assert_eq!(replay.unused(), 1, "a mismatch consumes nothing");
}

#[tokio::test]
async fn identical_requests_replay_in_recording_order_and_running_out_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.jsonl");
    let inner: SharedModel = Arc::new(ScriptedModel::new([
        ModelResponse::text("first"),
        ModelResponse::text("second"),
    ]));
    let rec = CassetteModel::record(inner, &path).unwrap();
    let req = request([Message::user("again")]);
    rec.complete(&req).await.unwrap();
    rec.complete(&req).await.unwrap();

    let replay = CassetteModel::replay(&path).unwrap();
    assert_eq!(replay.complete(&req).await.unwrap().content.as_deref(), Some("first"));
    assert_eq!(replay.complete(&req).await.unwrap().content.as_deref(), Some("second"));
    let err = replay.complete(&req).await.unwrap_err();
    assert!(err.to_string().contains("already replayed"), "{err}");
}

#[tokio::test]
async fn requests_are_matched_by_content_not_by_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.jsonl");
    let inner: SharedModel = Arc::new(ScriptedModel::from_fn(|r| {
        Ok(ModelResponse::text(format!("answer to {}", r.agent)))
    }));
    let rec = CassetteModel::record(inner, &path).unwrap();
    let mut a = request([Message::user("x")]);
    a.agent = "alpha".into();
    let mut b = request([Message::user("x")]);
    b.agent = "beta".into();
    rec.complete(&a).await.unwrap();
    rec.complete(&b).await.unwrap();

    // Concurrent sub-agents may ask in another order on replay.
    let replay = CassetteModel::replay(&path).unwrap();
    assert_eq!(
        replay.complete(&b).await.unwrap().content.as_deref(),
        Some("answer to beta")
    );
    assert_eq!(
        replay.complete(&a).await.unwrap().content.as_deref(),
        Some("answer to alpha")
    );
}

#[tokio::test]
async fn errors_are_recorded_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.jsonl");
    let limited = ModelError::RateLimited {
        retry_after_ms: Some(1500),
    };
    let inner: SharedModel = Arc::new(ScriptedModel::with_results([Err(limited.clone())]));
    let rec = CassetteModel::record(inner, &path).unwrap();
    let req = request([Message::user("x")]);
    assert_eq!(rec.complete(&req).await.unwrap_err(), limited);
    let replay = CassetteModel::replay(&path).unwrap();
    assert_eq!(replay.complete(&req).await.unwrap_err(), limited);
}

#[tokio::test]
async fn a_whole_agent_tree_replays_to_the_same_output() {
    use tinyagents_harness::{Agent, SubAgent};
    let dir = tempfile::tempdir().unwrap();
    let build = |orch: SharedModel, child: SharedModel| {
        let researcher = Agent::builder("researcher")
            .system("Answer briefly.")
            .shared_model(child)
            .build();
        Agent::builder("orchestrator")
            .shared_model(orch)
            .subagent(SubAgent::new(researcher))
            .build()
    };
    let orch_path = dir.path().join("orchestrator.jsonl");
    let child_path = dir.path().join("researcher.jsonl");
    let orch: SharedModel = Arc::new(ScriptedModel::new([
        ScriptedModel::call("researcher", json!({"input": "When did Rust 1.0 ship?"})),
        ModelResponse::text("2015").with_usage(Usage::call(50, 2)),
    ]));
    let child: SharedModel = Arc::new(ScriptedModel::new([
        ModelResponse::text("May 2015").with_usage(Usage::call(20, 8))
    ]));
    let recorded = build(
        Arc::new(CassetteModel::record(orch, &orch_path).unwrap()),
        Arc::new(CassetteModel::record(child, &child_path).unwrap()),
    )
    .run("When did Rust 1.0 ship?")
    .await
    .unwrap();

    let replayed = build(
        Arc::new(CassetteModel::replay(&orch_path).unwrap()),
        Arc::new(CassetteModel::replay(&child_path).unwrap()),
    )
    .run("When did Rust 1.0 ship?")
    .await
    .unwrap();
    assert_eq!(replayed.text, recorded.text);
    assert_eq!(replayed.total_usage, recorded.total_usage);
    assert_eq!(replayed.transcript.to_vec(), recorded.transcript.to_vec());
}

#[test]
fn a_corrupt_cassette_line_is_reported_with_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, "\n{not json}\n").unwrap();
    match CassetteModel::replay(&path).unwrap_err() {
        CassetteError::Parse { line, .. } => assert_eq!(line, 2),
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert!(matches!(
        CassetteModel::replay(dir.path().join("missing.jsonl")),
        Err(CassetteError::Io { .. })
    ));
}
