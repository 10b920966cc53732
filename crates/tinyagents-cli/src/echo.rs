//! The deterministic "echo" scripted model.
//!
//! A blueprint or a graph example carries no replies of its own. Without a
//! `--responses` file each agent gets this model: it answers with a short
//! text made of the agent's name and the start of its task, prefixed with
//! `[scripted]` so nobody mistakes it for a real answer. When the request
//! asks for structured output (a JSON Schema), the reply is the smallest
//! deterministic value of that schema (first `enum` value, arrays of
//! `min(maxItems, 2)` items, every property of an object), so routers and
//! maps downstream work. Token usage is derived from the text lengths
//! (about four characters a token), so totals are non-zero and repeatable.

use serde_json::{Map, Value, json};
use tinyagents_core::{Message, ModelRequest, ModelResponse, Usage};
use tinyagents_providers::ScriptedModel;

/// Characters of the task quoted in an echo reply.
const QUOTE_CHARS: usize = 60;

/// The echo model for the agent `name`.
pub fn echo_model(name: &str) -> ScriptedModel {
    let name = name.to_string();
    ScriptedModel::from_fn(move |req| Ok(echo_reply(&name, req))).with_id("scripted-echo")
}

/// The task of a request: its last user message.
pub fn task_of(req: &ModelRequest) -> String {
    req.messages
        .iter_rev()
        .find_map(|m| match m {
            Message::User { content } => Some(&**content),
            _ => None,
        })
        .unwrap_or_default()
        .to_string()
}

/// What the echo model answers to `req` for the agent `name`.
pub fn echo_reply(name: &str, req: &ModelRequest) -> ModelResponse {
    let task = task_of(req);
    let line = one_line(&task);
    let text = match &req.response_format {
        Some(schema) => instance(schema, &format!("{name}: {line}"), 0).to_string(),
        None => format!("[scripted] {name}: {line}"),
    };
    let prompt_chars: usize = req.messages.iter().filter_map(|m| m.text()).map(str::len).sum();
    let usage = Usage {
        input_tokens: 10 + (prompt_chars as u64).div_ceil(4),
        output_tokens: 2 + (text.len() as u64).div_ceil(4),
        requests: 1,
        ..Usage::default()
    };
    ModelResponse::text(text).with_usage(usage)
}

fn one_line(task: &str) -> String {
    let flat = task.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > QUOTE_CHARS {
        let cut: String = flat.chars().take(QUOTE_CHARS).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// A small deterministic instance of `schema`, with `label` in its strings.
fn instance(schema: &Value, label: &str, depth: u32) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|v| v.first()) {
        return first.clone();
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ if schema.get("items").is_some() => "array",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, sub) in props {
                    out.insert(key.clone(), instance(sub, &format!("{label} {key}"), depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let max = schema.get("maxItems").and_then(Value::as_u64).unwrap_or(2).min(2);
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let n = max.max(min.min(4));
            let item = schema.get("items").cloned().unwrap_or(json!({"type": "string"}));
            Value::Array(
                (1..=n)
                    .map(|i| instance(&item, &format!("{label} #{i}"), depth + 1))
                    .collect(),
            )
        }
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => Value::String(format!("[scripted] {label}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_instances_follow_enums_and_array_caps() {
        let schema = json!({"type": "object", "properties": {
            "verdict": {"type": "string", "enum": ["approve", "revise"]},
            "parts": {"type": "array", "items": {"type": "string"}, "maxItems": 3}}});
        let v = instance(&schema, "x", 0);
        assert_eq!(v["verdict"], "approve");
        assert_eq!(v["parts"].as_array().map(Vec::len), Some(2));
        assert!(v["parts"][0].as_str().is_some_and(|s| s.starts_with("[scripted]")));
    }

    #[test]
    fn long_tasks_are_quoted_on_one_short_line() {
        let quoted = one_line(&format!("a\n{}", "b".repeat(200)));
        assert!(!quoted.contains('\n'));
        assert_eq!(quoted.chars().count(), QUOTE_CHARS + 1);
    }
}
