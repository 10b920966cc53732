//! Turning a request into a chat prompt, and the grammars that constrain
//! the reply.
//!
//! Small local models have no native tool calling that llama.cpp's C chat
//! templates can express, so tools are described in the system prompt and a
//! call is written `<tool_call>{"name": …, "arguments": {…}}</tool_call>`
//! (the convention SmolLM2, Qwen and Hermes models were trained on). Earlier
//! calls are replayed in that form and tool results come back as user
//! messages wrapped in `<tool_response>`.

use serde_json::{Value, json};
use tinyagents_core::{Message, ModelRequest, ToolChoice, ToolSpec};

/// The text that opens a tool call.
pub(crate) const TOOL_CALL_OPEN: &str = "<tool_call>";
/// The text that closes a tool call.
pub(crate) const TOOL_CALL_CLOSE: &str = "</tool_call>";

/// One chat message as (role, content).
pub(crate) type ChatMessage = (&'static str, String);

fn tools_prompt(tools: &[ToolSpec]) -> String {
    let mut s = String::from(
        "You can call tools. To call one, reply with exactly\n<tool_call>{\"name\": \"TOOL\", \"arguments\": {…}}</tool_call>\nThe tools:\n<tools>\n",
    );
    for t in tools {
        let spec = json!({"name": &*t.name, "description": &*t.description, "parameters": &*t.parameters});
        s.push_str(&spec.to_string());
        s.push('\n');
    }
    s.push_str("</tools>");
    s
}

/// The tools the model may call on this request (empty when none).
pub(crate) fn offered_tools(req: &ModelRequest) -> Vec<&ToolSpec> {
    match &req.tool_choice {
        ToolChoice::None => Vec::new(),
        ToolChoice::Tool(name) => req.tools.iter().filter(|t| *t.name == **name).collect(),
        ToolChoice::Auto | ToolChoice::Required => req.tools.iter().collect(),
    }
}

/// The chat messages for `req`: system text (with the tool list) first.
pub(crate) fn chat_messages(req: &ModelRequest) -> Vec<ChatMessage> {
    let tools = offered_tools(req);
    let mut system: Vec<String> = req
        .messages
        .iter()
        .filter_map(|m| match m {
            Message::System { content } => Some(content.to_string()),
            _ => None,
        })
        .collect();
    if !tools.is_empty() {
        let specs: Vec<ToolSpec> = tools.iter().map(|t| (*t).clone()).collect();
        system.push(tools_prompt(&specs));
    }
    let mut out: Vec<ChatMessage> = Vec::new();
    if !system.is_empty() {
        out.push(("system", system.join("\n\n")));
    }
    for m in req.messages.iter() {
        match m {
            Message::System { .. } => {}
            Message::User { content } => out.push(("user", content.to_string())),
            Message::Steering { .. } => out.push(("user", m.steering_wire_text().unwrap_or_default())),
            Message::Assistant { content, tool_calls } => {
                let mut text = content.as_deref().unwrap_or("").to_string();
                for c in tool_calls {
                    let args: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(TOOL_CALL_OPEN);
                    text.push_str(&json!({"name": &*c.name, "arguments": args}).to_string());
                    text.push_str(TOOL_CALL_CLOSE);
                }
                out.push(("assistant", text));
            }
            Message::Tool {
                name,
                content,
                is_error,
                ..
            } => {
                let status = if *is_error { " error" } else { "" };
                out.push((
                    "user",
                    format!("<tool_response name=\"{name}\"{status}>\n{content}\n</tool_response>"),
                ));
            }
        }
    }
    out
}

/// Closes every object schema that lists `properties` but says nothing of
/// `additionalProperties`: the output stays valid for the original schema,
/// and a small model can no longer wander into inventing keys (given an open
/// object, SmolLM2 copies the schema itself into the arguments).
fn close_objects(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// The grammar schema for `schema`: objects closed (see `close_objects`)
/// and, with `compact`, `x-guidance` options for JSON without free
/// whitespace (fewer tokens, and no room to wander into endless spaces).
pub(crate) fn compact(schema: &Value, compact: bool) -> Value {
    let mut s = schema.clone();
    close_objects(&mut s);
    if compact && let Some(obj) = s.as_object_mut() {
        obj.insert(
            "x-guidance".into(),
            json!({"whitespace_flexible": false, "item_separator": ",", "key_separator": ":"}),
        );
    }
    s
}

/// The schema of one tool call `{"name": …, "arguments": …}` among `tools`.
pub(crate) fn call_schema(tools: &[&ToolSpec]) -> Value {
    let one = |t: &ToolSpec| {
        json!({
            "type": "object",
            "properties": {"name": {"const": &*t.name}, "arguments": &*t.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": false,
        })
    };
    match tools {
        [only] => one(only),
        many => json!({"anyOf": many.iter().map(|t| one(t)).collect::<Vec<_>>()}),
    }
}

/// What constrains the reply.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Plan {
    /// Free text; a `<tool_call>` the model opens by itself is completed
    /// under the call grammar when tools are offered.
    Free,
    /// The reply is JSON for this schema.
    Json(Value),
    /// The prompt ends with `<tool_call>`; the reply is the call's JSON.
    ForcedCall(Value),
}

/// Decides how the reply is constrained.
pub(crate) fn plan(req: &ModelRequest) -> Plan {
    let tools = offered_tools(req);
    let must_call = matches!(req.tool_choice, ToolChoice::Required | ToolChoice::Tool(_));
    if must_call && !tools.is_empty() {
        return Plan::ForcedCall(call_schema(&tools));
    }
    match &req.response_format {
        Some(schema) => Plan::Json((**schema).clone()),
        None => Plan::Free,
    }
}

/// Parses the JSON of a tool call into (name, arguments text).
pub(crate) fn parse_call(json_text: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(json_text.trim()).ok()?;
    let name = v.get("name")?.as_str()?.to_string();
    let args = v.get("arguments").cloned().unwrap_or_else(|| json!({}));
    Some((name, args.to_string()))
}
