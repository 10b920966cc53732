//! The OpenAI-compatible provider against a loopback server speaking Chat
//! Completions: what is sent, what is returned, streaming, and every error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    Deltas, answering, closed_port_url, dying_server, request, sse, stream_call, streaming, tool, tool_round_trip,
};
use serde_json::{Value, json};
use tinyagents_core::{Message, Model, ModelDelta, ModelError, ToolChoice, Usage};
use tinyagents_providers::{OpenAiCompatible, RetryPolicy};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn fast_retries(n: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries: n,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        jitter: true,
    }
}

fn model(server: &MockServer) -> OpenAiCompatible {
    OpenAiCompatible::new(format!("{}/v1", server.uri()), Some("sk-test".into()), "gpt-test")
        .unwrap()
        .with_retry(fast_retries(2))
}

fn completion(message: Value, usage: Value) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": usage,
    })
}

async fn body_of(server: &MockServer, n: usize) -> Value {
    let reqs: Vec<Request> = server.received_requests().await.unwrap();
    serde_json::from_slice(&reqs[n].body).unwrap()
}

async fn request_count(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

fn chunk(delta: Value) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
        .to_string()
}

#[tokio::test]
async fn chat_call_sends_model_messages_and_key_and_returns_text_and_usage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            json!({"role": "assistant", "content": "Bonjour"}),
            json!({"prompt_tokens": 20, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 16}}),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let m = model(&server);
    assert_eq!(m.id(), "gpt-test");
    let reply = m
        .complete(&request([
            Message::system("Be brief."),
            Message::user("Say hello in French"),
        ]))
        .await
        .unwrap();
    assert_eq!(reply.content.as_deref(), Some("Bonjour"));
    assert!(reply.tool_calls.is_empty());
    assert_eq!(
        reply.usage,
        Usage {
            input_tokens: 20,
            output_tokens: 3,
            cached_input_tokens: 16,
            cache_write_input_tokens: 0,
            requests: 1
        }
    );
    let body = body_of(&server, 0).await;
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello in French"}])
    );
    assert!(body.get("tools").is_none());
    assert!(body.get("stream").is_none());
}

#[tokio::test]
async fn assistant_tool_call_messages_are_sent_with_empty_content_never_null() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            json!({"role": "assistant", "content": "Sunny."}),
            json!({"prompt_tokens": 1, "completion_tokens": 1}),
        )))
        .mount(&server)
        .await;
    model(&server).complete(&request(tool_round_trip())).await.unwrap();
    let body = body_of(&server, 0).await;
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(msgs[2]["role"], "assistant");
    assert_eq!(msgs[2]["content"], "", "content must be an empty string, not null");
    assert_eq!(
        msgs[2]["tool_calls"],
        json!([{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}])
    );
    assert_eq!(
        msgs[3],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"})
    );
}

#[tokio::test]
async fn tools_and_each_tool_choice_are_sent_in_wire_form() {
    let m = OpenAiCompatible::new("http://127.0.0.1:9/v1", None, "m").unwrap();
    let mut req = request([Message::user("hi")]);
    req.tools = Arc::from([tool("weather")]);
    let body = m.request_body(&req, false);
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "weather");
    assert_eq!(body["tools"][0]["function"]["parameters"]["required"], json!(["city"]));
    assert!(
        body.get("tool_choice").is_none(),
        "auto is the server default and is not sent"
    );

    req.tool_choice = ToolChoice::Required;
    let named = json!({"type": "function", "function": {"name": "weather"}});
    assert_eq!(
        m.request_body(&req, false)["tool_choice"],
        named,
        "one required tool is forced by name"
    );
    req.tools = Arc::from([tool("weather"), tool("news")]);
    assert_eq!(m.request_body(&req, false)["tool_choice"], "required");
    req.tool_choice = ToolChoice::Tool("weather".into());
    assert_eq!(m.request_body(&req, false)["tool_choice"], named);
    req.tool_choice = ToolChoice::None;
    let body = m.request_body(&req, false);
    assert!(body.get("tools").is_none() && body.get("tool_choice").is_none());
}

