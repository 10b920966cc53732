//! Helpers shared by the harness integration tests.
#![allow(dead_code)]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tinyagents_core::{BoxFuture, Message, Model, ModelError, ModelRequest, ModelResponse};
use tinyagents_harness::{Agent, SubAgent};
use tinyagents_providers::ScriptedModel;

/// A tool named `noop` that answers "ok".
pub fn noop() -> tinyagents_core::SharedTool {
    tinyagents_core::tool_fn("noop", "does nothing", |_: serde_json::Value| async {
        Ok::<_, tinyagents_core::ToolError>("ok")
    })
}

/// The text of the newest message of a request.
pub fn last_text(req: &ModelRequest) -> String {
    req.messages
        .last()
        .and_then(Message::text)
        .unwrap_or_default()
        .to_string()
}

/// True when the newest message is a tool result (the model's turn after tools).
pub fn after_tools(req: &ModelRequest) -> bool {
    matches!(req.messages.last(), Some(Message::Tool { .. }))
}

/// A leaf agent answering `text` once.
pub fn leaf(name: &str, text: &str) -> Agent {
    Agent::builder(name)
        .model(ScriptedModel::cycle([ModelResponse::text(text)]))
        .build()
}

/// A model that calls `tool` with `input` on its first turn, then answers with
/// the tool result prefixed by `answer:`.
pub fn delegating_model(tool: &str, input: &str) -> ScriptedModel {
    let tool = tool.to_string();
    let input = input.to_string();
    ScriptedModel::from_fn(move |req| {
        if after_tools(req) {
            Ok(ModelResponse::text(format!("answer: {}", last_text(req))))
        } else {
            Ok(ScriptedModel::call(&tool, serde_json::json!({ "input": input })))
        }
    })
}

/// An orchestrator that delegates once to `child`.
pub fn delegator(name: &str, child: Agent) -> Agent {
    let tool = child.name().to_string();
    Agent::builder(name)
        .model(delegating_model(&tool, "go"))
        .subagent(SubAgent::new(child))
        .build()
}

/// A model whose turn `n` waits `delays[n]` (the last delay repeats) before
/// answering with `responses[n]`.
pub struct SlowModel {
    pub delays: Vec<Duration>,
    pub responses: Vec<ModelResponse>,
    pub calls: std::sync::atomic::AtomicUsize,
}

impl SlowModel {
    pub fn new(delays: Vec<Duration>, responses: Vec<ModelResponse>) -> Arc<Self> {
        Arc::new(Self {
            delays,
            responses,
            calls: Default::default(),
        })
    }
}

impl Model for SlowModel {
    fn id(&self) -> &str {
        "slow"
    }
    fn complete<'a>(&'a self, _req: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let delay = self.delays.get(n).or(self.delays.last()).copied().unwrap_or_default();
            tokio::time::sleep(delay).await;
            let mut r = self
                .responses
                .get(n)
                .or(self.responses.last())
                .cloned()
                .unwrap_or_default();
            for (i, c) in r.tool_calls.iter_mut().enumerate() {
                c.id = format!("slow_{n}_{i}").into();
            }
            Ok(r)
        })
    }
}
