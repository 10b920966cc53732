//! The agent loop as a sans-IO state machine.
//!
//! [`AgentRun`] holds the transcript and the turn counter and performs no
//! I/O. [`AgentRun::next_step`] says what to do next: call the model, call
//! these tools, or stop; [`AgentRun::on_model`] and [`AgentRun::on_tools`]
//! feed the results back. Between any two steps the run serializes with
//! serde, so a driver can checkpoint it, a human can approve the next step, a
//! test can step it by hand, and a crashed run can resume: a run saved while
//! waiting for the model or the tools re-issues that same step.
//!
//! ```
//! use tinyagents_core::{Message, ModelResponse, ToolCall};
//! use tinyagents_harness::machine::{AgentRun, Step, ToolOutcome};
//!
//! let mut run = AgentRun::new("demo", [Message::user("2+2?")]);
//! let Step::CallModel(req) = run.next_step().unwrap() else { unreachable!() };
//! assert_eq!(req.messages.len(), 1);
//! run.on_model(ModelResponse::tool_calls(vec![ToolCall::raw("c1", "calc", "{}")])).unwrap();
//! let Step::CallTools(calls) = run.next_step().unwrap() else { unreachable!() };
//! run.on_tools(vec![ToolOutcome::ok(&calls[0], "4")]).unwrap();
//! let saved = serde_json::to_string(&run).unwrap();          // checkpoint between steps
//! let mut run: AgentRun = serde_json::from_str(&saved).unwrap();
//! assert!(matches!(run.next_step().unwrap(), Step::CallModel(_)));
//! run.on_model(ModelResponse::text("4")).unwrap();
//! assert!(matches!(run.next_step().unwrap(), Step::Done(t) if &*t == "4"));
//! ```

use std::sync::Arc;

use tinyagents_core::{Message, ModelRequest, ModelResponse, RunId, ToolCall, ToolChoice, ToolSpec, Transcript};

/// What the driver should do next.
#[derive(Debug, Clone)]
pub enum Step {
    /// Call the model with this request.
    CallModel(ModelRequest),
    /// Run these tool calls (concurrently) and report their outcomes in order.
    CallTools(ToolCalls),
    /// The run is finished with this answer.
    Done(Arc<str>),
}

/// The tool calls of one model turn, read in place from the transcript
/// message that holds them: the run's pending calls and the driver's step
/// share that one copy (a turn may hold a million calls). Dereferences to a
/// slice; serializes as a list.
#[derive(Clone)]
pub struct ToolCalls(Calls);

#[derive(Clone)]
enum Calls {
    /// A transcript whose newest message is the assistant turn with the calls.
    Turn(Transcript),
    /// Calls of their own (a run restored from a checkpoint).
    Owned(Arc<[ToolCall]>),
}

impl ToolCalls {
    /// The calls of the assistant message at the head of `transcript`.
    fn of_turn(transcript: &Transcript) -> Self {
        Self(Calls::Turn(transcript.clone()))
    }
}

impl std::ops::Deref for ToolCalls {
    type Target = [ToolCall];

    fn deref(&self) -> &[ToolCall] {
        match &self.0 {
            Calls::Turn(t) => match t.last() {
                Some(Message::Assistant { tool_calls, .. }) => tool_calls,
                _ => &[],
            },
            Calls::Owned(calls) => calls,
        }
    }
}

impl From<Vec<ToolCall>> for ToolCalls {
    fn from(calls: Vec<ToolCall>) -> Self {
        Self(Calls::Owned(calls.into()))
    }
}

impl std::fmt::Debug for ToolCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for ToolCalls {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl serde::Serialize for ToolCalls {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for ToolCalls {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<ToolCall>::deserialize(d).map(Self::from)
    }
}

/// The state machine was driven out of order, or ran out of turns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// `max_turns` model calls were made without a final answer.
    #[error("no final answer after {max_turns} model turns")]
    MaxTurns {
        /// The cap.
        max_turns: u32,
    },
    /// A result arrived that the run was not waiting for.
    #[error("{got} received while the run was {state}")]
    OutOfOrder {
        /// What arrived.
        got: &'static str,
        /// What the run was doing.
        state: &'static str,
    },
    /// `on_tools` got a different number of outcomes than calls.
    #[error("expected {expected} tool outcomes, got {got}")]
    OutcomeCount {
        /// Calls made.
        expected: usize,
        /// Outcomes given.
        got: usize,
    },
}

/// The outcome of one tool call, as fed back to the run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolOutcome {
    /// The call's id.
    pub call_id: Arc<str>,
    /// The tool's name.
    pub name: Arc<str>,
    /// Output, or the error message for the model.
    pub content: Arc<str>,
    /// True when the call failed.
    pub is_error: bool,
}

