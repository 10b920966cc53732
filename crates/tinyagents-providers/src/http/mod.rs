//! What the HTTP providers share: client options, the retry loop, the
//! mapping of HTTP failures onto [`ModelError`](tinyagents_core::ModelError), and the SSE event stream.
//!
//! # Why one deadline and not a timeout per attempt
//!
//! A call has one deadline ([`HttpOptions::timeout`], counted from the first
//! attempt). Each attempt gets what is left of it, and a retry whose wait
//! (backoff or the server's `Retry-After`) would end past the deadline is not
//! started: the call fails at once with the last error instead of sleeping
//! into a timeout. Retries therefore never stretch a call beyond what the
//! caller allowed, however many are configured. The harness bounds the call by
//! the run's own deadline as well, so a run's budget caps the retries too.
//!
//! # What is retried
//!
//! Rate limits (429), server errors (5xx, 529 overloaded), 408, connection
//! failures and timeouts, with exponential backoff and jitter
//! ([`RetryPolicy`]). Authentication, unknown models, bad requests and
//! malformed responses are not: retrying cannot fix them. Only the request is
//! retried, never a stream that has started to deliver tokens.

mod error;
mod retry;
mod sse;

/// The accessors and `with_*` setters every HTTP provider has, over its
/// `config: Arc<Config>` (with `temperature` and `http` fields) and its
/// `endpoint: JsonEndpoint`. Written once here, expanded in each provider.
macro_rules! http_provider_methods {
    ($config:ty) => {
        /// The configuration.
        pub fn config(&self) -> &$config {
            &self.config
        }

        /// The full endpoint URL.
        pub fn url(&self) -> &str {
            self.endpoint.url()
        }

        fn config_mut(&mut self) -> &mut $config {
            std::sync::Arc::make_mut(&mut self.config)
        }

        /// Sets the sampling temperature.
        #[must_use]
        pub fn with_temperature(mut self, t: f32) -> Self {
            self.config_mut().temperature = Some(t);
            self
        }

        /// Sets the retry policy.
        #[must_use]
        pub fn with_retry(mut self, retry: $crate::http::RetryPolicy) -> Self {
            self.config_mut().http.retry = retry;
            self
        }

        /// Sets the deadline of one call, retries and streaming included.
        #[must_use]
        pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.config_mut().http.timeout = timeout;
            self
        }

        /// The JSON body that would be sent for `request` (for debugging and tests).
        pub fn request_body(&self, request: &tinyagents_core::ModelRequest, stream: bool) -> serde_json::Value {
            wire::request_body(&self.config, request, stream)
        }
    };
}
pub(crate) use http_provider_methods;

/// `impl Model` for an HTTP provider with `call` and `call_streaming`
/// methods and a `config.model` id.
macro_rules! impl_http_model {
    ($provider:ty) => {
        impl tinyagents_core::Model for $provider {
            fn id(&self) -> &str {
                &self.config.model
            }

            fn complete<'a>(
                &'a self,
                request: &'a tinyagents_core::ModelRequest,
            ) -> tinyagents_core::BoxFuture<'a, Result<tinyagents_core::ModelResponse, tinyagents_core::ModelError>>
            {
                Box::pin(self.call(request))
            }

            fn complete_streaming<'a>(
                &'a self,
                request: &'a tinyagents_core::ModelRequest,
                on_delta: &'a tinyagents_core::DeltaFn<'a>,
            ) -> tinyagents_core::BoxFuture<'a, Result<tinyagents_core::ModelResponse, tinyagents_core::ModelError>>
            {
                Box::pin(self.call_streaming(request, on_delta))
            }
        }
    };
}
pub(crate) use impl_http_model;

pub(crate) use error::from_reqwest;
pub use error::{ConfigError, error_from_status, parse_retry_after};
pub use retry::RetryPolicy;
pub(crate) use retry::send_with_retry;
pub(crate) use sse::SseStream;

use std::time::Duration;

