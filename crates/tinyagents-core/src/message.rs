//! Messages and the shared transcript.
//!
//! A transcript is a [`PList`] of [`Message`]s: appending a message and
//! handing the transcript to a model are both O(1), and a model that records
//! the requests it received (the scripted model does) keeps a snapshot without
//! copying. Text is `Arc<str>` so a system prompt shared by a million
//! children is stored once.

use std::sync::Arc;

use crate::plist::PList;

/// One tool call requested by the model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ToolCall {
    /// Provider-assigned id, echoed back in the tool result.
    pub id: Arc<str>,
    /// Name of the tool to call.
    pub name: Arc<str>,
    /// Arguments as raw JSON text, exactly as the model produced them (it may
    /// be malformed; the harness reports that back to the model).
    pub arguments: Arc<str>,
}

impl ToolCall {
    /// A call with JSON arguments.
    pub fn new(id: impl Into<Arc<str>>, name: impl Into<Arc<str>>, arguments: &serde_json::Value) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            arguments: arguments.to_string().into(),
        }
    }

    /// A call whose argument text is passed through untouched.
    pub fn raw(id: impl Into<Arc<str>>, name: impl Into<Arc<str>>, arguments: impl Into<Arc<str>>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }
}

/// A message of a conversation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    /// Instructions for the model.
    System {
        /// The text.
        content: Arc<str>,
    },
    /// Input from the user (or from the parent, for a sub-agent).
    User {
        /// The text.
        content: Arc<str>,
    },
    /// A model turn: text, tool calls, or both.
    Assistant {
        /// Text, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Arc<str>>,
        /// Tool calls, if any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// Steering from outside the conversation, with its provenance. Never
    /// merged into assistant text nor presented as the original user;
    /// providers render it as a clearly labelled control message.
    Steering {
        /// Who sent it.
        actor: crate::steering::Actor,
        /// The instruction.
        content: Arc<str>,
        /// Follows the request through events and checkpoints.
        correlation_id: crate::steering::CorrelationId,
    },
    /// The result of one tool call.
    Tool {
        /// The id of the call this answers.
        call_id: Arc<str>,
        /// The tool's name.
        name: Arc<str>,
        /// Output text, or the error message the model should act on.
        content: Arc<str>,
        /// True when the call failed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

impl Message {
    /// A system message.
    pub fn system(text: impl Into<Arc<str>>) -> Self {
        Self::System { content: text.into() }
    }

    /// A user message.
    pub fn user(text: impl Into<Arc<str>>) -> Self {
        Self::User { content: text.into() }
    }

    /// An assistant message with text only.
    pub fn assistant(text: impl Into<Arc<str>>) -> Self {
        Self::Assistant {
            content: Some(text.into()),
            tool_calls: Vec::new(),
        }
    }

    /// The message's text, if it has any.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::System { content }
            | Self::User { content }
            | Self::Tool { content, .. }
            | Self::Steering { content, .. } => Some(content),
            Self::Assistant { content, .. } => content.as_deref(),
        }
    }

    /// The text providers send for a [`Message::Steering`]: labelled with its
    /// actor so the model never takes it for the original user (wire formats
    /// have no steering role, so it travels in a user-role turn).
    pub fn steering_wire_text(&self) -> Option<String> {
        match self {
            Self::Steering {
                actor,
                content,
                correlation_id,
            } => Some(format!(
                "[Steering instruction from {actor}, not from the original user; ref {correlation_id}]\n{content}"
            )),
            _ => None,
        }
    }

    /// The role name (`system`, `user`, `assistant`, `tool`, `steering`).
    pub fn role(&self) -> &'static str {
        match self {
            Self::System { .. } => "system",
            Self::User { .. } => "user",
            Self::Assistant { .. } => "assistant",
            Self::Tool { .. } => "tool",
            Self::Steering { .. } => "steering",
        }
    }
}

/// A conversation, shared and persistent (see the module docs).
#[derive(Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Transcript(PList<Message>);

impl Transcript {
    /// The empty transcript.
    pub fn new() -> Self {
        Self(PList::new())
    }

    /// Appends a message (O(1); clones taken earlier do not see it).
    pub fn push(&mut self, m: Message) {
        self.0.push(m);
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The newest message.
    pub fn last(&self) -> Option<&Message> {
        self.0.last()
    }

    /// Messages oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Message> {
        self.0.iter()
    }

    /// Messages newest first, without allocating.
    pub fn iter_rev(&self) -> impl Iterator<Item = &Message> {
        self.0.iter_rev()
    }

    /// A copy of the messages as a vector.
    pub fn to_vec(&self) -> Vec<Message> {
        self.iter().cloned().collect()
    }

    /// True when `other` was built by appending to this very transcript (its
    /// prefix is shared in memory, not copied).
    pub fn is_shared_prefix_of(&self, other: &Self) -> bool {
        self.0.is_shared_prefix_of(&other.0)
    }

    /// True when both are the same shared transcript.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        self.0.ptr_eq(&other.0)
    }
}

impl FromIterator<Message> for Transcript {
    fn from_iter<I: IntoIterator<Item = Message>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_serialize_with_a_role_tag() {
        let m = Message::Assistant {
            content: None,
            tool_calls: vec![ToolCall::new("c1", "search", &serde_json::json!({"q": "rust"}))],
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["tool_calls"][0]["arguments"], r#"{"q":"rust"}"#);
        let back: Message = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn snapshots_are_not_affected_by_later_pushes() {
        let mut t = Transcript::new();
        t.push(Message::system("be brief"));
        let snap = t.clone();
        t.push(Message::user("hi"));
        assert_eq!(snap.len(), 1);
        assert_eq!(t.len(), 2);
        assert_eq!(t.last().and_then(Message::text), Some("hi"));
    }
}
