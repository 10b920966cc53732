//! Helpers shared by the provider tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tinyagents_core::{
    Message, Model, ModelDelta, ModelError, ModelRequest, ModelResponse, RunId, ToolCall, ToolChoice, ToolSpec,
};
use tokio::io::AsyncWriteExt;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A request with these messages and nothing else.
pub fn request(messages: impl IntoIterator<Item = Message>) -> ModelRequest {
    ModelRequest {
        agent: "tester".into(),
        run_id: RunId::new(),
        depth: 0,
        turn: 0,
        messages: messages.into_iter().collect(),
        tools: Arc::from([]),
        tool_choice: ToolChoice::Auto,
        response_format: None,
        max_output_tokens: None,
    }
}

/// A conversation that has been through one tool call.
pub fn tool_round_trip() -> Vec<Message> {
    vec![
        Message::system("You are terse."),
        Message::user("Weather in Paris?"),
        Message::Assistant {
            content: None,
            tool_calls: vec![ToolCall::raw("call_1", "weather", r#"{"city":"Paris"}"#)],
        },
        Message::Tool {
            call_id: "call_1".into(),
            name: "weather".into(),
            content: "18C, sunny".into(),
            is_error: false,
        },
    ]
}

/// A tool spec with one string argument.
pub fn tool(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: format!("The {name} tool").into(),
        parameters: Arc::new(serde_json::json!({
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        })),
    }
}

/// Collects deltas reported by a streaming call.
#[derive(Clone, Default)]
pub struct Deltas(Arc<Mutex<Vec<ModelDelta>>>);

impl Deltas {
    pub fn push(&self, d: ModelDelta) {
        self.0.lock().unwrap().push(d);
    }

    pub fn all(&self) -> Vec<ModelDelta> {
        self.0.lock().unwrap().clone()
    }

    /// Concatenated text deltas.
    pub fn text(&self) -> String {
        self.all()
            .iter()
            .filter_map(|d| match d {
                ModelDelta::Text { text } => Some(text.to_string()),
                ModelDelta::ToolCall { .. } => None,
            })
            .collect()
    }

    /// Concatenated argument deltas of tool call `index`.
    pub fn arguments(&self, index: u32) -> String {
        self.all()
            .iter()
            .filter_map(|d| match d {
                ModelDelta::ToolCall {
                    index: i, arguments, ..
                } if *i == index => Some(arguments.to_string()),
                _ => None,
            })
            .collect()
    }
}

/// An SSE body from `data:` payloads (and optional event names).
pub fn sse(events: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (event, data) in events {
        if !event.is_empty() {
            out.push_str(&format!("event: {event}\n"));
        }
        out.push_str(&format!("data: {data}\n\n"));
    }
    out
}

/// A loopback server that answers one connection with `head` and `body`
/// chunks written raw, then drops the connection (to simulate a server dying
/// mid-stream). Returns its base URL.
pub async fn dying_server(head: &'static str, chunks: Vec<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((mut sock, _)) = listener.accept().await {
            read_request(&mut sock).await;
            let _ = sock.write_all(head.as_bytes()).await;
            for c in chunks {
                let _ = sock.write_all(format!("{:x}\r\n{c}\r\n", c.len()).as_bytes()).await;
            }
            let _ = sock.flush().await;
            // Dropped without the terminating zero-length chunk.
        }
    });
    format!("http://{addr}")
}

/// A loopback address where nothing listens.
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Reads one HTTP request (head and `content-length` body) from `sock`.
async fn read_request(sock: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let Ok(n) = sock.read(&mut buf).await else { return };
        if n == 0 {
            return;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + len {
                return;
            }
        }
    }
}

/// A loopback server that answers every POST with `status` and `body`,
/// served as `content_type`.
pub async fn answering(status: u16, body: impl Into<String>, content_type: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).set_body_raw(body.into(), content_type))
        .mount(&server)
        .await;
    server
}

/// A loopback server that streams `body` (server-sent events) to every POST.
pub async fn streaming(body: String) -> MockServer {
    answering(200, body, "text/event-stream").await
}

/// Calls `model` in streaming mode and collects the deltas it reports.
pub async fn stream_call(model: &impl Model, request: &ModelRequest) -> (Result<ModelResponse, ModelError>, Deltas) {
    let deltas = Deltas::default();
    let d = deltas.clone();
    let reply = model.complete_streaming(request, &move |x| d.push(x)).await;
    (reply, deltas)
}