impl ToolOutcome {
    /// A successful outcome.
    pub fn ok(call: &ToolCall, content: impl Into<Arc<str>>) -> Self {
        Self {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: content.into(),
            is_error: false,
        }
    }

    /// A failed outcome; `message` is what the model reads.
    pub fn error(call: &ToolCall, message: impl Into<Arc<str>>) -> Self {
        Self {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: message.into(),
            is_error: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    NeedModel,
    WaitingModel,
    NeedTools { calls: ToolCalls },
    WaitingTools { calls: ToolCalls },
    Done { text: Arc<str> },
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Self::NeedModel => "ready to call the model",
            Self::WaitingModel => "waiting for the model",
            Self::NeedTools { .. } => "ready to call tools",
            Self::WaitingTools { .. } => "waiting for tools",
            Self::Done { .. } => "done",
        }
    }
}

/// What every run of one agent shares: its name, the tools it offers and
/// the answer format it requires. One allocation per agent, not per run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunSpec {
    pub(crate) agent: Arc<str>,
    pub(crate) tools: Arc<[ToolSpec]>,
    pub(crate) response_format: Option<Arc<serde_json::Value>>,
    /// Cap on the tokens of each reply (`ModelRequest::max_output_tokens`).
    pub(crate) max_output_tokens: Option<u32>,
}

/// One agent run's state (see the module docs).
///
/// Serialized with the same fields as ever (see `AgentRunRecord`); in
/// memory the agent's name, tools and answer format are one shared
/// `RunSpec`, so a sub-agent's task keeps one word for them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(into = "AgentRunRecord", from = "AgentRunRecord")]
pub struct AgentRun {
    spec: Arc<RunSpec>,
    run_id: RunId,
    depth: u32,
    transcript: Transcript,
    turn: u32,
    max_turns: u32,
    phase: Phase,
}

/// The serialized form of an [`AgentRun`].
#[derive(serde::Serialize, serde::Deserialize)]
struct AgentRunRecord {
    agent: Arc<str>,
    run_id: RunId,
    depth: u32,
    transcript: Transcript,
    tools: Arc<[ToolSpec]>,
    #[serde(default)]
    response_format: Option<Arc<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    turn: u32,
    max_turns: u32,
    phase: Phase,
}

impl From<AgentRun> for AgentRunRecord {
    fn from(run: AgentRun) -> Self {
        let spec = Arc::unwrap_or_clone(run.spec);
        Self {
            agent: spec.agent,
            run_id: run.run_id,
            depth: run.depth,
            transcript: run.transcript,
            tools: spec.tools,
            response_format: spec.response_format,
            max_output_tokens: spec.max_output_tokens,
            turn: run.turn,
            max_turns: run.max_turns,
            phase: run.phase,
        }
    }
}

impl From<AgentRunRecord> for AgentRun {
    fn from(r: AgentRunRecord) -> Self {
        Self {
            spec: Arc::new(RunSpec {
                agent: r.agent,
                tools: r.tools,
                response_format: r.response_format,
                max_output_tokens: r.max_output_tokens,
            }),
            run_id: r.run_id,
            depth: r.depth,
            transcript: r.transcript,
            turn: r.turn,
            max_turns: r.max_turns,
            phase: r.phase,
        }
    }
}

impl AgentRun {
    /// A run of `agent` over `messages`, with no tools and the default turn cap.
    pub fn new(agent: impl Into<Arc<str>>, messages: impl IntoIterator<Item = Message>) -> Self {
        Self::with_transcript(agent, messages.into_iter().collect())
    }

    /// A run over an existing (shared) transcript.
    pub fn with_transcript(agent: impl Into<Arc<str>>, transcript: Transcript) -> Self {
        let spec = RunSpec {
            agent: agent.into(),
            tools: Arc::from(Vec::new()),
            response_format: None,
            max_output_tokens: None,
        };
        Self::with_spec(Arc::new(spec), transcript)
    }

    /// A run of an agent whose shared spec is `spec`.
    pub(crate) fn with_spec(spec: Arc<RunSpec>, transcript: Transcript) -> Self {
        Self {
            spec,
            run_id: RunId::from_u128(0),
            depth: 0,
            transcript,
            turn: 0,
            max_turns: tinyagents_core::RunLimits::DEFAULT_MAX_TURNS,
            phase: Phase::NeedModel,
        }
    }

