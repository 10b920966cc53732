//! Reassembling a streamed Messages API reply.
//!
//! Events: `message_start` (usage of the prompt), then per content block a
//! `content_block_start`, `content_block_delta`s (`text_delta` or
//! `input_json_delta`) and a `content_block_stop`, then `message_delta`
//! (stop reason, output usage) and `message_stop`. `ping` is ignored and an
//! `error` event ends the call with a typed error. A stream that ends
//! without `message_stop` was truncated.

use serde::Deserialize;
use serde_json::Value;
use tinyagents_core::{DeltaFn, ModelDelta, ModelError, ModelResponse, ToolCall};

use super::wire::{WireUsage, error_object};
use crate::http::SseStream;

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta,
    },
    ContentBlockStop {},
    MessageDelta {
        #[serde(default)]
        usage: WireUsage,
    },
    MessageStop {},
    Ping {},
    Error {
        error: Value,
    },
    #[serde(other)]
    Unknown,
}

enum Block {
    Text,
    /// A tool call: its position among the reply's calls, id, name, input so far.
    Tool {
        ordinal: u32,
        id: String,
        name: String,
        input: String,
    },
    /// The structured-output tool: its input is the reply text.
    Respond,
    Ignored,
}

pub(crate) struct Reassembly<'r> {
    respond_tool: &'r str,
    model: &'r str,
    text: String,
    blocks: Vec<(usize, Block)>,
    calls: u32,
    usage: WireUsage,
    stopped: bool,
}

impl<'r> Reassembly<'r> {
    pub(crate) fn new(respond_tool: &'r str, model: &'r str) -> Self {
        Self {
            respond_tool,
            model,
            text: String::new(),
            blocks: Vec::new(),
            calls: 0,
            usage: WireUsage::default(),
            stopped: false,
        }
    }

    pub(crate) fn feed(&mut self, data: &str, on_delta: &DeltaFn<'_>) -> Result<(), ModelError> {
        let event: StreamEvent = serde_json::from_str(data).map_err(|e| ModelError::InvalidResponse {
            message: format!("garbled stream event ({e}): {}", crate::http::preview(data.as_bytes())),
        })?;
        match event {
            StreamEvent::MessageStart { message } => self.usage.merge(&message.usage),
            StreamEvent::ContentBlockStart { index, content_block } => {
                let block = match content_block {
                    StartBlock::Text { text } => {
                        if !text.is_empty() {
                            self.text.push_str(&text);
                            on_delta(ModelDelta::Text { text: text.into() });
                        }
                        Block::Text
                    }
                    StartBlock::ToolUse { name, .. } if name == self.respond_tool => Block::Respond,
                    StartBlock::ToolUse { id, name } => {
                        let ordinal = self.calls;
                        self.calls += 1;
                        on_delta(ModelDelta::ToolCall {
                            index: ordinal,
                            name: Some(name.as_str().into()),
                            arguments: "".into(),
                        });
                        Block::Tool {
                            ordinal,
                            id,
                            name,
                            input: String::new(),
                        }
                    }
                    StartBlock::Other => Block::Ignored,
                };
                self.blocks.push((index, block));
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                let piece = match delta {
                    BlockDelta::TextDelta { text } => text,
                    BlockDelta::InputJsonDelta { partial_json } => partial_json,
                    BlockDelta::Other => return Ok(()),
                };
                if piece.is_empty() {
                    return Ok(());
                }
                let text = &mut self.text;
                match self.blocks.iter_mut().rev().find(|(i, _)| *i == index).map(|(_, b)| b) {
                    Some(Block::Text | Block::Respond) => {
                        text.push_str(&piece);
                        on_delta(ModelDelta::Text { text: piece.into() });
                    }
                    Some(Block::Tool { ordinal, input, .. }) => {
                        input.push_str(&piece);
                        on_delta(ModelDelta::ToolCall {
                            index: *ordinal,
                            name: None,
                            arguments: piece.into(),
                        });
                    }
                    Some(Block::Ignored) => {}
                    None => {
                        return Err(ModelError::InvalidResponse {
                            message: format!("stream delta for content block {index}, which was never started"),
                        });
                    }
                }
            }
            StreamEvent::MessageDelta { usage } => self.usage.merge(&usage),
            StreamEvent::MessageStop {} => self.stopped = true,
            StreamEvent::ContentBlockStop {} | StreamEvent::Ping {} | StreamEvent::Unknown => {}
            StreamEvent::Error { error } => return Err(error_object(&error, self.model)),
        }
        Ok(())
    }

    pub(crate) fn finish(self, events: u64) -> Result<ModelResponse, ModelError> {
        if !self.stopped {
            return Err(ModelError::InvalidResponse {
                message: format!("stream truncated: ended after {events} events without message_stop"),
            });
        }
        let tool_calls = self
            .blocks
            .into_iter()
            .filter_map(|(_, b)| match b {
                Block::Tool { id, name, input, .. } => {
                    // A call without arguments streams no input at all.
                    let args = if input.trim().is_empty() {
                        "{}".to_string()
                    } else {
                        input
                    };
                    Some(ToolCall::raw(id, name, args))
                }
                _ => None,
            })
            .collect();
        Ok(ModelResponse {
            content: (!self.text.is_empty()).then(|| self.text.into()),
            tool_calls,
            usage: self.usage.usage(),
        })
    }
}

/// Reads a whole SSE stream into a reply, reporting deltas as they arrive.
pub(crate) async fn read(
    mut events: SseStream,
    respond_tool: &str,
    model: &str,
    on_delta: &DeltaFn<'_>,
) -> Result<ModelResponse, ModelError> {
    let mut state = Reassembly::new(respond_tool, model);
    while let Some(ev) = events.next().await? {
        if ev.data.trim().is_empty() {
            continue;
        }
        state.feed(&ev.data, on_delta)?;
        if state.stopped {
            break;
        }
    }
    state.finish(events.events())
}
