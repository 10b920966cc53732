//! Anthropic's Messages API, native (`POST {base_url}/v1/messages`).
//!
//! The transcript maps onto the Messages API as follows:
//! * system messages become `system` blocks (in order, wherever they were);
//! * assistant tool calls become `tool_use` blocks and tool results
//!   `tool_result` blocks (`is_error` kept); consecutive messages of one role
//!   are merged, since the API wants user and assistant turns to alternate;
//! * `ToolChoice::Required` is `{"type": "any"}`, a named tool `{"type": "tool"}`;
//! * structured output: the requested schema becomes the input schema of a
//!   `respond` tool the model must call, and the call's input is returned as
//!   the reply text (streamed as text deltas too);
//! * prompt caching: a `cache_control` marker goes on the last system block
//!   and on the last tool when their text is long enough to be worth caching
//!   ([`PromptCaching`]); usage reports cache reads (`cached_input_tokens`)
//!   and writes (`cache_write_input_tokens`), both counted in `input_tokens`.
//!
//! ```no_run
//! use tinyagents_providers::Anthropic;
//!
//! let key = std::env::var("ANTHROPIC_API_KEY").ok();
//! let model = Anthropic::new(Anthropic::BASE_URL, key, "claude-haiku-4-5")?;
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

/// When `cache_control` markers are added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptCaching {
    /// Never.
    Off,
    /// On the system prompt and the tool list when their text has at least
    /// `min_chars` characters (the API caches only prompts of 1024+ tokens,
    /// about 4000 characters, on most models).
    Auto {
        /// Threshold in characters.
        min_chars: usize,
    },
    /// Always (when there is a system prompt or a tool).
    Always,
}

impl Default for PromptCaching {
    fn default() -> Self {
        Self::Auto { min_chars: 4000 }
    }
}

/// Configuration of an [`Anthropic`] model.
#[derive(Clone, Debug, PartialEq)]
pub struct AnthropicConfig {
    /// Base URL, `https://api.anthropic.com` by default.
    pub base_url: String,
    /// API key (`x-api-key`).
    pub api_key: Option<String>,
    /// Model id sent to the API and used for pricing.
    pub model: String,
    /// `anthropic-version` header.
    pub version: String,
    /// `max_tokens` when the request sets no cap (the API requires one).
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// `cache_control` markers.
    pub caching: PromptCaching,
    /// Name of the tool that carries structured output.
    pub respond_tool: String,
    /// Transport: timeouts, retries, extra headers (e.g. `anthropic-beta`).
    pub http: HttpOptions,
}

impl AnthropicConfig {
    /// A configuration with defaults for everything but the endpoint and model.
    pub fn new(base_url: impl Into<String>, api_key: Option<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            model: model.into(),
            version: "2023-06-01".into(),
            max_tokens: 4096,
            temperature: None,
            caching: PromptCaching::default(),
            respond_tool: "respond".into(),
            http: HttpOptions::default(),
        }
    }
}

/// A model behind Anthropic's Messages API.
#[derive(Clone, Debug)]
pub struct Anthropic {
    config: Arc<AnthropicConfig>,
    endpoint: JsonEndpoint,
}

impl Anthropic {
    /// Anthropic's own base URL.
    pub const BASE_URL: &'static str = "https://api.anthropic.com";

    /// A model at `base_url` (the URL before `/v1/messages`).
    pub fn new(
        base_url: impl Into<String>,
        api_key: Option<String>,
        model: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        Self::from_config(AnthropicConfig::new(base_url, api_key, model))
    }

    /// A model from a full configuration.
    pub fn from_config(config: AnthropicConfig) -> Result<Self, ConfigError> {
        let base = config.base_url.trim().trim_end_matches('/');
        let url = if base.ends_with("/v1") {
            endpoint(base, "/messages")?
        } else {
            endpoint(base, "/v1/messages")?
        };
        let endpoint = JsonEndpoint::new(url, &config.http)?;
        Ok(Self {
            config: Arc::new(config),
            endpoint,
        })
    }

    http_provider_methods!(AnthropicConfig);

    /// Sets when `cache_control` markers are added.
    #[must_use]
    pub fn with_caching(mut self, caching: PromptCaching) -> Self {
        self.config_mut().caching = caching;
        self
    }

    async fn send(&self, body: &serde_json::Value, deadline: Instant) -> Result<reqwest::Response, ModelError> {
        let auth = self.config.api_key.as_deref().map(|key| Auth::Header("x-api-key", key));
        let config = &self.config;
        let version = [("anthropic-version", config.version.as_str())];
        self.endpoint
            .post(body, &version, auth, &config.http.retry, deadline, &config.model)
            .await
    }

    async fn call(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let deadline = Instant::now() + self.config.http.timeout;
        let body = wire::request_body(&self.config, request, false);
        let resp = self.send(&body, deadline).await?;
        let bytes = read_body(resp, deadline).await?;
        wire::parse_response(&bytes, &self.config.respond_tool, &self.config.model)
    }

    async fn call_streaming(
        &self,
        request: &ModelRequest,
        on_delta: &DeltaFn<'_>,
    ) -> Result<ModelResponse, ModelError> {
        let deadline = Instant::now() + self.config.http.timeout;
        let body = wire::request_body(&self.config, request, true);
        let resp = self.send(&body, deadline).await?;
        let events = SseStream::new(resp.bytes_stream(), Some(deadline));
        stream::read(events, &self.config.respond_tool, &self.config.model, on_delta).await
    }
}

/// Reassembles a Messages API SSE body given as byte chunks, reporting
/// deltas as they are parsed (public for benchmarks and recorded streams).
pub async fn decode_stream<S, B, E>(bytes: S, on_delta: &DeltaFn<'_>) -> Result<ModelResponse, ModelError>
where
    S: futures::Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    stream::read(SseStream::new(bytes, None), "respond", "", on_delta).await
}

impl_http_model!(Anthropic);
