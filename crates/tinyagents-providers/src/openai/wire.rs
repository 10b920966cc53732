//! The Chat Completions wire format: request bodies and reply parsing.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use tinyagents_core::{Message, ModelError, ModelRequest, ModelResponse, ToolCall, ToolChoice, Usage};

use crate::http::preview;

use super::{MaxTokensField, OpenAiConfig, RequiredToolChoice};

fn message(m: &Message) -> Value {
    match m {
        Message::System { content } => json!({"role": "system", "content": &**content}),
        Message::User { content } => json!({"role": "user", "content": &**content}),
        Message::Assistant { content, tool_calls } => {
            // Some servers reject `content: null` next to tool calls; an
            // empty string is accepted everywhere.
            let mut v = json!({"role": "assistant", "content": content.as_deref().unwrap_or("")});
            if !tool_calls.is_empty() {
                v["tool_calls"] = tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": &*c.id,
                            "type": "function",
                            "function": {"name": &*c.name, "arguments": &*c.arguments},
                        })
                    })
                    .collect();
            }
            v
        }
        Message::Tool { call_id, content, .. } => {
            json!({"role": "tool", "tool_call_id": &**call_id, "content": &**content})
        }
        Message::Steering { .. } => json!({"role": "user", "content": m.steering_wire_text()}),
    }
}

/// A schema name OpenAI accepts (`^[a-zA-Z0-9_-]{1,64}$`): the schema's
/// `title` when it fits, otherwise `response`.
fn schema_name(schema: &Value) -> String {
    schema
        .get("title")
        .and_then(Value::as_str)
        .filter(|t| {
            !t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .unwrap_or("response")
        .to_string()
}

/// The JSON body of a request.
pub(crate) fn request_body(cfg: &OpenAiConfig, req: &ModelRequest, stream: bool) -> Value {
    let mut body = json!({
        "model": cfg.model,
        "messages": req.messages.iter().map(message).collect::<Vec<_>>(),
    });
    if !req.tools.is_empty() && req.tool_choice != ToolChoice::None {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {"name": &*t.name, "description": &*t.description, "parameters": &*t.parameters},
                })
            })
            .collect();
        let named = |name: &str| json!({"type": "function", "function": {"name": name}});
        match &req.tool_choice {
            ToolChoice::Auto | ToolChoice::None => {}
            ToolChoice::Required => {
                body["tool_choice"] = match (cfg.required_tool_choice, &*req.tools) {
                    (RequiredToolChoice::NamedWhenSingle, [only]) => named(&only.name),
                    _ => json!("required"),
                };
            }
            ToolChoice::Tool(name) => body["tool_choice"] = named(name),
        }
        if let Some(p) = cfg.parallel_tool_calls {
            body["parallel_tool_calls"] = json!(p);
        }
    }
    if let Some(schema) = &req.response_format {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": schema_name(schema), "schema": &**schema, "strict": cfg.strict_schema},
        });
    }
    if let Some(max) = req.max_output_tokens.or(cfg.max_tokens) {
        let field = match cfg.max_tokens_field {
            MaxTokensField::MaxTokens => "max_tokens",
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
        };
        body[field] = json!(max);
    }
    if let Some(t) = cfg.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(seed) = cfg.seed {
        body["seed"] = json!(seed);
    }
    if stream {
        body["stream"] = json!(true);
        if cfg.stream_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
    }
    body
}

#[derive(Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl WireUsage {
    pub(crate) fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
            cached_input_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            ..Usage::call(0, 0)
        }
    }
}

/// Tool arguments: a JSON string on the wire, though some servers send an object.
pub(crate) fn arguments_text(v: Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

/// An error object sent with a success status (some servers do).
pub(crate) fn embedded_error(error: &Value) -> ModelError {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| error.to_string(), str::to_string);
    ModelError::Other {
        message: format!("provider error: {message}"),
    }
}

/// Turns empty strings into `None`.
pub(crate) fn non_empty(s: Option<String>) -> Option<Arc<str>> {
    s.filter(|s| !s.is_empty()).map(Into::into)
}

/// Parses a non-streaming reply.
pub(crate) fn parse_response(body: &[u8]) -> Result<ModelResponse, ModelError> {
    let wire: WireResponse = serde_json::from_slice(body).map_err(|e| ModelError::InvalidResponse {
        message: format!("reply is not a chat completion ({e}): {}", preview(body)),
    })?;
    if let Some(err) = &wire.error
        && wire.choices.is_empty()
    {
        return Err(embedded_error(err));
    }
    let Some(choice) = wire.choices.into_iter().next() else {
        return Err(ModelError::InvalidResponse {
            message: "reply has no choices".into(),
        });
    };
    let msg = choice.message;
    let tool_calls = msg
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let id = c.id.filter(|id| !id.is_empty()).unwrap_or_else(|| format!("call_{i}"));
            ToolCall::raw(id, c.function.name, arguments_text(c.function.arguments))
        })
        .collect();
    let usage = wire.usage.map_or(Usage::call(0, 0), |u| u.usage());
    Ok(ModelResponse {
        content: non_empty(msg.content).or_else(|| non_empty(msg.refusal)),
        tool_calls,
        usage,
    })
}

/// Moves `<tool_call>{"name": …, "arguments": …}</tool_call>` blocks out of
/// the text into tool calls, when the request offered tools, the reply has
/// no structured calls, and the name is one of the offered tools.
pub(crate) fn recover_text_tool_calls(req: &ModelRequest, mut reply: ModelResponse) -> ModelResponse {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    if req.tools.is_empty() || req.tool_choice == ToolChoice::None || !reply.tool_calls.is_empty() {
        return reply;
    }
    let Some(text) = reply.content.clone() else {
        return reply;
    };
    let mut rest: &str = &text;
    let mut kept = String::new();
    let mut calls = Vec::new();
    while let Some(start) = rest.find(OPEN) {
        let (before, after) = rest.split_at(start);
        let body = &after[OPEN.len()..];
        let (json_text, next) = match body.find(CLOSE) {
            Some(end) => (&body[..end], &body[end + CLOSE.len()..]),
            None => (body, ""),
        };
        let parsed = serde_json::from_str::<Value>(json_text.trim()).ok().and_then(|v| {
            let name = v.get("name")?.as_str()?.to_string();
            req.tools.iter().any(|t| *t.name == *name).then(|| {
                let args = v.get("arguments").map_or_else(
                    || "{}".to_string(),
                    |a| match a {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                );
                (name, args)
            })
        });
        match parsed {
            Some((name, args)) => {
                kept.push_str(before);
                calls.push(ToolCall::raw(format!("call_{}", calls.len()), name, args));
            }
            None => {
                kept.push_str(before);
                kept.push_str(&after[..OPEN.len()]);
                rest = body;
                continue;
            }
        }
        rest = next;
    }
    if calls.is_empty() {
        return reply;
    }
    kept.push_str(rest);
    let kept = kept.trim();
    reply.content = (!kept.is_empty()).then(|| kept.into());
    reply.tool_calls = calls;
    reply
}