#[tokio::test]
async fn parallel_tool_calls_come_back_in_order_with_their_ids() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "b", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}},
            ]}),
            json!({"prompt_tokens": 5, "completion_tokens": 9}),
        )))
        .mount(&server)
        .await;
    let mut req = request([Message::user("Paris and Rome?")]);
    req.tools = Arc::from([tool("weather")]);
    let reply = model(&server).complete(&req).await.unwrap();
    assert_eq!(reply.content, None);
    let calls: Vec<(&str, &str, &str)> = reply
        .tool_calls
        .iter()
        .map(|c| (&*c.id, &*c.name, &*c.arguments))
        .collect();
    assert_eq!(
        calls,
        [
            ("a", "weather", r#"{"city":"Paris"}"#),
            ("b", "weather", r#"{"city":"Rome"}"#)
        ]
    );
}

#[tokio::test]
async fn tool_calls_a_server_left_in_the_text_are_recovered() {
    // llama-cpp-python's default chat format ignores `tools`; a model trained
    // on the <tool_call> convention then writes the call as text.
    let server = MockServer::start().await;
    let text = "Checking.\n<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>\n<tool_call>{\"name\": \"launch\", \"arguments\": {}}</tool_call>";
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            json!({"role": "assistant", "content": text}),
            json!({"prompt_tokens": 5, "completion_tokens": 9}),
        )))
        .mount(&server)
        .await;
    let mut req = request([Message::user("Paris?")]);
    req.tools = Arc::from([tool("weather")]);
    let reply = model(&server).complete(&req).await.unwrap();
    assert_eq!(reply.tool_calls.len(), 1, "only offered tools are recovered: {reply:?}");
    assert_eq!(&*reply.tool_calls[0].name, "weather");
    assert_eq!(&*reply.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
    assert_eq!(
        reply.content.as_deref(),
        Some("Checking.\n\n<tool_call>{\"name\": \"launch\", \"arguments\": {}}</tool_call>")
    );
    // Without tools offered, text stays text.
    let reply = model(&server)
        .complete(&request([Message::user("Paris?")]))
        .await
        .unwrap();
    assert!(reply.tool_calls.is_empty());
}

#[tokio::test]
async fn structured_output_sends_the_schema_as_json_schema_response_format() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            json!({"role": "assistant", "content": "{\"answer\":42}"}),
            json!({"prompt_tokens": 5, "completion_tokens": 5}),
        )))
        .mount(&server)
        .await;
    let schema = json!({"title": "Answer", "type": "object", "properties": {"answer": {"type": "integer"}}});
    let mut req = request([Message::user("6*7?")]);
    req.response_format = Some(Arc::new(schema.clone()));
    req.max_output_tokens = Some(64);
    let reply = model(&server).complete(&req).await.unwrap();
    assert_eq!(reply.content.as_deref(), Some(r#"{"answer":42}"#));
    let body = body_of(&server, 0).await;
    assert_eq!(
        body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "Answer", "schema": schema, "strict": false}})
    );
    assert_eq!(body["max_tokens"], 64);
}

fn streamed_reply() -> String {
    sse(&[
        ("", chunk(json!({"role": "assistant", "content": ""}))),
        ("", chunk(json!({"content": "Let me "}))),
        ("", chunk(json!({"content": "check."}))),
        (
            "",
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}]}),
            ),
        ),
        (
            "",
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]})),
        ),
        (
            "",
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":"}}]}),
            ),
        ),
        (
            "",
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]})),
        ),
        (
            "",
            chunk(json!({"tool_calls": [{"index": 1, "function": {"arguments": "\"Rome\"}"}}]})),
        ),
        (
            "",
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}).to_string(),
        ),
        (
            "",
            json!({"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 12, "prompt_tokens_details": {"cached_tokens": 8}}}).to_string(),
        ),
        ("", "[DONE]".to_string()),
    ])
}