/// Transport options shared by the HTTP providers.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpOptions {
    /// Deadline of one model call, retries and streaming included.
    pub timeout: Duration,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Longest silence allowed between two chunks of a response.
    pub read_timeout: Duration,
    /// Retries of failed requests.
    pub retry: RetryPolicy,
    /// Extra headers sent with every request (e.g. `HTTP-Referer` for OpenRouter).
    pub headers: Vec<(String, String)>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            headers: Vec::new(),
        }
    }
}

impl HttpOptions {
    pub(crate) fn client(&self) -> Result<reqwest::Client, ConfigError> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &self.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| ConfigError::Header(format!("{k}: {e}")))?;
            let value =
                reqwest::header::HeaderValue::from_str(v).map_err(|e| ConfigError::Header(format!("{k}: {e}")))?;
            headers.insert(name, value);
        }
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .default_headers(headers)
            .user_agent(concat!("tinyagents/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))
    }
}

/// Joins a base URL and an endpoint path, accepting a base that already ends
/// with the path.
pub(crate) fn endpoint(base_url: &str, path: &str) -> Result<String, ConfigError> {
    let base = base_url.trim().trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(ConfigError::BaseUrl(base_url.to_string()));
    }
    if base.ends_with(path) {
        Ok(base.to_string())
    } else {
        Ok(format!("{base}{path}"))
    }
}

/// How a provider authenticates its requests.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Auth<'a> {
    /// `Authorization: Bearer KEY` (OpenAI-compatible servers).
    Bearer(&'a str),
    /// The key in a named header (Anthropic's `x-api-key`).
    Header(&'static str, &'a str),
}

/// One JSON endpoint of a provider: the client and the full URL. Both HTTP
/// providers post through it, so serializing the body once, the retry loop
/// under one deadline and reading the reply are written once.
#[derive(Clone, Debug)]
pub(crate) struct JsonEndpoint {
    url: String,
    client: reqwest::Client,
}

impl JsonEndpoint {
    /// An endpoint at `url` with a client built from `options`.
    pub(crate) fn new(url: String, options: &HttpOptions) -> Result<Self, ConfigError> {
        Ok(Self {
            url,
            client: options.client()?,
        })
    }

    /// The full URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Posts `body` with `extra` headers and `auth`, retrying per `retry`
    /// until `deadline`. Returns the successful response with its body unread.
    pub(crate) async fn post(
        &self,
        body: &serde_json::Value,
        extra: &[(&'static str, &str)],
        auth: Option<Auth<'_>>,
        retry: &RetryPolicy,
        deadline: tokio::time::Instant,
        model: &str,
    ) -> Result<reqwest::Response, tinyagents_core::ModelError> {
        let body = json_bytes(body)?;
        let build = || {
            let mut rb = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            for (name, value) in extra {
                rb = rb.header(*name, *value);
            }
            match auth {
                Some(Auth::Bearer(key)) => rb.bearer_auth(key),
                Some(Auth::Header(name, key)) => rb.header(name, key),
                None => rb,
            }
        };
        send_with_retry(build, retry, deadline, model).await
    }
}

/// Reads a whole response body before `deadline`.
pub(crate) async fn read_body(
    resp: reqwest::Response,
    deadline: tokio::time::Instant,
) -> Result<bytes::Bytes, tinyagents_core::ModelError> {
    tokio::time::timeout_at(deadline, resp.bytes())
        .await
        .map_err(|_| tinyagents_core::ModelError::Timeout)?
        .map_err(|e| from_reqwest(&e))
}

/// A request body as bytes, serialized once and cloned cheaply per attempt.
pub(crate) fn json_bytes(body: &serde_json::Value) -> Result<bytes::Bytes, tinyagents_core::ModelError> {
    serde_json::to_vec(body)
        .map(bytes::Bytes::from)
        .map_err(|e| tinyagents_core::ModelError::Other {
            message: format!("cannot serialize the request: {e}"),
        })
}

/// The start of a body, for error messages.
pub(crate) fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < text.len() { "…" } else { "" };
    format!("{:?}{cut}", &text[..end])
}
