//! `tinyagents run --provider openai|anthropic`: the real binary against a
//! local HTTP server (wiremock on 127.0.0.1) speaking each wire format.
//! The server answers like a model would: the orchestrator (offered a tool)
//! first delegates, then answers once it has the tool result; the helper
//! (offered none) answers at once. Tests never reach a hosted API.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A two-agent team whose scripted responses must not be used.
const TEAM: &str = r#"{
  "input": "Say hello",
  "root": "boss",
  "agents": {
    "boss": {"system": "You delegate.", "subagents": ["helper"],
             "responses": [{"content": "SCRIPTED BOSS"}]},
    "helper": {"system": "You help.", "description": "Helps.",
               "responses": [{"content": "SCRIPTED HELPER"}]}
  }
}"#;

fn write_team() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tinyagents-cli-providers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One file per call: tests run in parallel, and a shared file could be
    // read while another test is rewriting it.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("team-{n}.json"));
    std::fs::write(&file, TEAM).unwrap();
    file
}

/// Runs the binary (off the async runtime, so the server keeps serving).
async fn run(args: Vec<String>, env: Vec<(&'static str, &'static str)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tinyagents"));
        cmd.env("NO_COLOR", "1")
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .args(["run", "--no-control"])
            .args(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("binary runs")
    })
    .await
    .unwrap()
}

/// A loopback server answering every POST to `at` with `reply`.
async fn serving(at: &str, reply: impl wiremock::Respond + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(at))
        .respond_with(reply)
        .mount(&server)
        .await;
    server
}

/// Runs the team script on `provider` at `base_url` with `model` (and
/// `extra` arguments), with `env` set.
async fn run_team(
    provider: &str,
    base_url: String,
    model: &str,
    extra: &[&str],
    env: Vec<(&'static str, &'static str)>,
) -> Output {
    let team = write_team();
    let mut args: Vec<String> = vec![
        "--provider".into(),
        provider.into(),
        "--base-url".into(),
        base_url,
        "--model".into(),
        model.into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend(["--script".into(), team.display().to_string()]);
    run(args, env).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sse(events: &[(Option<&str>, Value)], done: bool) -> ResponseTemplate {
    let mut body = String::new();
    for (event, data) in events {
        if let Some(e) = event {
            body.push_str(&format!("event: {e}\n"));
        }
        body.push_str(&format!("data: {data}\n\n"));
    }
    if done {
        body.push_str("data: [DONE]\n\n");
    }
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

fn body(req: &Request) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

/// Whether the request carries a tool result (role `tool` or a
/// `tool_result` block).
fn has_tool_result(b: &Value) -> bool {
    b["messages"].as_array().unwrap().iter().any(|m| {
        m["role"] == "tool"
            || m["content"]
                .as_array()
                .is_some_and(|blocks| blocks.iter().any(|c| c["type"] == "tool_result"))
    })
}

fn offers_tools(b: &Value) -> bool {
    b["tools"].as_array().is_some_and(|t| !t.is_empty())
}

fn openai_reply(req: &Request) -> ResponseTemplate {
    let b = body(req);
    let chunk = |delta: Value, finish: Value| {
        (
            None,
            json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let usage = (
        None,
        json!({"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [],
                              "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}}),
    );
    if b["stream"] != true {
        let message = if offers_tools(&b) && !has_tool_result(&b) {
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "helper", "arguments": "{\"input\":\"greet the user\"}"}}]})
        } else {
            let answer = if offers_tools(&b) {
                "PROVIDER FINAL ANSWER"
            } else {
                "helper: hello"
            };
            json!({"role": "assistant", "content": answer})
        };
        let finish = if message["tool_calls"].is_array() {
            "tool_calls"
        } else {
            "stop"
        };
        return ResponseTemplate::new(200).set_body_json(json!({"id": "c1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}}));
    }
    if offers_tools(&b) && !has_tool_result(&b) {
        let call = json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "helper", "arguments": "{\"input\":\"greet the user\"}"}}]});
        sse(
            &[chunk(call, Value::Null), chunk(json!({}), json!("tool_calls")), usage],
            true,
        )
    } else {
        let answer = if offers_tools(&b) {
            "PROVIDER FINAL ANSWER"
        } else {
            "helper: hello"
        };
        sse(
            &[
                chunk(json!({"role": "assistant", "content": answer}), Value::Null),
                chunk(json!({}), json!("stop")),
                usage,
            ],
            true,
        )
    }
}

