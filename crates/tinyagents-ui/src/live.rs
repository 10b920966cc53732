//! [`LiveHub`]: the tree of a run in progress, fed by its events.
//!
//! The hub is an [`EventSink`] (and an [`IoRecorder`], for transcripts):
//! `emit` pushes onto a queue, and a thread applies events to a shared
//! [`RunTree`], keeps each run's records for the detail view, bumps a
//! version number and wakes the page's server-sent-event streams. Tee it
//! with a [`TraceSink`](tinyagents_trace::TraceSink) to record and watch at
//! once.
//!
//! [`LiveHub::follow`] feeds a hub from a trace another process is still
//! writing (a `.jsonl.zst` file or a SQLite trace database): a thread polls
//! the trace with a [`TraceFollower`] and applies what was flushed since,
//! until the root run ends, so `tinyagents ui` on a running trace updates
//! the page like `tinyagents run --ui` does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crossbeam_channel::Sender;
use tinyagents_core::{Event, EventKind, EventSink, RunId};
use tinyagents_trace::{IoRecorder, ModelIoRecord, Record, RunTree, TraceFollower, TraceLocation};

/// How often a followed trace is polled.
const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

#[allow(clippy::large_enum_variant)] // `Event` is the hot variant: boxing it would cost an allocation per event
enum Msg {
    Event(Event),
    ModelIo(Box<ModelIoRecord>),
    /// A record of an unknown kind, from a followed trace.
    Other(Box<Record>),
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
    /// Why following a trace stopped early, or its damaged lines.
    follow_errors: Arc<std::sync::Mutex<Vec<String>>>,
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
            follow_errors: Arc::default(),
            state,
            version,
            changes,
        })
    }

    /// A hub fed by the trace at `location`, which a run (in this process
    /// or another) may still be writing: what is already there at once,
    /// then every flushed block, until the root run ends (see the module
    /// docs).
    pub fn follow(location: TraceLocation) -> Arc<Self> {
        let hub = Self::new();
        let tx = hub.tx.clone();
        let errors = hub.follow_errors.clone();
        let alive = Arc::downgrade(&hub);
        let spawned = std::thread::Builder::new()
            .name("tinyagents-ui-follow".into())
            .spawn(move || {
                let mut follower = TraceFollower::new(location);
                let mut seen_damage = 0;
                loop {
                    // One more poll after the root's end: late events.
                    let ended = follower.root_ended();
                    match follower.poll() {
                        Ok(records) => {
                            for r in records {
                                let msg = match r {
                                    Record::Event(e) => Msg::Event(e),
                                    Record::ModelIo(m) => Msg::ModelIo(Box::new(m)),
                                    other @ Record::Other(_) => Msg::Other(Box::new(other)),
                                };
                                let _ = tx.send(msg);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut v) = errors.lock() {
                                v.push(format!("following the trace stopped: {e}"));
                            }
                            // Wake the page so it shows the banner.
                            let _ = tx.send(Msg::Other(Box::new(Record::Other(tinyagents_trace::OtherRecord {
                                run_id: None,
                                parent_run_id: None,
                                depth: None,
                                seq: None,
                                timestamp_us: None,
                                kind: "follow_error".into(),
                                raw: serde_json::Value::Null,
                            }))));
                            return;
                        }
                    }
                    let damage = follower.damage();
                    if damage.len() > seen_damage
                        && let Ok(mut v) = errors.lock()
                    {
                        v.extend(damage.iter().skip(seen_damage).map(ToString::to_string));
                        seen_damage = damage.len();
                    }
                    if ended || alive.strong_count() == 0 {
                        return;
                    }
                    std::thread::sleep(FOLLOW_INTERVAL);
                }
            });
        if let Err(e) = spawned
            && let Ok(mut v) = hub.follow_errors.lock()
        {
            v.push(format!("cannot follow the trace: {e}"));
        }
        hub
    }

    /// Damage met while following a trace, and why following stopped
    /// early, if it did (empty for a hub fed by a run's events).
    pub fn follow_errors(&self) -> Vec<String> {
        self.follow_errors.lock().map(|v| v.clone()).unwrap_or_default()
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
        Msg::Other(rec) => {
            if let Some(id) = rec.run_id() {
                s.tree.apply(&rec);
                s.records.entry(id).or_default().push(*rec);
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