#[tokio::test]
async fn streaming_reports_deltas_and_reassembles_text_and_interleaved_tool_calls() {
    let server = streaming(streamed_reply()).await;
    let mut req = request([Message::user("Paris and Rome?")]);
    req.tools = Arc::from([tool("weather")]);
    let (reply, deltas) = stream_call(&model(&server), &req).await;
    let reply = reply.unwrap();

    assert_eq!(reply.content.as_deref(), Some("Let me check."));
    assert_eq!(reply.tool_calls.len(), 2);
    assert_eq!(
        (&*reply.tool_calls[0].id, &*reply.tool_calls[0].arguments),
        ("call_a", r#"{"city":"Paris"}"#)
    );
    assert_eq!(
        (&*reply.tool_calls[1].id, &*reply.tool_calls[1].arguments),
        ("call_b", r#"{"city":"Rome"}"#)
    );
    assert_eq!(
        reply.usage,
        Usage {
            input_tokens: 30,
            output_tokens: 12,
            cached_input_tokens: 8,
            cache_write_input_tokens: 0,
            requests: 1
        }
    );
    assert_eq!(deltas.text(), "Let me check.");
    assert_eq!(deltas.arguments(0), r#"{"city":"Paris"}"#);
    assert_eq!(deltas.arguments(1), r#"{"city":"Rome"}"#);
    assert!(deltas.all().contains(&ModelDelta::ToolCall {
        index: 1,
        name: Some("weather".into()),
        arguments: r#"{"city":"#.into()
    }));

    let body = body_of(&server, 0).await;
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn a_server_that_ignores_stream_true_still_yields_the_reply_and_its_deltas() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            json!({"role": "assistant", "content": "whole"}),
            json!({"prompt_tokens": 1, "completion_tokens": 1}),
        )))
        .mount(&server)
        .await;
    let deltas = Deltas::default();
    let d = deltas.clone();
    let reply = model(&server)
        .complete_streaming(&request([Message::user("x")]), &move |x| d.push(x))
        .await
        .unwrap();
    assert_eq!(reply.content.as_deref(), Some("whole"));
    assert_eq!(deltas.text(), "whole");
}

#[tokio::test]
async fn deltas_reach_the_harness_as_events_of_the_run_that_produced_them() {
    use tinyagents_core::{CollectingSink, EventKind, RunConfig};
    let body = sse(&[
        ("", chunk(json!({"content": "Hel"}))),
        ("", chunk(json!({"content": "lo"}))),
        (
            "",
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string(),
        ),
        ("", "[DONE]".to_string()),
    ]);
    let server = streaming(body).await;
    let agent = tinyagents_harness::Agent::builder("greeter")
        .model(model(&server))
        .build();
    let sink = CollectingSink::new();
    let out = agent
        .run_with(&RunConfig::new().sink(sink.clone()), "greet")
        .await
        .unwrap();
    assert_eq!(&*out.text, "Hello");
    let texts: Vec<String> = sink
        .events()
        .into_iter()
        .filter(|e| e.run_id == out.run.run_id)
        .filter_map(|e| match e.kind {
            EventKind::ModelDelta {
                delta: ModelDelta::Text { text },
                ..
            } => Some(text.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["Hel", "lo"]);
}

async fn failing(status: u16, body: &str) -> (MockServer, ModelError) {
    let server = answering(status, body, "application/json").await;
    let err = model(&server)
        .complete(&request([Message::user("x")]))
        .await
        .unwrap_err();
    (server, err)
}

#[tokio::test]
async fn http_401_and_403_are_auth_errors_and_not_retried() {
    for status in [401, 403] {
        let (server, err) = failing(
            status,
            r#"{"error": {"message": "bad key", "type": "invalid_request_error"}}"#,
        )
        .await;
        assert_eq!(
            err,
            ModelError::Auth {
                status,
                message: "bad key".into()
            }
        );
        assert_eq!(request_count(&server).await, 1);
    }
}

#[tokio::test]
async fn http_404_with_an_error_body_is_model_not_found() {
    let (_s, err) = failing(
        404,
        r#"{"error": {"message": "The model `gpt-test` does not exist", "code": "model_not_found"}}"#,
    )
    .await;
    match err {
        ModelError::ModelNotFound { model } => assert!(model.starts_with("gpt-test"), "{model}"),
        other => panic!("expected ModelNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn http_404_without_json_points_at_the_base_url() {
    let (_s, err) = failing(404, "Not Found").await;
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Other { .. }), "{err:?}");
    assert!(
        msg.contains("base URL") && msg.contains("/v1/chat/completions"),
        "{msg}"
    );
}

#[tokio::test]
async fn context_overflow_is_a_context_length_error() {
    let (_s, err) = failing(
        400,
        r#"{"error": {"message": "This model's maximum context length is 8192 tokens", "code": "context_length_exceeded"}}"#,
    )
    .await;
    assert!(matches!(err, ModelError::ContextLength { .. }), "{err:?}");
}

#[tokio::test]
async fn rate_limit_honours_retry_after_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            json!({"role": "assistant", "content": "ok"}),
            json!({"prompt_tokens": 1, "completion_tokens": 1}),
        )))
        .with_priority(2)
        .mount(&server)
        .await;
    let reply = model(&server).complete(&request([Message::user("x")])).await.unwrap();
    assert_eq!(reply.content.as_deref(), Some("ok"));
    assert_eq!(request_count(&server).await, 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_fails_at_once_with_the_wait() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&server)
        .await;
    let err = model(&server)
        .with_retry(RetryPolicy::retries(5))
        .with_timeout(Duration::from_secs(5))
        .complete(&request([Message::user("x")]))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ModelError::RateLimited {
            retry_after_ms: Some(30_000)
        }
    );
    assert_eq!(request_count(&server).await, 1, "no retry may end past the deadline");
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_until_success() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("overloaded"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            json!({"role": "assistant", "content": "third time"}),
            json!({"prompt_tokens": 1, "completion_tokens": 1}),
        )))
        .with_priority(2)
        .mount(&server)
        .await;
    let reply = model(&server).complete(&request([Message::user("x")])).await.unwrap();
    assert_eq!(reply.content.as_deref(), Some("third time"));
    assert_eq!(request_count(&server).await, 3);
    // Every attempt sent the same request.
    assert_eq!(body_of(&server, 0).await, body_of(&server, 2).await);
}

