//! OpenAI-compatible Chat Completions (`POST {base_url}/chat/completions`).
//!
//! One provider covers OpenAI and the servers that speak its wire format:
//! Ollama, vLLM, llama.cpp's server, LM Studio, OpenRouter, Groq, DeepSeek.
//! Point [`OpenAiCompatible::new`] at the base URL (the part before
//! `/chat/completions`, usually ending in `/v1`).
//!
//! What the provider does for you:
//! * **Streaming**: [`Model::complete_streaming`](tinyagents_core::Model::complete_streaming) sends `stream: true` and
//!   reports text and tool-call argument pieces as they arrive; the reply it
//!   returns is reassembled from them and equals what `complete` returns.
//! * **Tools**: parallel tool calls are kept in order; `ToolChoice::Required`
//!   with a single tool is sent as a named choice (servers that ignore
//!   `"required"` or `"auto"`, such as llama-cpp-python's default chat
//!   format, honour a named one); see [`RequiredToolChoice`].
//! * **Structured output**: `ModelRequest::response_format` becomes
//!   `response_format: {type: json_schema, json_schema: {name, schema, strict}}`.
//! * **Compatibility**: assistant messages that only call tools are sent with
//!   `content: ""`, never `null`, which some servers reject (422).
//! * **Usage**: prompt, completion and cached tokens; the harness prices them
//!   by [`Model::id`](tinyagents_core::Model::id), which is the configured model id.
//! * **Errors** are typed (see [`crate::http`]) and retried when retrying can help.
//!
//! ```no_run
//! use tinyagents_providers::OpenAiCompatible;
//!
//! let model = OpenAiCompatible::new("http://127.0.0.1:11434/v1", None, "qwen2.5:0.5b")?
//!     .with_temperature(0.2);
//! # Ok::<(), tinyagents_providers::http::ConfigError>(())
//! ```

mod stream;
mod wire;

use std::sync::Arc;

use tinyagents_core::{DeltaFn, ModelError, ModelRequest, ModelResponse};
use tokio::time::Instant;

use crate::http::{
    Auth, ConfigError, HttpOptions, JsonEndpoint, SseStream, endpoint, http_provider_methods, impl_http_model,
    read_body,
};

/// Which field carries the output-token cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaxTokensField {
    /// `max_tokens`: understood by every compatible server.
    #[default]
    MaxTokens,
    /// `max_completion_tokens`: required by OpenAI's reasoning models.
    MaxCompletionTokens,
}

/// How `ToolChoice::Required` is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RequiredToolChoice {
    /// A named choice when exactly one tool is offered, `"required"` otherwise.
    #[default]
    NamedWhenSingle,
    /// Always `"required"`.
    Required,
}

/// Configuration of an [`OpenAiCompatible`] model.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenAiConfig {
    /// Base URL, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Bearer token; `None` for local servers that need none.
    pub api_key: Option<String>,
    /// Model id sent to the server and used for pricing.
    pub model: String,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Sampling seed (servers that support it become reproducible).
    pub seed: Option<u64>,
    /// Default output-token cap when the request sets none.
    pub max_tokens: Option<u32>,
    /// Which field carries the cap.
    pub max_tokens_field: MaxTokensField,
    /// `parallel_tool_calls`, sent only when set and tools are offered.
    pub parallel_tool_calls: Option<bool>,
    /// Recover tool calls that a server left in the text as
    /// `<tool_call>{"name": …, "arguments": …}</tool_call>` (servers whose
    /// chat format ignores `tools`, e.g. llama-cpp-python's default, let
    /// models trained on that convention write calls as text). Only names
    /// of offered tools are recovered. On by default.
    pub text_tool_calls: bool,
    /// `strict` of the JSON-schema response format (OpenAI's strict mode
    /// requires every property to be required and `additionalProperties: false`).
    pub strict_schema: bool,
    /// How `ToolChoice::Required` is sent.
    pub required_tool_choice: RequiredToolChoice,
    /// Ask for usage in streams (`stream_options.include_usage`).
    pub stream_usage: bool,
    /// Transport: timeouts, retries, extra headers.
    pub http: HttpOptions,
}