fn anthropic_reply(req: &Request) -> ResponseTemplate {
    let b = body(req);
    let start = (
        Some("message_start"),
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "model": "claude-m", "content": [], "stop_reason": null,
        "usage": {"input_tokens": 12, "output_tokens": 1}}}),
    );
    let stop = (Some("message_stop"), json!({"type": "message_stop"}));
    let block_stop = (
        Some("content_block_stop"),
        json!({"type": "content_block_stop", "index": 0}),
    );
    let (block, delta, reason) = if offers_tools(&b) && !has_tool_result(&b) {
        (
            json!({"type": "tool_use", "id": "toolu_1", "name": "helper", "input": {}}),
            json!({"type": "input_json_delta", "partial_json": "{\"input\":\"greet the user\"}"}),
            "tool_use",
        )
    } else {
        let answer = if offers_tools(&b) {
            "ANTHROPIC FINAL ANSWER"
        } else {
            "helper: hello"
        };
        (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": answer}),
            "end_turn",
        )
    };
    sse(
        &[
            start,
            (
                Some("content_block_start"),
                json!({"type": "content_block_start", "index": 0, "content_block": block}),
            ),
            (
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": 0, "delta": delta}),
            ),
            block_stop,
            (
                Some("message_delta"),
                json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
                "usage": {"output_tokens": 7}}),
            ),
            stop,
        ],
        false,
    )
}

async fn bodies(server: &MockServer) -> Vec<(Value, Option<String>)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let auth = r
                .headers
                .get("authorization")
                .or_else(|| r.headers.get("x-api-key"))
                .map(|v| v.to_str().unwrap().to_string());
            (body(r), auth)
        })
        .collect()
}