    /// Sets the tools offered to the model.
    #[must_use]
    pub fn tools(mut self, tools: Arc<[ToolSpec]>) -> Self {
        Arc::make_mut(&mut self.spec).tools = tools;
        self
    }

    /// Sets the turn cap.
    #[must_use]
    pub fn max_turns(mut self, max_turns: u32) -> Self {
        self.max_turns = max_turns;
        self
    }

    /// Sets the run identity stamped on model requests.
    #[must_use]
    pub fn identity(mut self, run_id: RunId, depth: u32) -> Self {
        self.run_id = run_id;
        self.depth = depth;
        self
    }

    /// Requires replies to match this JSON Schema.
    #[must_use]
    pub fn response_format(mut self, schema: Option<Arc<serde_json::Value>>) -> Self {
        Arc::make_mut(&mut self.spec).response_format = schema;
        self
    }

    /// Caps the tokens of each model reply (the request's
    /// `max_output_tokens`; a steering policy may lower it further).
    #[must_use]
    pub fn max_output_tokens(mut self, cap: Option<u32>) -> Self {
        Arc::make_mut(&mut self.spec).max_output_tokens = cap;
        self
    }

    /// What to do next. Calling it again without feeding a result re-issues
    /// the same step (a resumed run redoes the step it was waiting on).
    pub fn next_step(&mut self) -> Result<Step, StepError> {
        match &mut self.phase {
            Phase::NeedModel | Phase::WaitingModel => {
                if self.turn >= self.max_turns {
                    return Err(StepError::MaxTurns {
                        max_turns: self.max_turns,
                    });
                }
                self.phase = Phase::WaitingModel;
                Ok(Step::CallModel(self.request()))
            }
            Phase::NeedTools { calls } | Phase::WaitingTools { calls } => {
                // Shared, never copied: a turn may hold a million calls.
                let calls = calls.clone();
                self.phase = Phase::WaitingTools { calls: calls.clone() };
                Ok(Step::CallTools(calls))
            }
            Phase::Done { text } => Ok(Step::Done(text.clone())),
        }
    }

    fn request(&self) -> ModelRequest {
        ModelRequest {
            agent: self.spec.agent.clone(),
            run_id: self.run_id,
            depth: self.depth,
            turn: self.turn,
            messages: self.transcript.clone(),
            tools: self.spec.tools.clone(),
            tool_choice: ToolChoice::Auto,
            response_format: self.spec.response_format.clone(),
            max_output_tokens: self.spec.max_output_tokens,
        }
    }

    /// Feeds the model's reply.
    pub fn on_model(&mut self, response: ModelResponse) -> Result<(), StepError> {
        if !matches!(self.phase, Phase::WaitingModel | Phase::NeedModel) {
            return Err(StepError::OutOfOrder {
                got: "a model response",
                state: self.phase.name(),
            });
        }
        self.turn += 1;
        let done = response.tool_calls.is_empty();
        self.transcript.push(Message::Assistant {
            content: response.content.clone(),
            tool_calls: response.tool_calls,
        });
        self.phase = if done {
            Phase::Done {
                text: response.content.unwrap_or_else(|| Arc::from("")),
            }
        } else {
            // Read in place from the message just pushed: not copied.
            Phase::NeedTools {
                calls: ToolCalls::of_turn(&self.transcript),
            }
        };
        Ok(())
    }

    /// Feeds the outcomes of the tool calls, in the order of the calls.
    pub fn on_tools(&mut self, outcomes: Vec<ToolOutcome>) -> Result<(), StepError> {
        let expected = match &self.phase {
            Phase::WaitingTools { calls } | Phase::NeedTools { calls } => calls.len(),
            other => {
                return Err(StepError::OutOfOrder {
                    got: "tool outcomes",
                    state: other.name(),
                });
            }
        };
        if outcomes.len() != expected {
            return Err(StepError::OutcomeCount {
                expected,
                got: outcomes.len(),
            });
        }
        for o in outcomes {
            self.transcript.push(Message::Tool {
                call_id: o.call_id,
                name: o.name,
                content: o.content,
                is_error: o.is_error,
            });
        }
        self.phase = Phase::NeedModel;
        Ok(())
    }

    /// True when the next step is running tool calls.
    pub(crate) fn wants_tools(&self) -> bool {
        matches!(self.phase, Phase::NeedTools { .. } | Phase::WaitingTools { .. })
    }

    /// True when the next step is a model call (a safe boundary for steering).
    pub fn wants_model(&self) -> bool {
        matches!(self.phase, Phase::NeedModel | Phase::WaitingModel)
    }

