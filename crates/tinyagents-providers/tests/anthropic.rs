//! The native Anthropic provider against a loopback server speaking the
//! Messages API: what is sent, what is returned, streaming, caching, errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{request, sse, stream_call, streaming, tool, tool_round_trip};
use serde_json::{Value, json};
use tinyagents_core::{Message, Model, ModelDelta, ModelError, ToolCall, ToolChoice, Usage};
use tinyagents_providers::anthropic::PromptCaching;
use tinyagents_providers::{Anthropic, RetryPolicy};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn model(server: &MockServer) -> Anthropic {
    Anthropic::new(server.uri(), Some("sk-ant-test".into()), "claude-test")
        .unwrap()
        .with_retry(RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            jitter: true,
        })
}

fn message(content: Value, usage: Value) -> Value {
    json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": content, "stop_reason": "end_turn", "usage": usage,
    })
}

async fn body_of(server: &MockServer, n: usize) -> Value {
    let reqs = server.received_requests().await.unwrap();
    serde_json::from_slice(&reqs[n].body).unwrap()
}

async fn answering(reply: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(reply))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn a_call_sends_headers_system_blocks_and_messages_and_returns_text_and_usage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", "sk-ant-test"))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(message(
            json!([{"type": "text", "text": "Bonjour"}]),
            json!({"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let m = model(&server);
    assert_eq!(m.id(), "claude-test");
    let reply = m
        .complete(&request([
            Message::system("Be brief."),
            Message::user("Hello in French?"),
        ]))
        .await
        .unwrap();
    assert_eq!(reply.content.as_deref(), Some("Bonjour"));
    assert_eq!(
        reply.usage,
        Usage {
            input_tokens: 130,
            output_tokens: 3,
            cached_input_tokens: 100,
            cache_write_input_tokens: 20,
            requests: 1
        }
    );
    let body = body_of(&server, 0).await;
    assert_eq!(body["model"], "claude-test");
    assert_eq!(body["max_tokens"], 4096);
    assert_eq!(body["system"], json!([{"type": "text", "text": "Be brief."}]));
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Hello in French?"}]}])
    );
}

#[tokio::test]
async fn tool_calls_and_results_become_tool_use_and_tool_result_blocks() {
    let server = answering(message(
        json!([{"type": "text", "text": "Sunny."}]),
        json!({"input_tokens": 1, "output_tokens": 1}),
    ))
    .await;
    let mut msgs = tool_round_trip();
    // A second result for the same turn travels in the same user message.
    if let Message::Assistant { tool_calls, .. } = &mut msgs[2] {
        tool_calls.push(ToolCall::raw("call_2", "weather", "not json"));
    }
    msgs.push(Message::Tool {
        call_id: "call_2".into(),
        name: "weather".into(),
        content: "invalid arguments".into(),
        is_error: true,
    });
    let mut req = request(msgs);
    req.tools = Arc::from([tool("weather")]);
    model(&server).complete(&req).await.unwrap();
    let body = body_of(&server, 0).await;
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "weather", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "invalid arguments", "is_error": true},
            ]},
        ])
    );
    assert_eq!(
        body["tools"],
        json!([{"name": "weather", "description": "The weather tool", "input_schema": tool("weather").parameters}])
    );
    assert!(body.get("tool_choice").is_none());
}