fn system_of(b: &Value) -> String {
    match &b["system"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|x| x["text"].as_str()).collect(),
        _ => b["messages"][0]["content"].as_str().unwrap_or_default().to_string(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_provider_answers_every_agent_of_the_script_and_scripted_responses_are_ignored() {
    let server = serving("/v1/chat/completions", openai_reply).await;
    let out = run_team(
        "openai",
        format!("{}/v1", server.uri()),
        "m",
        &[],
        vec![("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("PROVIDER FINAL ANSWER"), "{stdout}");
    assert!(!stdout.contains("SCRIPTED"), "{stdout}");
    assert_eq!(stderr.matches("scripted responses are ignored").count(), 1, "{stderr}");

    let reqs = bodies(&server).await;
    // boss delegates, helper answers, boss answers.
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    for (b, auth) in &reqs {
        assert_eq!(b["model"], "m");
        assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
    }
    let systems: Vec<String> = reqs.iter().map(|(b, _)| system_of(b)).collect();
    assert_eq!(systems, ["You delegate.", "You help.", "You delegate."]);
    assert_eq!(reqs[0].0["tools"][0]["function"]["name"], "helper");
    assert!(reqs[0].0["messages"].to_string().contains("Say hello"));
    assert!(reqs[1].0["messages"].to_string().contains("greet the user"));
    assert!(reqs[2].0["messages"].to_string().contains("helper: hello"));
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_provider_sends_no_key_when_the_variable_is_unset() {
    let server = serving("/v1/chat/completions", openai_reply).await;
    let out = run_team(
        "openai",
        format!("{}/v1", server.uri()),
        "local",
        &["--api-key-env", "TINYAGENTS_TEST_NO_SUCH_KEY"],
        vec![("OPENAI_API_KEY", "sk-must-not-be-sent")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let reqs = bodies(&server).await;
    assert!(!reqs.is_empty());
    assert!(
        reqs.iter().all(|(b, auth)| auth.is_none() && b["model"] == "local"),
        "{reqs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_provider_runs_the_team_over_the_messages_api() {
    let server = serving("/v1/messages", anthropic_reply).await;
    let out = run_team(
        "anthropic",
        server.uri(),
        "claude-m",
        &[],
        vec![("ANTHROPIC_API_KEY", "sk-ant-test")],
    )
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("ANTHROPIC FINAL ANSWER"), "{stdout}");
    let reqs = bodies(&server).await;
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    for (b, auth) in &reqs {
        assert_eq!(b["model"], "claude-m");
        assert_eq!(auth.as_deref(), Some("sk-ant-test"));
    }
    let systems: Vec<String> = reqs.iter().map(|(b, _)| system_of(b)).collect();
    assert_eq!(systems, ["You delegate.", "You help.", "You delegate."]);
    assert_eq!(reqs[0].0["tools"][0]["name"], "helper");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_from_the_provider_fails_the_run_with_exit_1_naming_the_auth_failure() {
    let server = serving(
        "/v1/chat/completions",
        ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}),
        ),
    )
    .await;
    let out = run_team(
        "openai",
        format!("{}/v1", server.uri()),
        "m",
        &[],
        vec![("OPENAI_API_KEY", "sk-wrong")],
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("authentication failed (401)"), "{stderr}");
    assert!(stderr.contains("boss"), "the error names the run path: {stderr}");
    assert!(stderr.contains("depth 0"), "the error names the depth: {stderr}");
    // Not retried: one request.
    assert_eq!(bodies(&server).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_fails_the_run_with_exit_1() {
    // A port that was just free: bind, read the port, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run_team("openai", format!("http://127.0.0.1:{port}/v1"), "m", &[], vec![]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("boss"), "{stderr}");
}

#[tokio::test]
async fn base_url_without_provider_exits_2() {
    let out = run(vec!["--base-url".into(), "http://127.0.0.1:9/v1".into()], vec![]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Without a script the default provider is the embedded model, which
    // has no base URL.
    assert!(
        stderr.contains("--base-url does not apply to the embedded model"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: see `tinyagents run --help` (--provider"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_provider_without_a_model_exits_2() {
    let out = run(vec!["--provider".into(), "anthropic".into()], vec![]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--provider anthropic needs --model"), "{stderr}");
}

/// A one-agent blueprint, written next to the team script.
const BLUEPRINT: &str = r#"blueprint hello {
  model "small"
  input topic "What to greet"
  output greeter

  agent greeter {
    role "You greet."
    task "Greet {{inputs.topic}}."
  }
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn openai_provider_answers_a_blueprint_agent_instead_of_the_echo_model() {
    let server = serving("/v1/chat/completions", openai_reply).await;
    let file = write_team().with_file_name("hello.ta");
    std::fs::write(&file, BLUEPRINT).unwrap();
    let out = run(
        vec![
            file.display().to_string(),
            "--set".into(),
            "topic=the crabs".into(),
            "--provider".into(),
            "openai".into(),
            "--base-url".into(),
            format!("{}/v1", server.uri()),
            "--model".into(),
            "m".into(),
        ],
        vec![],
    )
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("helper: hello"), "{stdout}");
    assert!(!stdout.contains("[scripted]"), "{stdout}");
    let reqs = bodies(&server).await;
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0].0["model"], "m");
    assert!(
        reqs[0].0["messages"].to_string().contains("Greet the crabs."),
        "{:#}",
        reqs[0].0
    );
}

#[tokio::test]
async fn run_help_documents_the_provider_options() {
    let out = tokio::task::spawn_blocking(|| {
        Command::new(env!("CARGO_BIN_EXE_tinyagents"))
            .args(["run", "--help"])
            .output()
            .expect("binary runs")
    })
    .await
    .unwrap();
    let help = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for needle in [
        "--provider <PROVIDER>",
        "--base-url <URL>",
        "--model <MODEL>",
        "--api-key-env <VAR>",
        "anthropic",
        "OPENAI_API_KEY",
    ] {
        assert!(help.contains(needle), "`{needle}` missing from run --help:\n{help}");
    }
}

/// Runs the team against a server that always answers `reply`.
async fn run_against(reply: ResponseTemplate) -> (Output, usize) {
    let server = serving("/v1/chat/completions", reply).await;
    let out = run_team("openai", format!("{}/v1", server.uri()), "no-such-model", &[], vec![]).await;
    (out, bodies(&server).await.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_model_fails_the_run_with_exit_1_naming_the_model() {
    let (out, requests) = run_against(ResponseTemplate::new(404).set_body_json(
        json!({"error": {"message": "The model `no-such-model` does not exist", "code": "model_not_found"}}),
    ))
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("boss (depth 0)"), "{stderr}");
    assert!(stderr.contains("model not found: no-such-model"), "{stderr}");
    assert_eq!(requests, 1, "a 404 is not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_is_retried_then_fails_the_run_with_exit_1() {
    let (out, requests) =
        run_against(ResponseTemplate::new(503).set_body_json(json!({"error": {"message": "overloaded"}}))).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("boss (depth 0)"), "{stderr}");
    assert!(stderr.contains("503"), "{stderr}");
    assert!(requests > 1, "the 503 was retried ({requests} requests)");
}
