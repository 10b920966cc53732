//! [`SubAgentSession`]: one sub-agent kept in play across human input.

use std::sync::Arc;

use tinyagents_core::{ChildEvents, EventKind, Message, RunContext, RunError, Transcript};

use super::SubAgent;
use crate::agent::AgentOutput;

/// A persistent conversation with one [`SubAgent`].
///
/// Each [`send`](Self::send) runs the sub-agent as a new child run (its own
/// run id, one level below the caller) over the retained transcript plus the
/// new messages, then keeps the resulting transcript. Nothing is killed or
/// restarted between sends; every send after the first emits
/// `SubAgentReused`. The flow: send a task, read the reply, get human input
/// out of band, send it; the sub-agent answers with its full prior context.
#[derive(Debug, Clone)]
pub struct SubAgentSession {
    sub: SubAgent,
    transcript: Option<Transcript>,
    sends: u32,
}

impl SubAgentSession {
    /// A session with no exchange yet.
    pub fn new(sub: SubAgent) -> Self {
        Self {
            sub,
            transcript: None,
            sends: 0,
        }
    }

    /// Sends `messages` and waits for the reply. The child's events go to
    /// the parent's sink. On error the transcript keeps whatever the failed
    /// send got to (its partial result), so no exchange is lost.
    pub async fn send(&mut self, parent: &RunContext, messages: Vec<Message>) -> Result<AgentOutput, RunError> {
        let sends = self.sends + 1;
        let name: Arc<str> = self.sub.name().clone();
        let result = self
            .sub
            .run_child(
                parent,
                self.transcript.clone(),
                messages,
                ChildEvents::Parent,
                |child| {
                    if sends > 1 {
                        parent.emit_with(|| EventKind::SubAgentReused {
                            name,
                            child_run_id: child.run_id(),
                            sends,
                        });
                    }
                },
            )
            .await;
        match &result {
            Ok(out) => {
                self.transcript = Some(out.transcript.clone());
                self.sends = sends;
            }
            Err(e) => {
                if let Some(p) = e.partial().filter(|p| !p.transcript.is_empty()) {
                    self.transcript = Some(p.transcript.clone());
                    self.sends = sends;
                }
            }
        }
        result
    }

    /// Sends one user message.
    pub async fn send_text(&mut self, parent: &RunContext, text: impl Into<Arc<str>>) -> Result<AgentOutput, RunError> {
        self.send(parent, vec![Message::user(text)]).await
    }

    /// The retained transcript (empty before the first send).
    pub fn transcript(&self) -> Transcript {
        self.transcript.clone().unwrap_or_default()
    }

    /// Completed sends.
    pub fn sends(&self) -> u32 {
        self.sends
    }

    /// The sub-agent.
    pub fn subagent(&self) -> &SubAgent {
        &self.sub
    }
}
