//! [`GatedModel`]: holds every call until `n` calls are in flight.
//!
//! The memory probe needs a moment at which all N sub-agents of a fan-out
//! exist at once. With an instant model, early children finish while later
//! ones are still being spawned, so the heap never holds all of them. The
//! gate makes each call wait until the `n`-th call arrives, then releases
//! them all and answers with one text turn. The instant the gate opens is
//! the instant all N children are in flight; its `on_open` hook samples the
//! heap there.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tinyagents_core::{BoxFuture, Model, ModelError, ModelRequest, ModelResponse, Usage};
use tokio::sync::Semaphore;

type OpenHook = dyn Fn() + Send + Sync;

/// A model whose calls all wait until `n` of them are waiting (see the
/// module docs). After the gate has opened, later calls pass straight through.
pub struct GatedModel {
    n: usize,
    arrived: AtomicUsize,
    gate: Semaphore,
    reply: Arc<str>,
    on_open: Box<OpenHook>,
}

impl std::fmt::Debug for GatedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatedModel")
            .field("n", &self.n)
            .field("arrived", &self.arrived.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl GatedModel {
    /// A gate for `n` calls that answers `reply`; `on_open` runs once, on the
    /// task of the `n`-th call, before any call is released.
    pub fn new(n: usize, reply: impl Into<Arc<str>>, on_open: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            n,
            arrived: AtomicUsize::new(0),
            gate: Semaphore::new(0),
            reply: reply.into(),
            on_open: Box::new(on_open),
        }
    }

    /// Calls that have reached the gate.
    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::Relaxed)
    }
}

impl Model for GatedModel {
    fn id(&self) -> &str {
        "gated"
    }

    fn complete<'a>(&'a self, _request: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let arrived = self.arrived.fetch_add(1, Ordering::AcqRel) + 1;
            if arrived == self.n {
                (self.on_open)();
                self.gate.add_permits(Semaphore::MAX_PERMITS);
            } else if arrived < self.n {
                let permit = self.gate.acquire().await.map_err(|e| ModelError::Other {
                    message: format!("gate closed: {e}"),
                })?;
                permit.forget();
            }
            Ok(ModelResponse::text(self.reply.clone()).with_usage(Usage::call(1, 1)))
        })
    }
}
