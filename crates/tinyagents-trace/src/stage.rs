//! Per-thread staging of lifecycle events on their way to the writer.
//!
//! Handing events to the writer thread one by one through the shared queue
//! cost the run's threads more than building them: each push is a
//! compare-and-swap on the queue's tail, which the run's threads take turns
//! owning, and a write into a slot the writer thread read last. Measured on
//! a 1,000,000-sub-agent run (2 events each): about 17–19 % of the run
//! (medians over 24 rounds), against nothing measurable when each thread
//! hands over batches.
//!
//! So a sink that writes lifecycle events only (no sampling, parent views
//! left out: [`TraceSink`](crate::TraceSink)'s default) stages the start
//! and end events of non-root runs in a small buffer per emitting thread
//! ([`Stage`]) and sends a full batch of [`STAGE_BATCH`] as one message.
//! The writer also collects every stage's partial batch each time it wakes
//! (every few milliseconds), before a flush or close, and before it ends a
//! root's trace, so nothing waits longer than a nap and a root's trace is
//! complete when it ends.
//!
//! Events of different threads may then reach the file in a different
//! order than their sequence numbers (a child's start before its parent's,
//! a run's end before its start when the run moved threads): the file is
//! in the order the writer received events, `seq` is the order of the tree,
//! and [`RunTree`](crate::RunTree) builds the same tree from either order.
//! Everything else (root events, parent views, failures of tool calls,
//! steering, graph events) first sends the emitting thread's stage, then
//! itself, so each thread's own order and every cause-before-effect the
//! writer relies on are kept.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tinyagents_core::{Event, EventKind};

/// Events per staged batch.
pub(crate) const STAGE_BATCH: usize = 64;

/// Sinks a thread stages for at once. A thread emitting to more open sinks
/// (a sink per run, many runs live) sends to the others one event at a
/// time: the look-up of its stage stays a scan of a few entries.
const STAGES_PER_THREAD: usize = 8;

/// One thread's staged events for one sink.
#[derive(Default)]
struct Stage {
    events: Mutex<Vec<Event>>,
    /// Set (under the lock) when the sink closed: later events are refused.
    closed: AtomicBool,
}

/// What became of an event given to [`Stages::stage`].
#[allow(clippy::large_enum_variant)] // the refused event is handed back, not boxed: boxing would allocate per event
pub(crate) enum Staged {
    /// It waits in this thread's stage.
    Held,
    /// The stage filled: send this batch (the event included).
    Full(Vec<Event>),
    /// It could not be staged (the sink is closed, or the thread already
    /// stages for as many sinks as it may): send it alone.
    Refused(Event),
    /// Emitted while the thread's storage was being torn down (from a
    /// destructor at thread exit): it is gone, count it as dropped.
    Lost,
}

/// The stages of one sink.
pub(crate) struct Stages {
    id: u64,
    /// Every thread's stage; `None` once the sink closed (no new stage is
    /// made then: an event after close is sent, and counted as dropped).
    all: Mutex<Option<Vec<Arc<Stage>>>>,
}

thread_local! {
    /// This thread's stages, one per sink it emitted to.
    static MINE: RefCell<Vec<(u64, Arc<Stage>)>> = const { RefCell::new(Vec::new()) };
}

/// Whether `event` may wait in a stage: the start and end of a run that is
/// not a root.
pub(crate) fn stageable(event: &Event) -> bool {
    event.run_id != event.root_run_id
        && matches!(
            event.kind,
            EventKind::RunStarted { .. } | EventKind::RunCompleted { .. } | EventKind::RunFailed { .. }
        )
}

impl Stages {
    pub(crate) fn new() -> Arc<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            all: Mutex::new(Some(Vec::new())),
        })
    }

    /// This thread's stage in `mine`, created and registered on first use
    /// when `create` is set.
    fn mine<'m>(&self, mine: &'m mut Vec<(u64, Arc<Stage>)>, create: bool) -> Option<&'m Stage> {
        let at = match mine.iter().position(|(id, _)| *id == self.id) {
            Some(at) => at,
            None if !create => return None,
            None => {
                // Stages of closed sinks are forgotten here.
                mine.retain(|(_, s)| !s.closed.load(Ordering::Relaxed));
                if mine.len() >= STAGES_PER_THREAD {
                    return None;
                }
                let stage = Arc::new(Stage::default());
                self.all.lock().ok()?.as_mut()?.push(stage.clone());
                mine.push((self.id, stage));
                mine.len() - 1
            }
        };
        mine.get(at).map(|(_, stage)| &**stage)
    }

    /// Runs `f` on this thread's stage, if it has one; `None` when not, or
    /// when the thread's storage is gone (the thread is exiting) or in use.
    fn with_mine<R>(&self, f: impl FnOnce(&Stage) -> R) -> Option<R> {
        MINE.try_with(|cell| {
            let mut mine = cell.try_borrow_mut().ok()?;
            self.mine(&mut mine, false).map(f)
        })
        .ok()
        .flatten()
    }

    /// Stages `event` on this thread. (The event is moved straight into
    /// the stage: each move of an event is a 200-byte copy.)
    #[inline]
    pub(crate) fn stage(&self, event: Event) -> Staged {
        MINE.try_with(move |cell| {
            let Ok(mut mine) = cell.try_borrow_mut() else {
                return Staged::Refused(event);
            };
            let Some(stage) = self.mine(&mut mine, true) else {
                return Staged::Refused(event);
            };
            let Ok(mut events) = stage.events.lock() else {
                return Staged::Refused(event);
            };
            if stage.closed.load(Ordering::Relaxed) {
                return Staged::Refused(event);
            }
            events.push(event);
            if events.len() >= STAGE_BATCH {
                Staged::Full(std::mem::replace(&mut *events, Vec::with_capacity(STAGE_BATCH)))
            } else {
                Staged::Held
            }
        })
        .unwrap_or(Staged::Lost)
    }

    /// This thread's staged events, to be sent before an event that must
    /// not overtake them.
    pub(crate) fn take_mine(&self) -> Option<Vec<Event>> {
        self.with_mine(|stage| {
            let mut events = stage.events.lock().ok()?;
            (!events.is_empty()).then(|| std::mem::take(&mut *events))
        })
        .flatten()
    }

    /// Every stage's events (writer). With `closing`, the stages refuse
    /// events from now on. Stages of threads that exited are dropped.
    pub(crate) fn take_all(&self, closing: bool) -> Vec<Vec<Event>> {
        let mut batches = Vec::new();
        let Ok(mut guard) = self.all.lock() else { return batches };
        let Some(all) = guard.as_mut() else { return batches };
        all.retain(|stage| {
            if let Ok(mut events) = stage.events.lock() {
                if closing {
                    stage.closed.store(true, Ordering::Relaxed);
                }
                if !events.is_empty() {
                    batches.push(std::mem::take(&mut *events));
                }
            }
            // Kept while its thread may still stage into it.
            !closing && Arc::strong_count(stage) > 1
        });
        if closing {
            *guard = None;
        }
        batches
    }
}
