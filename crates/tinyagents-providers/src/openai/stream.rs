//! Reassembling a streamed chat completion.
//!
//! Text arrives as `delta.content` pieces; each tool call arrives as pieces
//! tagged with its `index`, the id and name in the first piece and the
//! arguments spread over many. Usage comes in a last chunk with no choices
//! (with `stream_options.include_usage`). The stream ends with `data: [DONE]`;
//! a stream that ends without it and without a `finish_reason` was truncated.

use serde::Deserialize;
use serde_json::Value;
use tinyagents_core::{DeltaFn, ModelDelta, ModelError, ModelResponse, ToolCall, Usage};

use super::wire::{WireUsage, arguments_text, embedded_error, non_empty};
use crate::http::SseStream;

#[derive(Deserialize)]
struct ChunkFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkToolCall {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<ChunkFunction>,
}

#[derive(Deserialize, Default)]
struct ChunkDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ChunkToolCall>>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<ChunkDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// The reply being reassembled.
#[derive(Default)]
pub(crate) struct Reassembly {
    text: String,
    refusal: String,
    calls: Vec<PartialCall>,
    usage: Option<Usage>,
    finished: bool,
    done: bool,
}

impl Reassembly {
    /// Feeds one SSE data payload.
    pub(crate) fn feed(&mut self, data: &str, on_delta: &DeltaFn<'_>) -> Result<(), ModelError> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| ModelError::InvalidResponse {
            message: format!("garbled stream chunk ({e}): {}", crate::http::preview(data.as_bytes())),
        })?;
        if let Some(err) = &chunk.error {
            return Err(embedded_error(err));
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.usage());
        }
        for choice in chunk.choices {
            if choice.finish_reason.is_some() {
                self.finished = true;
            }
            let Some(delta) = choice.delta else { continue };
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                self.text.push_str(&text);
                on_delta(ModelDelta::Text { text: text.into() });
            }
            if let Some(r) = delta.refusal {
                self.refusal.push_str(&r);
            }
            for tc in delta.tool_calls.unwrap_or_default() {
                self.feed_call(tc, on_delta);
            }
        }
        Ok(())
    }

    fn feed_call(&mut self, tc: ChunkToolCall, on_delta: &DeltaFn<'_>) {
        // Servers that omit `index` send one call per id.
        let index = match tc.index {
            Some(i) => i as usize,
            None => match (&tc.id, self.calls.last()) {
                (Some(id), Some(last)) if !id.is_empty() && *id != last.id => self.calls.len(),
                (_, Some(_)) => self.calls.len() - 1,
                (_, None) => 0,
            },
        };
        if index >= self.calls.len() {
            self.calls.resize_with(index + 1, PartialCall::default);
        }
        let Some(call) = self.calls.get_mut(index) else { return };
        if let Some(id) = tc.id.filter(|id| !id.is_empty()) {
            call.id = id;
        }
        let (name, args) = match tc.function {
            Some(f) => (f.name.filter(|n| !n.is_empty()), arguments_text(f.arguments)),
            None => (None, String::new()),
        };
        let mut new_name = None;
        if let Some(n) = name
            && call.name.is_empty()
        {
            call.name = n;
            new_name = Some(call.name.as_str().into());
        }
        call.arguments.push_str(&args);
        if new_name.is_some() || !args.is_empty() {
            on_delta(ModelDelta::ToolCall {
                index: index as u32,
                name: new_name,
                arguments: args.into(),
            });
        }
    }

    /// The whole reply, once the stream has ended.
    pub(crate) fn finish(self, events: u64) -> Result<ModelResponse, ModelError> {
        if !self.done && !self.finished {
            return Err(ModelError::InvalidResponse {
                message: format!("stream truncated: ended after {events} events without [DONE] or a finish_reason"),
            });
        }
        let tool_calls = self
            .calls
            .into_iter()
            .enumerate()
            .filter(|(_, c)| !c.name.is_empty())
            .map(|(i, c)| {
                let id = if c.id.is_empty() { format!("call_{i}") } else { c.id };
                ToolCall::raw(id, c.name, c.arguments)
            })
            .collect();
        Ok(ModelResponse {
            content: non_empty(Some(self.text)).or_else(|| non_empty(Some(self.refusal))),
            tool_calls,
            usage: self.usage.unwrap_or(Usage::call(0, 0)),
        })
    }
}

/// Reads a whole SSE stream into a reply, reporting deltas as they arrive.
pub(crate) async fn read(mut events: SseStream, on_delta: &DeltaFn<'_>) -> Result<ModelResponse, ModelError> {
    let mut state = Reassembly::default();
    while let Some(ev) = events.next().await? {
        if ev.event == "error" {
            return Err(ModelError::Other {
                message: format!("provider error in stream: {}", ev.data),
            });
        }
        state.feed(&ev.data, on_delta)?;
        if state.done {
            break;
        }
    }
    state.finish(events.events())
}