impl OpenAiConfig {
    /// OpenAI's own base URL.
    pub const OPENAI_BASE_URL: &'static str = "https://api.openai.com/v1";

    /// A configuration with defaults for everything but the endpoint and model.
    pub fn new(base_url: impl Into<String>, api_key: Option<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            model: model.into(),
            temperature: None,
            seed: None,
            max_tokens: None,
            max_tokens_field: MaxTokensField::default(),
            parallel_tool_calls: None,
            text_tool_calls: true,
            strict_schema: false,
            required_tool_choice: RequiredToolChoice::default(),
            stream_usage: true,
            http: HttpOptions::default(),
        }
    }
}

/// A model behind an OpenAI-compatible Chat Completions endpoint.
#[derive(Clone, Debug)]
pub struct OpenAiCompatible {
    config: Arc<OpenAiConfig>,
    endpoint: JsonEndpoint,
}

impl OpenAiCompatible {
    /// A model at `base_url` (the URL before `/chat/completions`).
    pub fn new(
        base_url: impl Into<String>,
        api_key: Option<String>,
        model: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        Self::from_config(OpenAiConfig::new(base_url, api_key, model))
    }

    /// A model from a full configuration.
    pub fn from_config(config: OpenAiConfig) -> Result<Self, ConfigError> {
        let endpoint = JsonEndpoint::new(endpoint(&config.base_url, "/chat/completions")?, &config.http)?;
        Ok(Self {
            config: Arc::new(config),
            endpoint,
        })
    }

    http_provider_methods!(OpenAiConfig);

    async fn send(&self, body: &serde_json::Value, deadline: Instant) -> Result<reqwest::Response, ModelError> {
        let auth = self.config.api_key.as_deref().map(Auth::Bearer);
        let config = &self.config;
        self.endpoint
            .post(body, &[], auth, &config.http.retry, deadline, &config.model)
            .await
    }

    async fn call(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let deadline = Instant::now() + self.config.http.timeout;
        let body = wire::request_body(&self.config, request, false);
        let resp = self.send(&body, deadline).await?;
        let bytes = read_body(resp, deadline).await?;
        let reply = wire::parse_response(&bytes)?;
        Ok(self.recover_calls(request, reply))
    }

    fn recover_calls(&self, request: &ModelRequest, reply: ModelResponse) -> ModelResponse {
        if self.config.text_tool_calls {
            wire::recover_text_tool_calls(request, reply)
        } else {
            reply
        }
    }

    async fn call_streaming(
        &self,
        request: &ModelRequest,
        on_delta: &DeltaFn<'_>,
    ) -> Result<ModelResponse, ModelError> {
        let deadline = Instant::now() + self.config.http.timeout;
        let body = wire::request_body(&self.config, request, true);
        let resp = self.send(&body, deadline).await?;
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            // A server that ignored `stream: true` answers with one JSON reply.
            let bytes = read_body(resp, deadline).await?;
            let reply = wire::parse_response(&bytes)?;
            crate::replay_deltas(&reply, on_delta);
            return Ok(self.recover_calls(request, reply));
        }
        let reply = stream::read(SseStream::new(resp.bytes_stream(), Some(deadline)), on_delta).await?;
        Ok(self.recover_calls(request, reply))
    }
}

/// Reassembles a Chat Completions SSE body given as byte chunks, reporting
/// deltas as they are parsed. This is what streaming calls run on the
/// response body; it is public for benchmarks and for tools that read
/// recorded streams.
pub async fn decode_stream<S, B, E>(bytes: S, on_delta: &DeltaFn<'_>) -> Result<ModelResponse, ModelError>
where
    S: futures::Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    stream::read(SseStream::new(bytes, None), on_delta).await
}

impl_http_model!(OpenAiCompatible);