    /// Replaces the run's instructions: the system message is swapped for
    /// `text` (or added), the rest of the transcript is kept in order. This
    /// copies the transcript once; it is a rare, explicit operation.
    pub fn replace_instructions(&mut self, text: &str) {
        let rest = self
            .transcript
            .iter()
            .filter(|m| !matches!(m, Message::System { .. }))
            .cloned()
            .collect::<Vec<_>>();
        let mut t = Transcript::new();
        t.push(Message::system(text));
        for m in rest {
            t.push(m);
        }
        self.transcript = t;
    }

    /// Adds a message before the next model call (e.g. a follow-up input).
    pub fn push_message(&mut self, message: Message) {
        self.transcript.push(message);
    }

    /// The transcript so far.
    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    /// Model turns taken.
    pub fn turns(&self) -> u32 {
        self.turn
    }

    /// True once the run has a final answer.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done { .. })
    }

    /// The agent's name.
    pub fn agent(&self) -> &Arc<str> {
        &self.spec.agent
    }

    /// The newest assistant text: the best partial answer.
    pub fn last_text(&self) -> Option<Arc<str>> {
        self.transcript.iter_rev().find_map(|m| match m {
            Message::Assistant { content: Some(c), .. } if !c.is_empty() => Some(c.clone()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_turns_stops_the_loop() {
        let mut run = AgentRun::new("a", [Message::user("x")]).max_turns(1);
        run.next_step().unwrap();
        run.on_model(ModelResponse::tool_calls(vec![ToolCall::raw("c", "t", "{}")]))
            .unwrap();
        let Step::CallTools(calls) = run.next_step().unwrap() else {
            panic!("expected tools")
        };
        run.on_tools(vec![ToolOutcome::ok(&calls[0], "r")]).unwrap();
        assert_eq!(run.next_step().unwrap_err(), StepError::MaxTurns { max_turns: 1 });
    }

    #[test]
    fn out_of_order_results_are_rejected() {
        let mut run = AgentRun::new("a", [Message::user("x")]);
        assert!(matches!(run.on_tools(vec![]), Err(StepError::OutOfOrder { .. })));
        run.next_step().unwrap();
        run.on_model(ModelResponse::tool_calls(vec![ToolCall::raw("c", "t", "{}")]))
            .unwrap();
        assert!(matches!(
            run.on_model(ModelResponse::text("x")),
            Err(StepError::OutOfOrder { .. })
        ));
        assert_eq!(
            run.on_tools(vec![]),
            Err(StepError::OutcomeCount { expected: 1, got: 0 })
        );
    }

    #[test]
    fn a_run_saved_while_waiting_reissues_the_same_step() {
        let mut run = AgentRun::new("a", [Message::user("x")]);
        let Step::CallModel(first) = run.next_step().unwrap() else {
            panic!()
        };
        let saved: AgentRun = serde_json::from_str(&serde_json::to_string(&run).unwrap()).unwrap();
        let mut resumed = saved;
        let Step::CallModel(again) = resumed.next_step().unwrap() else {
            panic!()
        };
        assert_eq!(first.messages, again.messages);
        assert_eq!(first.turn, again.turn);
    }

    #[test]
    fn pending_tool_calls_are_read_from_the_transcript_and_survive_a_checkpoint() {
        let mut run = AgentRun::new("a", [Message::user("x")]);
        run.next_step().unwrap();
        let calls = vec![ToolCall::raw("c1", "t", "{}"), ToolCall::raw("c2", "u", "{}")];
        run.on_model(ModelResponse::tool_calls(calls.clone())).unwrap();
        let Step::CallTools(step) = run.next_step().unwrap() else {
            panic!("expected tools")
        };
        let Some(Message::Assistant { tool_calls, .. }) = run.transcript().last() else {
            panic!("expected the assistant turn")
        };
        assert!(
            std::ptr::eq(step.as_ptr(), tool_calls.as_ptr()),
            "the step must not copy the calls"
        );
        assert_eq!(&*step, calls.as_slice());
        // Another message after the turn does not change the pending calls.
        run.push_message(Message::user("later"));
        let mut restored: AgentRun = serde_json::from_str(&serde_json::to_string(&run).unwrap()).unwrap();
        assert_eq!(restored, run);
        let Step::CallTools(again) = restored.next_step().unwrap() else {
            panic!("expected tools")
        };
        assert_eq!(&*again, calls.as_slice());
    }

    #[test]
    fn requests_share_the_transcript_instead_of_copying_it() {
        let mut run = AgentRun::new("a", [Message::user("x")]);
        let Step::CallModel(req) = run.next_step().unwrap() else {
            panic!()
        };
        assert!(req.messages.ptr_eq(run.transcript()));
    }
}
