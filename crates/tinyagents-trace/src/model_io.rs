//! [`TracedModel`]: records what a model was asked and what it answered.
//!
//! Core events say *that* a model was called (model id, turn, usage, cost),
//! not what it was told. At [`DetailLevel::ModelIo`](crate::DetailLevel)
//! a transcript view and a replay need the content, so the model itself is
//! wrapped: the wrapper forwards every call and hands the new part of the
//! request and the reply to an [`IoRecorder`] (a [`TraceSink`](crate::TraceSink),
//! the UI's live hub, or both through [`TeeRecorder`]).
//!
//! Only the messages new since the run's previous call are recorded (those
//! after the last assistant message), so the trace of an `n`-turn run grows
//! with `n`, not `n²`. Tool results are part of the next call's new
//! messages, so tool I/O is recorded too.

use std::sync::Arc;

use tinyagents_core::{BoxFuture, DeltaFn, Message, Model, ModelError, ModelRequest, ModelResponse, SharedModel};

use crate::format::ModelIoRecord;
use crate::sink::IoRecorder;

/// A model whose calls are recorded (see the module docs).
pub struct TracedModel {
    inner: SharedModel,
    recorder: Arc<dyn IoRecorder>,
}

impl std::fmt::Debug for TracedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedModel").field("model", &self.inner.id()).finish()
    }
}

impl TracedModel {
    /// Wraps `model`, recording into `recorder`.
    pub fn new(model: SharedModel, recorder: Arc<dyn IoRecorder>) -> Self {
        Self { inner: model, recorder }
    }

    /// Wraps `model` and shares the result.
    pub fn shared(model: SharedModel, recorder: Arc<dyn IoRecorder>) -> SharedModel {
        Arc::new(Self::new(model, recorder))
    }

    fn record(&self, request: &ModelRequest, result: &Result<ModelResponse, ModelError>) {
        if !self.recorder.wants_model_io() {
            return;
        }
        self.recorder.record_model_io(ModelIoRecord {
            kind: "model_io".into(),
            run_id: request.run_id,
            depth: request.depth,
            agent: request.agent.clone(),
            model: self.inner.id().into(),
            turn: request.turn,
            timestamp_us: tinyagents_core::event::now_us(),
            messages: new_messages(request),
            response: result.as_ref().ok().cloned(),
            error: result.as_ref().err().map(ToString::to_string),
        });
    }
}

/// The messages of `request` after its last assistant message.
pub fn new_messages(request: &ModelRequest) -> Vec<Message> {
    let mut tail: Vec<Message> = request
        .messages
        .iter_rev()
        .take_while(|m| !matches!(m, Message::Assistant { .. }))
        .cloned()
        .collect();
    tail.reverse();
    tail
}

impl Model for TracedModel {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn complete<'a>(&'a self, request: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let r = self.inner.complete(request).await;
            self.record(request, &r);
            r
        })
    }

    fn complete_streaming<'a>(
        &'a self,
        request: &'a ModelRequest,
        on_delta: &'a DeltaFn<'a>,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let r = self.inner.complete_streaming(request, on_delta).await;
            self.record(request, &r);
            r
        })
    }
}

/// Sends model I/O records to two recorders.
pub struct TeeRecorder(pub Arc<dyn IoRecorder>, pub Arc<dyn IoRecorder>);

impl IoRecorder for TeeRecorder {
    fn wants_model_io(&self) -> bool {
        self.0.wants_model_io() || self.1.wants_model_io()
    }
    fn record_model_io(&self, record: ModelIoRecord) {
        match (self.0.wants_model_io(), self.1.wants_model_io()) {
            (true, true) => {
                self.0.record_model_io(record.clone());
                self.1.record_model_io(record);
            }
            (true, false) => self.0.record_model_io(record),
            (false, true) => self.1.record_model_io(record),
            (false, false) => {}
        }
    }
}

/// A run's transcript rebuilt from its model I/O records: each record's new
/// messages followed by its reply as an assistant message.
pub fn transcript_of(records: &[&ModelIoRecord]) -> Vec<Message> {
    let mut sorted: Vec<&&ModelIoRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.turn, r.timestamp_us));
    let mut out = Vec::new();
    for r in sorted {
        out.extend(r.messages.iter().cloned());
        if let Some(resp) = &r.response {
            out.push(Message::Assistant {
                content: resp.content.clone(),
                tool_calls: resp.tool_calls.clone(),
            });
        }
    }
    out
}