#[tokio::test]
async fn server_errors_stop_after_max_retries() {
    let (server, err) = failing(500, r#"{"error": {"message": "boom"}}"#).await;
    assert_eq!(
        err,
        ModelError::Server {
            status: 500,
            message: "boom".into()
        }
    );
    assert_eq!(request_count(&server).await, 3, "1 attempt + 2 retries");
}

#[tokio::test]
async fn connection_failures_are_retried_then_reported_as_transport_errors() {
    let m = OpenAiCompatible::new(closed_port_url().await, None, "m")
        .unwrap()
        .with_retry(fast_retries(1));
    let err = m.complete(&request([Message::user("x")])).await.unwrap_err();
    assert!(matches!(err, ModelError::Transport { .. }), "{err:?}");
}

#[tokio::test]
async fn a_success_status_with_a_non_json_body_is_an_invalid_response() {
    let (_s, err) = failing(200, "<html>proxy login</html>").await;
    match err {
        ModelError::InvalidResponse { message } => assert!(message.contains("proxy login"), "{message}"),
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    let err = model(&server)
        .with_timeout(Duration::from_millis(200))
        .complete(&request([Message::user("x")]))
        .await
        .unwrap_err();
    assert_eq!(err, ModelError::Timeout);
}

async fn stream_error(body: String) -> ModelError {
    let server = streaming(body).await;
    model(&server)
        .complete_streaming(&request([Message::user("x")]), &|_| {})
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_stream_that_stops_before_done_is_reported_truncated() {
    let err = stream_error(sse(&[("", chunk(json!({"content": "Hel"})))])).await;
    match err {
        ModelError::InvalidResponse { message } => assert!(message.contains("truncated"), "{message}"),
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
}

#[tokio::test]
async fn a_garbled_stream_chunk_is_an_invalid_response() {
    let err = stream_error(sse(&[
        ("", chunk(json!({"content": "Hel"}))),
        ("", "{\"choices\": [".into()),
    ]))
    .await;
    match err {
        ModelError::InvalidResponse { message } => assert!(message.contains("garbled"), "{message}"),
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
}

#[tokio::test]
async fn an_error_object_inside_the_stream_is_reported() {
    let err = stream_error(sse(&[("", json!({"error": {"message": "upstream died"}}).to_string())])).await;
    assert!(err.to_string().contains("upstream died"), "{err}");
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_is_a_transport_error() {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    let url = dying_server(head, vec![format!("data: {}\n\n", chunk(json!({"content": "Hel"})))]).await;
    let m = OpenAiCompatible::new(url, None, "m")
        .unwrap()
        .with_retry(RetryPolicy::none());
    let deltas = Deltas::default();
    let d = deltas.clone();
    let err = m
        .complete_streaming(&request([Message::user("x")]), &move |x| d.push(x))
        .await
        .unwrap_err();
    match err {
        ModelError::Transport { message } => assert!(message.contains("stream interrupted"), "{message}"),
        other => panic!("expected Transport, got {other:?}"),
    }
    assert_eq!(deltas.text(), "Hel", "tokens before the drop were reported");
}

#[tokio::test]
async fn base_urls_with_or_without_the_endpoint_path_resolve_alike() {
    let a = OpenAiCompatible::new("http://h:1/v1/", None, "m").unwrap();
    let b = OpenAiCompatible::new("http://h:1/v1/chat/completions", None, "m").unwrap();
    assert_eq!(a.url(), "http://h:1/v1/chat/completions");
    assert_eq!(a.url(), b.url());
    assert!(OpenAiCompatible::new("h:1/v1", None, "m").is_err());
}

// Against a real OpenAI-compatible server: llama.cpp's, from
// llama-cpp-python[server]==0.3.36. Run by scripts/llama-server-test.sh.

fn llama_server() -> OpenAiCompatible {
    let url = std::env::var("TINYAGENTS_LLAMA_SERVER")
        .expect("set TINYAGENTS_LLAMA_SERVER=http://127.0.0.1:PORT/v1 (scripts/llama-server-test.sh does)");
    OpenAiCompatible::new(url, None, "smollm2")
        .unwrap()
        .with_timeout(Duration::from_secs(120))
}

#[tokio::test]
#[ignore = "needs llama-cpp-python's server: scripts/llama-server-test.sh"]
async fn llama_server_answers_a_chat_call_and_a_streamed_call() {
    let m = llama_server();
    let mut req = request([Message::system("Be brief."), Message::user("Say hello.")]);
    req.max_output_tokens = Some(24);
    let reply = m.complete(&req).await.unwrap();
    eprintln!("chat: {reply:?}");
    assert!(reply.content.is_some());
    assert!(reply.usage.input_tokens > 0 && reply.usage.output_tokens > 0);

    let deltas = Deltas::default();
    let d = deltas.clone();
    let streamed = m.complete_streaming(&req, &move |x| d.push(x)).await.unwrap();
    eprintln!("stream: {} deltas, {streamed:?}", deltas.all().len());
    assert!(deltas.all().len() > 1);
    assert_eq!(deltas.text(), streamed.content.as_deref().unwrap_or(""));
}

#[tokio::test]
#[ignore = "needs llama-cpp-python's server: scripts/llama-server-test.sh"]
async fn llama_server_makes_a_forced_tool_call_and_accepts_its_result() {
    let m = llama_server();
    let mut req = request([Message::user("What is the weather in Paris?")]);
    req.tools = Arc::from([tool("weather")]);
    req.tool_choice = ToolChoice::Required;
    req.max_output_tokens = Some(64);
    let reply = m.complete(&req).await.unwrap();
    eprintln!("forced call: {reply:?}");
    assert_eq!(reply.tool_calls.len(), 1);
    assert_eq!(&*reply.tool_calls[0].name, "weather");
    let args: Value = serde_json::from_str(&reply.tool_calls[0].arguments).unwrap();
    assert!(args.is_object());

    // The call and its result go back: the assistant message carries
    // `content: ""`, which this server accepts (it rejects null with 422).
    let mut messages = req.messages.to_vec();
    messages.push(Message::Assistant {
        content: None,
        tool_calls: reply.tool_calls.clone(),
    });
    messages.push(Message::Tool {
        call_id: reply.tool_calls[0].id.clone(),
        name: "weather".into(),
        content: "18C, sunny".into(),
        is_error: false,
    });
    let mut follow = request(messages);
    follow.tools = req.tools.clone();
    follow.max_output_tokens = Some(32);
    let answer = m.complete(&follow).await.unwrap();
    eprintln!("after the tool result: {answer:?}");
    assert!(answer.content.is_some() || !answer.tool_calls.is_empty());
}
