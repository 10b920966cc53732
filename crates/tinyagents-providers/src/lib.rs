#![doc = include_str!("../README.md")]

/// `impl Model` for a provider with an `id` field and one method
/// `run(&self, request, Option<&DeltaFn>)` serving both plain and streaming
/// calls (the cassette and the local model).
macro_rules! impl_model_via_run {
    ($provider:ty) => {
        impl tinyagents_core::Model for $provider {
            fn id(&self) -> &str {
                &self.id
            }

            fn complete<'a>(
                &'a self,
                request: &'a tinyagents_core::ModelRequest,
            ) -> tinyagents_core::BoxFuture<'a, Result<tinyagents_core::ModelResponse, tinyagents_core::ModelError>>
            {
                Box::pin(self.run(request, None))
            }

            fn complete_streaming<'a>(
                &'a self,
                request: &'a tinyagents_core::ModelRequest,
                on_delta: &'a tinyagents_core::DeltaFn<'a>,
            ) -> tinyagents_core::BoxFuture<'a, Result<tinyagents_core::ModelResponse, tinyagents_core::ModelError>>
            {
                Box::pin(self.run(request, Some(on_delta)))
            }
        }
    };
}

pub mod anthropic;
pub mod cassette;
pub mod http;
#[cfg(feature = "local")]
pub mod local;
pub mod openai;
#[cfg(feature = "pull")]
pub mod pull;
pub mod scripted;

pub use anthropic::{Anthropic, AnthropicConfig};
pub use cassette::{CassetteError, CassetteModel};
pub use http::{ConfigError, HttpOptions, RetryPolicy};
pub use openai::{OpenAiCompatible, OpenAiConfig};
pub use scripted::ScriptedModel;

use tinyagents_core::{DeltaFn, ModelDelta, ModelResponse};

/// Reports a whole reply as deltas: its text, then each tool call's
/// arguments. Used when a reply arrives in one piece but the caller asked to
/// stream (a server that ignored `stream: true`, a replayed cassette).
pub fn replay_deltas(reply: &ModelResponse, on_delta: &DeltaFn<'_>) {
    if let Some(text) = &reply.content {
        on_delta(ModelDelta::Text { text: text.clone() });
    }
    for (i, call) in reply.tool_calls.iter().enumerate() {
        on_delta(ModelDelta::ToolCall {
            index: i as u32,
            name: Some(call.name.clone()),
            arguments: call.arguments.clone(),
        });
    }
}
