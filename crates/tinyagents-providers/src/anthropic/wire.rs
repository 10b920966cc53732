//! The Messages API wire format: request bodies and reply parsing.

use serde::Deserialize;
use serde_json::{Value, json};
use tinyagents_core::{Message, ModelError, ModelRequest, ModelResponse, ToolCall, ToolChoice, Usage};

use super::{AnthropicConfig, PromptCaching};

/// A tool input must be an object; malformed arguments the model produced
/// earlier are sent back as an empty object (the tool result already told
/// the model what was wrong).
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

fn blocks(m: &Message) -> Option<(&'static str, Vec<Value>)> {
    match m {
        Message::System { .. } => None,
        Message::User { content } => Some(("user", vec![json!({"type": "text", "text": &**content})])),
        Message::Assistant { content, tool_calls } => {
            let mut out = Vec::new();
            if let Some(text) = content.as_deref().filter(|t| !t.trim().is_empty()) {
                out.push(json!({"type": "text", "text": text}));
            }
            for c in tool_calls {
                out.push(
                    json!({"type": "tool_use", "id": &*c.id, "name": &*c.name, "input": tool_input(&c.arguments)}),
                );
            }
            Some(("assistant", out))
        }
        Message::Tool {
            call_id,
            content,
            is_error,
            ..
        } => {
            let mut block = json!({"type": "tool_result", "tool_use_id": &**call_id, "content": &**content});
            if *is_error {
                block["is_error"] = json!(true);
            }
            Some(("user", vec![block]))
        }
        Message::Steering { .. } => Some(("user", vec![json!({"type": "text", "text": m.steering_wire_text()})])),
    }
}

fn cache_marker() -> Value {
    json!({"type": "ephemeral"})
}

fn should_cache(caching: PromptCaching, chars: usize) -> bool {
    match caching {
        PromptCaching::Off => false,
        PromptCaching::Always => chars > 0,
        PromptCaching::Auto { min_chars } => chars >= min_chars,
    }
}

/// The JSON body of a request.
pub(crate) fn request_body(cfg: &AnthropicConfig, req: &ModelRequest, stream: bool) -> Value {
    // System messages, wherever they are, become system blocks in order.
    let mut system: Vec<Value> = req
        .messages
        .iter()
        .filter_map(|m| match m {
            Message::System { content } => Some(json!({"type": "text", "text": &**content})),
            _ => None,
        })
        .collect();
    let system_chars: usize = req
        .messages
        .iter()
        .filter(|m| matches!(m, Message::System { .. }))
        .filter_map(Message::text)
        .map(str::len)
        .sum();
    if should_cache(cfg.caching, system_chars)
        && let Some(last) = system.last_mut()
    {
        last["cache_control"] = cache_marker();
    }

    // Consecutive messages of one role are merged: tool results answering
    // one assistant turn travel in one user message.
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (role, content) in req.messages.iter().filter_map(blocks) {
        if content.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some((r, c)) if *r == role => c.extend(content),
            _ => messages.push((role, content)),
        }
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();

    let mut body = json!({
        "model": cfg.model,
        "max_tokens": req.max_output_tokens.unwrap_or(cfg.max_tokens),
        "messages": messages,
    });
    if !system.is_empty() {
        body["system"] = Value::Array(system);
    }

    let mut tools: Vec<Value> = if req.tool_choice == ToolChoice::None {
        Vec::new()
    } else {
        req.tools
            .iter()
            .map(|t| json!({"name": &*t.name, "description": &*t.description, "input_schema": &*t.parameters}))
            .collect()
    };
    let mut choice = match &req.tool_choice {
        ToolChoice::Auto | ToolChoice::None => None,
        ToolChoice::Required => Some(json!({"type": "any"})),
        ToolChoice::Tool(name) => Some(json!({"type": "tool", "name": name})),
    };
    // Structured output: the reply is the input of a forced `respond` tool
    // whose schema is the requested one.
    if let Some(schema) = &req.response_format {
        tools.push(json!({
            "name": cfg.respond_tool,
            "description": "Give your final answer by calling this tool; its input is the answer.",
            "input_schema": &**schema,
        }));
        if tools.len() == 1 {
            choice = Some(json!({"type": "tool", "name": cfg.respond_tool}));
        } else if choice.is_none() {
            choice = Some(json!({"type": "any"}));
        }
    }
    if !tools.is_empty() {
        let tools_chars: usize = tools.iter().map(|t| t.to_string().len()).sum();
        if should_cache(cfg.caching, tools_chars)
            && let Some(last) = tools.last_mut()
        {
            last["cache_control"] = cache_marker();
        }
        body["tools"] = Value::Array(tools);
        if let Some(c) = choice {
            body["tool_choice"] = c;
        }
    }
    if let Some(t) = cfg.temperature {
        body["temperature"] = json!(t);
    }
    if stream {
        body["stream"] = json!(true);
    }
    body
}

#[derive(Deserialize, Default, Clone, Copy)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Later counts replace earlier ones (a stream's `message_delta` carries
    /// cumulative counts).
    pub(crate) fn merge(&mut self, later: &WireUsage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later.cache_creation_input_tokens.or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later.cache_read_input_tokens.or(self.cache_read_input_tokens);
    }

    /// Anthropic counts cache reads and writes apart from `input_tokens`;
    /// core's `input_tokens` includes them.
    pub(crate) fn usage(&self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0) + read + write,
            output_tokens: self.output_tokens.unwrap_or(0),
            cached_input_tokens: read,
            cache_write_input_tokens: write,
            requests: 1,
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    content: Vec<WireBlock>,
    #[serde(default)]
    usage: WireUsage,
}

/// Maps an Anthropic error object (`{type, message}`) onto a [`ModelError`].
pub(crate) fn error_object(error: &Value, model: &str) -> ModelError {
    let kind = error.get("type").and_then(Value::as_str).unwrap_or("");
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| error.to_string(), str::to_string);
    match kind {
        "overloaded_error" => ModelError::Server { status: 529, message },
        "api_error" => ModelError::Server { status: 500, message },
        "rate_limit_error" => ModelError::RateLimited { retry_after_ms: None },
        "authentication_error" => ModelError::Auth { status: 401, message },
        "permission_error" => ModelError::Auth { status: 403, message },
        "not_found_error" => ModelError::ModelNotFound {
            model: format!("{model} ({message})"),
        },
        _ => ModelError::Other {
            message: format!("{kind}: {message}"),
        },
    }
}

/// Parses a non-streaming reply.
pub(crate) fn parse_response(body: &[u8], respond_tool: &str, model: &str) -> Result<ModelResponse, ModelError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ModelError::InvalidResponse {
        message: format!("reply is not JSON ({e}): {}", crate::http::preview(body)),
    })?;
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(error_object(v.get("error").unwrap_or(&Value::Null), model));
    }
    let wire: WireResponse = serde_json::from_value(v).map_err(|e| ModelError::InvalidResponse {
        message: format!("reply is not a Messages API message: {e}"),
    })?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in wire.content {
        match block {
            WireBlock::Text { text: t } => text.push_str(&t),
            WireBlock::ToolUse { name, input, .. } if name == respond_tool => text.push_str(&input.to_string()),
            WireBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall::raw(id, name, input.to_string())),
            WireBlock::Other => {}
        }
    }
    Ok(ModelResponse {
        content: (!text.is_empty()).then(|| text.into()),
        tool_calls,
        usage: wire.usage.usage(),
    })
}
