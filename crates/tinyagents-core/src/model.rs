//! The `Model` trait: one async completion call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::ModelError;
use crate::ids::RunId;
use crate::message::{ToolCall, Transcript};
use crate::tool::ToolSpec;
use crate::usage::Usage;

/// A boxed, sendable future; the return type of object-safe async methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the model may use tools on this call.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// Exactly this tool.
    Tool(String),
}

/// One completion request. Cheap to clone: the transcript and tool list are
/// shared, never copied.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelRequest {
    /// Name of the agent making the call.
    pub agent: Arc<str>,
    /// The run making the call.
    pub run_id: RunId,
    /// Its depth.
    pub depth: u32,
    /// Turn number within the run, from 0.
    pub turn: u32,
    /// The conversation so far.
    pub messages: Transcript,
    /// Tools the model may call.
    pub tools: Arc<[ToolSpec]>,
    /// Tool-use constraint.
    #[serde(default)]
    pub tool_choice: ToolChoice,
    /// A JSON Schema the reply must match (structured output).
    #[serde(default)]
    pub response_format: Option<Arc<serde_json::Value>>,
    /// Cap on generated tokens.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
}

/// What a model returned.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelResponse {
    /// Text, if any.
    #[serde(default)]
    pub content: Option<Arc<str>>,
    /// Tool calls, if any.
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    /// Tokens used by this call.
    #[serde(default)]
    pub usage: Usage,
}

impl ModelResponse {
    /// A text-only reply.
    pub fn text(text: impl Into<Arc<str>>) -> Self {
        Self {
            content: Some(text.into()),
            ..Self::default()
        }
    }

    /// A reply that calls tools.
    pub fn tool_calls(calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls: calls,
            ..Self::default()
        }
    }

    /// Sets the usage.
    #[must_use]
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }
}

/// A language model.
///
/// `complete` borrows the request: the harness keeps ownership of the
/// transcript, and a model that wants to keep it clones the request (O(1)).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a model",
    label = "implement `Model` (id + complete), or use `ScriptedModel` from tinyagents-providers in tests"
)]
pub trait Model: Send + Sync + 'static {
    /// The model id, used for pricing and shown in events.
    fn id(&self) -> &str;
    /// Runs one completion.
    fn complete<'a>(&'a self, request: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>>;

    /// Runs one completion, reporting text as it is generated. The returned
    /// response is the whole reply, exactly as [`complete`](Self::complete)
    /// would return it. The default streams nothing and calls `complete`.
    fn complete_streaming<'a>(
        &'a self,
        request: &'a ModelRequest,
        on_delta: &'a DeltaFn<'a>,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        let _ = on_delta;
        self.complete(request)
    }
}

/// Receives streamed pieces of a reply.
pub type DeltaFn<'a> = dyn Fn(ModelDelta) + Send + Sync + 'a;

/// A streamed piece of a model reply.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ModelDelta {
    /// Generated text.
    Text {
        /// The new text.
        text: Arc<str>,
    },
    /// Part of a tool call's arguments (providers stream them in pieces).
    ToolCall {
        /// Position of the call in the reply.
        index: u32,
        /// The tool's name, once known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<Arc<str>>,
        /// The new argument text.
        arguments: Arc<str>,
    },
}

/// A shared model.
pub type SharedModel = Arc<dyn Model>;
