//! [`LiveHub`]: the tree of a run in progress, fed by its events.
//!
//! The hub is an [`EventSink`] (and an [`IoRecorder`], for transcripts):
//! `emit` pushes onto a queue, and a thread applies events to a shared
//! [`RunTree`], keeps each run's records for the detail view, bumps a
//! version number and wakes the page's server-sent-event streams. Tee it
//! with a [`TraceSink`](tinyagents_trace::TraceSink) to record and watch at
//! once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crossbeam_channel::Sender;
use tinyagents_core::{Event, EventKind, EventSink, RunId};
use tinyagents_trace::{IoRecorder, ModelIoRecord, Record, RunTree};

#[allow(clippy::large_enum_variant)] // `Event` is the hot variant: boxing it would cost an allocation per event
enum Msg {
    Event(Event),
    ModelIo(Box<ModelIoRecord>),
}

/// Shared state of a live run.
#[derive(Default)]
pub(crate) struct LiveState {
    pub(crate) tree: RunTree,
    pub(crate) records: HashMap<RunId, Vec<Record>>,
}

/// The live side of the debugger (see the module docs).
pub struct LiveHub {
    tx: Sender<Msg>,
    pub(crate) state: Arc<RwLock<LiveState>>,
    pub(crate) version: Arc<AtomicU64>,
    pub(crate) changes: tokio::sync::watch::Receiver<u64>,
}

impl std::fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHub")
            .field("version", &self.version.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LiveHub {
    /// A hub with an empty tree.
    pub fn new() -> Arc<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<Msg>();
        let state: Arc<RwLock<LiveState>> = Arc::default();
        let version = Arc::new(AtomicU64::new(0));
        let (notify, changes) = tokio::sync::watch::channel(0u64);
        let (st, ver) = (state.clone(), version.clone());
        let spawned = std::thread::Builder::new()
            .name("tinyagents-ui-live".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter().take(4096));
                    if let Ok(mut s) = st.write() {
                        for m in batch {
                            apply(&mut s, m);
                        }
                        s.tree.finish();
                    }
                    let v = ver.fetch_add(1, Ordering::SeqCst) + 1;
                    let _ = notify.send(v);
                }
            });
        if spawned.is_err() {
            // Without the thread the hub still answers with an empty tree.
            version.store(u64::MAX, Ordering::SeqCst);
        }
        Arc::new(Self {
            tx,
            state,
            version,
            changes,
        })
    }

    /// Number of updates applied so far.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// A copy of the current tree.
    pub fn tree(&self) -> RunTree {
        self.state.read().map(|s| s.tree.clone()).unwrap_or_default()
    }
}

fn apply(s: &mut LiveState, m: Msg) {
    match m {
        Msg::Event(e) => {
            s.tree.apply_event(&e);
            let child = match &e.kind {
                EventKind::SubAgentStarted { child_run_id, .. }
                | EventKind::SubAgentCompleted { child_run_id, .. }
                | EventKind::SubAgentReused { child_run_id, .. } => Some(*child_run_id),
                _ => None,
            };
            let rec = Record::Event(e);
            if let Some(c) = child {
                s.records.entry(c).or_default().push(rec.clone());
            }
            if let Some(r) = rec.run_id() {
                s.records.entry(r).or_default().push(rec);
            }
        }
        Msg::ModelIo(r) => {
            let rec = Record::ModelIo(*r);
            s.tree.apply(&rec);
            if let Some(id) = rec.run_id() {
                s.records.entry(id).or_default().push(rec);
            }
        }
    }
}

impl EventSink for LiveHub {
    fn emit(&self, event: Event) {
        let _ = self.tx.send(Msg::Event(event));
    }
}

impl IoRecorder for LiveHub {
    fn wants_model_io(&self) -> bool {
        true
    }
    fn record_model_io(&self, record: ModelIoRecord) {
        let _ = self.tx.send(Msg::ModelIo(Box::new(record)));
    }
}