#[tokio::test]
async fn tool_use_replies_become_tool_calls_in_order() {
    let server = answering(message(
        json!([
            {"type": "text", "text": "Checking both."},
            {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {"city": "Rome"}},
        ]),
        json!({"input_tokens": 5, "output_tokens": 9}),
    ))
    .await;
    let mut req = request([Message::user("Paris and Rome?")]);
    req.tools = Arc::from([tool("weather")]);
    let reply = model(&server).complete(&req).await.unwrap();
    assert_eq!(reply.content.as_deref(), Some("Checking both."));
    assert_eq!(
        reply.tool_calls,
        [
            ToolCall::raw("toolu_a", "weather", r#"{"city":"Paris"}"#),
            ToolCall::raw("toolu_b", "weather", r#"{"city":"Rome"}"#)
        ]
    );
}

#[tokio::test]
async fn tool_choice_maps_to_any_tool_and_none() {
    let m = Anthropic::new("http://127.0.0.1:9", None, "c").unwrap();
    let mut req = request([Message::user("hi")]);
    req.tools = Arc::from([tool("weather"), tool("news")]);
    req.tool_choice = ToolChoice::Required;
    assert_eq!(m.request_body(&req, false)["tool_choice"], json!({"type": "any"}));
    req.tool_choice = ToolChoice::Tool("news".into());
    assert_eq!(
        m.request_body(&req, false)["tool_choice"],
        json!({"type": "tool", "name": "news"})
    );
    req.tool_choice = ToolChoice::None;
    assert!(m.request_body(&req, false).get("tools").is_none());
}

#[tokio::test]
async fn structured_output_forces_a_respond_tool_and_returns_its_input_as_text() {
    let server = answering(message(
        json!([{"type": "tool_use", "id": "toolu_r", "name": "respond", "input": {"answer": 42}}]),
        json!({"input_tokens": 5, "output_tokens": 5}),
    ))
    .await;
    let schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]});
    let mut req = request([Message::user("6*7?")]);
    req.response_format = Some(Arc::new(schema.clone()));
    let reply = model(&server).complete(&req).await.unwrap();
    assert_eq!(reply.content.as_deref(), Some(r#"{"answer":42}"#));
    assert!(reply.tool_calls.is_empty());
    let body = body_of(&server, 0).await;
    assert_eq!(body["tools"][0]["name"], "respond");
    assert_eq!(body["tools"][0]["input_schema"], schema);
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": "respond"}));
}

#[tokio::test]
async fn long_system_prompts_and_tool_lists_get_cache_control_markers() {
    let m = Anthropic::new("http://127.0.0.1:9", None, "c").unwrap();
    let long = "Follow the house style. ".repeat(400);
    let mut req = request([
        Message::system("You are the orchestrator."),
        Message::system(long.as_str()),
        Message::user("go"),
    ]);
    req.tools = Arc::from([tool("weather"), tool("news")]);
    let body = m.request_body(&req, false);
    let system = body["system"].as_array().unwrap();
    assert!(system[0].get("cache_control").is_none());
    assert_eq!(system[1]["cache_control"], json!({"type": "ephemeral"}));
    // The tool list is short: no marker under the default threshold...
    assert!(body["tools"][1].get("cache_control").is_none());
    // ...but always with PromptCaching::Always, on the last tool only.
    let body = m.with_caching(PromptCaching::Always).request_body(&req, false);
    assert!(body["tools"][0].get("cache_control").is_none());
    assert_eq!(body["tools"][1]["cache_control"], json!({"type": "ephemeral"}));
    let short = request([Message::system("short"), Message::user("go")]);
    let body = Anthropic::new("http://127.0.0.1:9", None, "c")
        .unwrap()
        .request_body(&short, false);
    assert!(body["system"][0].get("cache_control").is_none());
}

fn ev(kind: &'static str, data: Value) -> (&'static str, String) {
    (kind, data.to_string())
}

fn streamed_reply() -> String {
    sse(&[
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-test",
                "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 0}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ev("ping", json!({"type": "ping"})),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "check."}}),
        ),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
        ),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        ev(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 40}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ])
}

