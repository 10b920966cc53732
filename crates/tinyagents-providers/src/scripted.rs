//! The scripted model.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tinyagents_core::{BoxFuture, Model, ModelError, ModelRequest, ModelResponse, ToolCall};

type ScriptFn = dyn Fn(&ModelRequest) -> Result<ModelResponse, ModelError> + Send + Sync;

enum Source {
    Queue(Mutex<VecDeque<Result<ModelResponse, ModelError>>>),
    Cycle(Vec<Result<ModelResponse, ModelError>>),
    Func(Box<ScriptFn>),
}

/// A deterministic model (see the crate docs).
pub struct ScriptedModel {
    id: String,
    source: Source,
    record: bool,
    delay: Option<Duration>,
    requests: Mutex<Vec<ModelRequest>>,
    calls: AtomicU64,
}

impl std::fmt::Debug for ScriptedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedModel")
            .field("id", &self.id)
            .field("calls", &self.request_count())
            .finish_non_exhaustive()
    }
}

impl ScriptedModel {
    fn with_source(source: Source) -> Self {
        Self {
            id: "scripted".into(),
            source,
            record: true,
            delay: None,
            requests: Mutex::new(Vec::new()),
            calls: AtomicU64::new(0),
        }
    }

    /// Responses consumed in order; a call after the last fails with
    /// [`ModelError::Script`].
    pub fn new(responses: impl IntoIterator<Item = ModelResponse>) -> Self {
        Self::with_source(Source::Queue(Mutex::new(responses.into_iter().map(Ok).collect())))
    }

    /// Responses and errors consumed in order.
    pub fn with_results(results: impl IntoIterator<Item = Result<ModelResponse, ModelError>>) -> Self {
        Self::with_source(Source::Queue(Mutex::new(results.into_iter().collect())))
    }

    /// Responses repeated forever: call `n` gets `responses[n % len]`.
    pub fn cycle(responses: impl IntoIterator<Item = ModelResponse>) -> Self {
        Self::with_source(Source::Cycle(responses.into_iter().map(Ok).collect()))
    }

    /// Responses computed from the request.
    pub fn from_fn(f: impl Fn(&ModelRequest) -> Result<ModelResponse, ModelError> + Send + Sync + 'static) -> Self {
        Self::with_source(Source::Func(Box::new(f)))
    }

    /// Sets the model id (used for pricing and shown in events).
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Waits this long before answering (on the tokio timer).
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Stops recording requests (for benchmarks of millions of calls).
    #[must_use]
    pub fn without_recording(mut self) -> Self {
        self.record = false;
        self
    }

    /// A response calling one tool, with a generated call id.
    pub fn call(tool: &str, args: serde_json::Value) -> ModelResponse {
        ModelResponse::tool_calls(vec![ToolCall::new("", tool, &args)])
    }

    /// A response calling several tools in one turn.
    pub fn calls<'a>(calls: impl IntoIterator<Item = (&'a str, serde_json::Value)>) -> ModelResponse {
        ModelResponse::tool_calls(calls.into_iter().map(|(t, a)| ToolCall::new("", t, &a)).collect())
    }

    /// Every request received so far (O(1) snapshots of the transcript).
    pub fn requests(&self) -> Vec<ModelRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Number of calls received (counted even when not recording).
    pub fn request_count(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Queued responses left (0 for cycles and functions).
    pub fn remaining(&self) -> usize {
        match &self.source {
            Source::Queue(q) => q.lock().map(|q| q.len()).unwrap_or(0),
            _ => 0,
        }
    }

    fn next(&self, n: u64, req: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let mut resp = match &self.source {
            Source::Queue(q) => {
                let next = q.lock().ok().and_then(|mut q| q.pop_front());
                next.unwrap_or_else(|| {
                    Err(ModelError::Script {
                        message: format!(
                            "scripted model {:?} has no response left for call {} (agent {}, turn {})",
                            self.id,
                            n + 1,
                            req.agent,
                            req.turn
                        ),
                    })
                })?
            }
            Source::Cycle(items) => {
                if items.is_empty() {
                    return Err(ModelError::Script {
                        message: "scripted model has an empty cycle".into(),
                    });
                }
                items[(n % items.len() as u64) as usize].clone()?
            }
            Source::Func(f) => f(req)?,
        };
        if resp.usage.requests == 0 {
            resp.usage.requests = 1;
        }
        for (i, call) in resp.tool_calls.iter_mut().enumerate() {
            if call.id.is_empty() {
                call.id = format!("call_{n}_{i}").into();
            }
        }
        Ok(resp)
    }
}

impl Model for ScriptedModel {
    fn id(&self) -> &str {
        &self.id
    }

    fn complete<'a>(&'a self, request: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::Relaxed);
            if self.record
                && let Ok(mut r) = self.requests.lock()
            {
                r.push(request.clone());
            }
            if let Some(d) = self.delay {
                tokio::time::sleep(d).await;
            }
            self.next(n, request)
        })
    }
}
