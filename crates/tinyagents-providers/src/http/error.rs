//! Mapping HTTP failures onto [`ModelError`].

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tinyagents_core::ModelError;

/// A provider could not be configured.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The base URL is not an `http://` or `https://` URL.
    #[error("invalid base URL {0:?}: expected http://… or https://…")]
    BaseUrl(String),
    /// An extra header has an invalid name or value.
    #[error("invalid header {0}")]
    Header(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The longest provider message kept in an error.
const MAX_MESSAGE: usize = 600;

fn shorten(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The human part of an error body: `error.message` (OpenAI, Anthropic),
/// `detail` (FastAPI servers), `message`, or the raw text.
pub(crate) fn body_message(body: &str) -> (String, Option<serde_json::Value>) {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => {
            let msg = v
                .pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .or_else(|| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .or_else(|| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
                .or_else(|| {
                    v.get("detail")
                        .map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_string))
                })
                .unwrap_or_else(|| body.to_string());
            (shorten(&msg), Some(v))
        }
        Err(_) => (shorten(body), None),
    }
}

/// The wait a 429 or 503 asks for, in milliseconds: `retry-after-ms`, then
/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<u64> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(ms.round() as u64);
    }
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).round() as u64);
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64,
    )
}

fn mentions_context_length(message: &str, json: Option<&serde_json::Value>) -> bool {
    let code = json
        .and_then(|v| v.pointer("/error/code").or_else(|| v.pointer("/error/type")))
        .and_then(|c| c.as_str())
        .unwrap_or("");
    let m = message.to_ascii_lowercase();
    code == "context_length_exceeded"
        || m.contains("context length")
        || m.contains("context window")
        || m.contains("maximum context")
        || m.contains("prompt is too long")
        || m.contains("exceed_context_size")
}

/// Maps a non-success HTTP response onto a [`ModelError`].
///
/// 401/403 → `Auth`; 404 with a JSON error body → `ModelNotFound` (a 404
/// whose body is not JSON is most likely a wrong base URL and says so);
/// 408 → `Timeout`; 429 → `RateLimited` with the `Retry-After` wait; 5xx
/// and 529 → `Server`; 400/413 about the context window → `ContextLength`;
/// anything else → `Other` with the status and the provider's message.
pub fn error_from_status(status: u16, headers: &HeaderMap, body: &str, model: &str, url: &str) -> ModelError {
    let (message, json) = body_message(body);
    match status {
        401 | 403 => ModelError::Auth { status, message },
        404 if json.is_some() => ModelError::ModelNotFound {
            model: format!("{model} ({message})"),
        },
        404 => ModelError::Other {
            message: format!("HTTP 404 from {url}: {message} (is the base URL right?)"),
        },
        408 => ModelError::Timeout,
        429 => ModelError::RateLimited {
            retry_after_ms: parse_retry_after(headers),
        },
        400 | 413 | 422 if mentions_context_length(&message, json.as_ref()) => ModelError::ContextLength { message },
        500..=599 => ModelError::Server { status, message },
        _ => {
            let reason = StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error");
            ModelError::Other {
                message: format!("HTTP {status} {reason}: {message}"),
            }
        }
    }
}

/// Maps a transport failure onto a [`ModelError`].
pub(crate) fn from_reqwest(e: &reqwest::Error) -> ModelError {
    if e.is_timeout() {
        return ModelError::Timeout;
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    ModelError::Transport { message }
}