#[tokio::test]
async fn streaming_reports_deltas_and_reassembles_text_tool_calls_and_usage() {
    let server = streaming(streamed_reply()).await;
    let mut req = request([Message::user("Paris?")]);
    req.tools = Arc::from([tool("weather")]);
    let (reply, deltas) = stream_call(&model(&server), &req).await;
    let reply = reply.unwrap();
    assert_eq!(reply.content.as_deref(), Some("Let me check."));
    assert_eq!(
        reply.tool_calls,
        [ToolCall::raw("toolu_a", "weather", r#"{"city": "Paris"}"#)]
    );
    assert_eq!(
        reply.usage,
        Usage {
            input_tokens: 1025,
            output_tokens: 40,
            cached_input_tokens: 1000,
            cache_write_input_tokens: 0,
            requests: 1
        }
    );
    assert_eq!(deltas.text(), "Let me check.");
    assert_eq!(deltas.arguments(0), r#"{"city": "Paris"}"#);
    assert_eq!(
        deltas.all()[2],
        ModelDelta::ToolCall {
            index: 0,
            name: Some("weather".into()),
            arguments: "".into()
        }
    );
    assert_eq!(body_of(&server, 0).await["stream"], true);
}

#[tokio::test]
async fn a_streamed_structured_reply_arrives_as_text_deltas() {
    let body = sse(&[
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "respond", "input": {}}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"answer\":"}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "42}"}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ]);
    let server = streaming(body).await;
    let mut req = request([Message::user("6*7?")]);
    req.response_format = Some(Arc::new(json!({"type": "object"})));
    let (reply, deltas) = stream_call(&model(&server), &req).await;
    let reply = reply.unwrap();
    assert_eq!(reply.content.as_deref(), Some(r#"{"answer":42}"#));
    assert!(reply.tool_calls.is_empty());
    assert_eq!(deltas.text(), r#"{"answer":42}"#);
}

async fn stream_error(body: String) -> ModelError {
    let server = streaming(body).await;
    model(&server)
        .complete_streaming(&request([Message::user("x")]), &|_| {})
        .await
        .unwrap_err()
}

#[tokio::test]
async fn an_overloaded_error_event_mid_stream_is_a_server_error() {
    let err = stream_error(sse(&[
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 5}}}),
        ),
        ev(
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
    ]))
    .await;
    assert_eq!(
        err,
        ModelError::Server {
            status: 529,
            message: "Overloaded".into()
        }
    );
}

#[tokio::test]
async fn a_stream_without_message_stop_is_truncated_and_garbage_is_invalid() {
    let truncated = stream_error(sse(&[ev(
        "message_start",
        json!({"type": "message_start", "message": {"usage": {"input_tokens": 5}}}),
    )]))
    .await;
    assert!(truncated.to_string().contains("truncated"), "{truncated}");
    let garbled = stream_error(sse(&[("content_block_delta", "{\"type\": \"content_bl".into())])).await;
    assert!(
        matches!(&garbled, ModelError::InvalidResponse { message } if message.contains("garbled")),
        "{garbled:?}"
    );
}

async fn failing(status: u16, body: Value, retry_after: Option<&str>) -> (MockServer, ModelError) {
    let server = MockServer::start().await;
    let mut resp = ResponseTemplate::new(status).set_body_json(body);
    if let Some(r) = retry_after {
        resp = resp.insert_header("retry-after", r);
    }
    Mock::given(method("POST")).respond_with(resp).mount(&server).await;
    let err = model(&server)
        .with_timeout(Duration::from_secs(5))
        .complete(&request([Message::user("x")]))
        .await
        .unwrap_err();
    (server, err)
}

fn api_error(kind: &str, msg: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": msg}})
}

#[tokio::test]
async fn http_errors_map_onto_typed_model_errors() {
    let (_s, e) = failing(401, api_error("authentication_error", "invalid x-api-key"), None).await;
    assert_eq!(
        e,
        ModelError::Auth {
            status: 401,
            message: "invalid x-api-key".into()
        }
    );
    let (_s, e) = failing(404, api_error("not_found_error", "model: claude-nope"), None).await;
    assert!(matches!(e, ModelError::ModelNotFound { .. }), "{e:?}");
    let (_s, e) = failing(
        400,
        api_error(
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
        ),
        None,
    )
    .await;
    assert!(matches!(e, ModelError::ContextLength { .. }), "{e:?}");
    let (s, e) = failing(529, api_error("overloaded_error", "Overloaded"), None).await;
    assert_eq!(
        e,
        ModelError::Server {
            status: 529,
            message: "Overloaded".into()
        }
    );
    assert_eq!(s.received_requests().await.unwrap().len(), 3, "overload is retried");
    let (s, e) = failing(429, api_error("rate_limit_error", "slow down"), Some("120")).await;
    assert_eq!(
        e,
        ModelError::RateLimited {
            retry_after_ms: Some(120_000)
        }
    );
    assert_eq!(
        s.received_requests().await.unwrap().len(),
        1,
        "a wait past the deadline is not taken"
    );
}

#[tokio::test]
async fn base_url_may_include_v1() {
    let a = Anthropic::new("http://h:1", None, "c").unwrap();
    let b = Anthropic::new("http://h:1/v1/", None, "c").unwrap();
    assert_eq!(a.url(), "http://h:1/v1/messages");
    assert_eq!(b.url(), a.url());
}
