//! [`TraceSink`]: an [`EventSink`] that persists run trees off the hot path.
//!
//! # The hot path
//! `emit` runs on the task that produced the event. It does two things: a
//! `match` on the kind against the [`DetailLevel`] (a token delta at
//! lifecycle level is dropped right there), and a hand-over to the writer
//! thread. No serialization, no I/O. At lifecycle level (parent views left
//! out, no sampling: the default) the start and end of each sub-agent go
//! into a small stage owned by the emitting thread (an uncontended lock and
//! a push), sent to the writer as one message every 64 events; the writer
//! also takes every stage's partial batch each time it wakes, before a
//! flush or close, and before it writes a root's end, so an event waits at
//! most one nap (a few milliseconds) and a root's end is its trace's last
//! line. Every other event is sent on its own on a bounded lock-free queue,
//! after its thread's stage. Why: pushing events one by one onto the shared
//! queue cost the run's threads more than the writer's whole work (a
//! compare-and-swap on the queue's tail the threads take turns owning, and
//! a slot the writer read last), about 17–19 % of a 1,000,000-sub-agent run.
//! Events of different threads may reach the file out of sequence order;
//! `seq` orders the tree and [`RunTree`](crate::RunTree) builds the same
//! tree from either order.
//!
//! Two answers to the run tree keep events from being built at all: the
//! sink `accepts` only the kinds its detail level keeps (the run does not
//! read the clock or take a sequence number for the rest), and it does not
//! want a parent's `sub_agent_started` / successful `sub_agent_completed`
//! about a child whose own `run_started` / `run_completed` reach it
//! (`wants_parent_view`; spawners ask `RunContext::parent_view_needed`).
//! A lifecycle trace of a sub-agent is then two events: its start and its
//! end. A parent view that still comes (a spawner that does not ask, a
//! failed child) is written, or held back and dropped when the child's own
//! event makes it redundant.
//!
//! # The writer thread
//! It drains the queue in batches and, per event: updates the root's summary
//! (agents, depth, usage, cost, failures: counted *before* sampling, so
//! counts are exact even when runs are sampled out), applies sampling,
//! applies the redaction hook and writes one JSON line into the root's batch
//! (a sub-agent's start is held until the next event: when that is the same
//! run's completion, the two become one `rr` line).
//! A batch is compressed as one zstd frame (by a single compression context
//! for all roots) and appended to the file when it reaches 64 KiB, every
//! `flush_interval` (a crash loses at most that much) and when the root run
//! ends, at which point the manifest is written. The thread naps between
//! polls of the queue (2 to 4 ms when it is caught up), so it handles
//! thousands of events per wake-up rather than taking a core away from the
//! run a few events at a time. [`TraceSink::flush`] and
//! [`TraceSink::close`] wait for the writer; dropping the last handle closes
//! the sink.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use tinyagents_core::{Event, EventClass, EventKind, EventSink, RunId};

use crate::config::{Backpressure, DetailLevel, Redactor, Sampling, TraceConfig};
use crate::error::TraceError;
use crate::format::{
    LineCursor, ModelIoRecord, TraceHeader, TraceManifest, TraceStatus, manifest_file_name, trace_file_name,
    write_event_line, write_run_line,
};
use crate::stage::{Staged, Stages};

/// Whether events of `class` are kept at `level` (decided before they are
/// built).
pub fn keeps_class(level: DetailLevel, class: EventClass) -> bool {
    match class {
        EventClass::ModelCall | EventClass::ToolCallStarted => level >= DetailLevel::ModelIo,
        EventClass::ModelDelta => level >= DetailLevel::Deltas,
    }
}

/// Whether an event of `kind` is kept at `level` (decided on the hot path).
pub fn keeps(level: DetailLevel, kind: &EventKind) -> bool {
    match kind {
        // A failed tool call is lifecycle: kept at every level.
        EventKind::ToolCallCompleted { error, .. } => error.is_some() || level >= DetailLevel::ModelIo,
        // Lifecycle, and every kind added after this build: kept.
        other => other.class().is_none_or(|c| keeps_class(level, c)),
    }
}

#[allow(clippy::large_enum_variant)] // `Event` is the hot variant: boxing it would cost an allocation per event
enum Msg {
    Event(Event),
    /// Events staged by one thread (see [`crate::stage`]).
    Batch(Vec<Event>),
    ModelIo(Box<ModelIoRecord>),
    Flush(Sender<Result<(), String>>),
    Close(Sender<SinkReport>),
}

/// What the writer did, returned by [`TraceSink::close`].
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SinkReport {
    /// Manifests of the roots written by this sink.
    pub roots: Vec<TraceManifest>,
    /// Lines written.
    pub lines: u64,
    /// Events dropped under [`Backpressure::DropAndCount`].
    pub dropped_events: u64,
    /// Model I/O records for runs the sink never saw start (not written).
    pub orphan_records: u64,
    /// I/O errors met while writing (the sink keeps going).
    pub errors: Vec<String>,
}

/// Receives model I/O records (implemented by [`TraceSink`]; the web UI's
/// live hub implements it too).
pub trait IoRecorder: Send + Sync + 'static {
    /// Whether records are wanted at all (false: the model is not even cloned).
    fn wants_model_io(&self) -> bool;
    /// Receives one record.
    fn record_model_io(&self, record: ModelIoRecord);
}

/// The trace sink (see the module docs).
///
/// ```
/// use std::sync::Arc;
/// use tinyagents_core::{EventKind, RunConfig, RunContext};
/// use tinyagents_trace::{TraceConfig, TraceSink, TraceStore};
///
/// let dir = std::env::temp_dir().join(format!("ta-doc-sink-{}", std::process::id()));
/// let sink = TraceSink::new(TraceConfig::new(&dir)).unwrap();
/// let root = RunContext::root("demo", &RunConfig::new().sink(sink.clone()));
/// root.emit(EventKind::RunStarted { name: "demo".into() });
/// root.emit(EventKind::RunCompleted {
///     usage: Default::default(),
///     total_usage: Default::default(),
///     total_cost: Default::default(),
///     failures: 0,
/// });
/// let report = sink.close().unwrap();
/// assert_eq!(report.roots.len(), 1);
/// let listed = TraceStore::new(&dir).list().unwrap();
/// assert_eq!(listed[0].manifest.name, "demo");
/// # std::fs::remove_dir_all(&dir).ok();
/// ```
pub struct TraceSink {
    tx: Sender<Msg>,
    detail: DetailLevel,
    backpressure: Backpressure,
    dropped: Arc<AtomicU64>,
    closed: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    writer: std::thread::Thread,
    report: Mutex<Option<SinkReport>>,
    dir: PathBuf,
    sqlite: bool,
    /// Parent views are left out (see [`TraceConfig::elide_parent_view`]).
    elide: bool,
    /// Lifecycle events are staged per thread (see [`crate::stage`]).
    stages: Option<Arc<Stages>>,
}

impl std::fmt::Debug for TraceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSink")
            .field("dir", &self.dir)
            .field("detail", &self.detail)
            .finish_non_exhaustive()
    }
}

impl TraceSink {
    /// Starts a sink writing into `config.dir` (created if missing).
    pub fn new(config: TraceConfig) -> Result<Arc<Self>, TraceError> {
        // The SQLite database is opened here, so a bad file is an error now,
        // not a line in the final report.
        let db = match &config.sqlite {
            Some(path) => Some(crate::sqlite::SqliteOut::open(path)?),
            None => {
                std::fs::create_dir_all(&config.dir).map_err(|e| TraceError::io(&config.dir, e))?;
                None
            }
        };
        let elide = config.elide_parent_view && config.sampling.is_none();
        // Staging keeps the order the writer needs only when it sees no
        // parent views, samples nothing and keeps nothing but lifecycle
        // events (see `crate::stage`).
        let stages = (elide && config.detail == DetailLevel::Lifecycle).then(Stages::new);
        // A staged message is a batch: the queue then holds about as many
        // events as it would one by one.
        let capacity = match stages {
            Some(_) => (config.queue_capacity / crate::stage::STAGE_BATCH).max(64),
            None => config.queue_capacity,
        };
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let detail = config.detail;
        let backpressure = config.backpressure;
        let dir = config.sqlite.clone().unwrap_or_else(|| config.dir.clone());
        let sqlite = config.sqlite.is_some();
        let frames = Frames::new(config.compression_level).map_err(|e| TraceError::io(&config.dir, e))?;
        let mut writer = Writer::new(config, frames, dropped.clone());
        writer.db = db;
        writer.stages = stages.clone();
        let thread = std::thread::Builder::new()
            .name("tinyagents-trace".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| TraceError::io(&dir, e))?;
        Ok(Arc::new(Self {
            tx,
            detail,
            backpressure,
            dropped,
            closed: AtomicBool::new(false),
            writer: thread.thread().clone(),
            thread: Mutex::new(Some(thread)),
            report: Mutex::new(None),
            dir,
            sqlite,
            elide,
            stages,
        }))
    }

    /// The directory traces are written to (the database file, for a
    /// SQLite sink).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store that reads what this sink writes.
    pub fn store(&self) -> crate::TraceStore {
        if self.sqlite {
            crate::TraceStore::sqlite(&self.dir)
        } else {
            crate::TraceStore::new(&self.dir)
        }
    }

    /// The detail level.
    pub fn detail(&self) -> DetailLevel {
        self.detail
    }

    /// Events dropped so far under [`Backpressure::DropAndCount`].
    pub fn dropped_events(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, msg: Msg) {
        let refused = match self.backpressure {
            Backpressure::Block => self.tx.send(msg).err().map(|e| e.0),
            Backpressure::DropAndCount => match self.tx.try_send(msg) {
                Ok(()) => None,
                Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => Some(m),
            },
        };
        if let Some(msg) = refused {
            let n = match &msg {
                Msg::Batch(events) => events.len() as u64,
                _ => 1,
            };
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Writes everything queued so far to disk (blocks until done).
    pub fn flush(&self) -> Result<(), TraceError> {
        let (ack, done) = crossbeam_channel::bounded(1);
        self.tx
            .send(Msg::Flush(ack))
            .map_err(|_| TraceError::WriterStopped("sink is closed".into()))?;
        self.writer.unpark();
        match done.recv() {
            Ok(r) => r.map_err(TraceError::WriterStopped),
            Err(_) => Err(TraceError::WriterStopped("writer thread exited".into())),
        }
    }

    /// Finishes every open trace, writes the manifests and stops the writer.
    /// Later events are counted as dropped. Calling it twice returns the
    /// same report.
    pub fn close(&self) -> Result<SinkReport, TraceError> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return self
                .report
                .lock()
                .ok()
                .and_then(|r| r.clone())
                .ok_or_else(|| TraceError::WriterStopped("sink already closed".into()));
        }
        let (ack, done) = crossbeam_channel::bounded(1);
        let sent = self.tx.send(Msg::Close(ack)).is_ok();
        self.writer.unpark();
        let report = if sent { done.recv().ok() } else { None };
        if let Ok(mut t) = self.thread.lock()
            && let Some(handle) = t.take()
        {
            let _ = handle.join();
        }
        let report = report.ok_or_else(|| TraceError::WriterStopped("writer thread exited".into()))?;
        if let Ok(mut r) = self.report.lock() {
            *r = Some(report.clone());
        }
        Ok(report)
    }
}

impl EventSink for TraceSink {
    #[inline]
    fn emit(&self, event: Event) {
        if !keeps(self.detail, &event.kind) {
            return;
        }
        let Some(stages) = &self.stages else {
            return self.send(Msg::Event(event));
        };
        if crate::stage::stageable(&event) {
            match stages.stage(event) {
                Staged::Held => {}
                Staged::Full(batch) => self.send(Msg::Batch(batch)),
                Staged::Refused(event) => self.send(Msg::Event(event)),
                Staged::Lost => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        } else {
            // This thread's staged events go first: nothing overtakes them.
            if let Some(batch) = stages.take_mine() {
                self.send(Msg::Batch(batch));
            }
            self.send(Msg::Event(event));
        }
    }
    #[inline]
    fn accepts(&self, kind: &EventKind) -> bool {
        keeps(self.detail, kind)
    }
    fn wants_parent_view(&self) -> bool {
        !self.elide
    }
    fn accepts_class(&self, class: EventClass) -> bool {
        keeps_class(self.detail, class)
    }
}

impl IoRecorder for TraceSink {
    fn wants_model_io(&self) -> bool {
        self.detail >= DetailLevel::ModelIo
    }
    fn record_model_io(&self, record: ModelIoRecord) {
        if self.wants_model_io() {
            self.send(Msg::ModelIo(Box::new(record)));
        }
    }
}

impl Drop for TraceSink {
    fn drop(&mut self) {
        if !self.closed.load(Ordering::SeqCst) {
            let _ = self.close();
        }
    }
}

/// An item the writer may hold back (sampling).
#[allow(clippy::large_enum_variant)] // `Event` is the hot variant: boxing it would cost an allocation per event
enum Held {
    Event(Event),
    ModelIo(Box<ModelIoRecord>),
}

/// A cheap hasher for run ids (random high half, counter low half): the
/// writer looks several up per event, and SipHash would be a visible part
/// of its budget.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // A `RunId` hashes as a slice of two `u64`s, handed over as 16
        // bytes: mix them 8 at a time, not byte by byte.
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(word));
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let folded = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
        self.0 = (self.0.rotate_left(5) ^ folded).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type IdMap<V> = HashMap<RunId, V, std::hash::BuildHasherDefault<IdHasher>>;
type IdSet = HashSet<RunId, std::hash::BuildHasherDefault<IdHasher>>;

/// The open (and finished) roots, with the last one looked up remembered:
/// a writer handles one root at a time for long stretches, and each line
/// looks its root up three times (summary, open, append).
#[derive(Default)]
struct Roots {
    files: Vec<(RunId, RootFile)>,
    index: IdMap<usize>,
    last: Option<(RunId, usize)>,
}

impl Roots {
    fn slot(&mut self, root: RunId) -> Option<usize> {
        if let Some((id, i)) = self.last
            && id == root
        {
            return Some(i);
        }
        let i = *self.index.get(&root)?;
        self.last = Some((root, i));
        Some(i)
    }

    fn get_mut(&mut self, root: &RunId) -> Option<&mut RootFile> {
        let i = self.slot(*root)?;
        self.files.get_mut(i).map(|(_, f)| f)
    }

    fn get_or_insert_with(&mut self, root: RunId, make: impl FnOnce() -> RootFile) -> Option<&mut RootFile> {
        let i = match self.slot(root) {
            Some(i) => i,
            None => {
                let i = self.files.len();
                self.files.push((root, make()));
                self.index.insert(root, i);
                self.last = Some((root, i));
                i
            }
        };
        self.files.get_mut(i).map(|(_, f)| f)
    }
}

struct SampledOut {
    held: Vec<Held>,
    overflow: u64,
}

struct RootFile {
    path: PathBuf,
    /// The open file (compressed frames are appended to it).
    out: Option<BufWriter<File>>,
    manifest: TraceManifest,
    ended: bool,
    dirty: bool,
    /// Its row exists in the SQLite database.
    in_db: bool,
    /// Lines not yet given to the encoder.
    pending: Vec<u8>,
    /// How event lines are written (see `Writer::open_root`): compact
    /// lines and where they stand, or `None` for the full form.
    cursor: Option<LineCursor>,
}

/// Bytes of lines batched before they are compressed.
const PENDING_BYTES: usize = 64 * 1024;

impl RootFile {
    fn new(root: RunId, detail: DetailLevel, ts: u64) -> Self {
        Self {
            path: PathBuf::new(),
            out: None,
            manifest: empty_manifest(root, detail, ts),
            ended: false,
            dirty: true,
            in_db: false,
            pending: Vec::new(),
            cursor: Some(LineCursor::new(root, ts)),
        }
    }

    /// Counts the line just added to the batch (holding `events` events),
    /// and compresses the batch into one frame once it is full.
    fn line_added(&mut self, events: u64, frames: &mut Frames, report: &mut SinkReport) {
        self.manifest.events += events;
        self.dirty = true;
        report.lines += 1;
        if self.pending.len() >= PENDING_BYTES
            && let Err(e) = self.drain_pending(frames)
        {
            report.errors.push(e);
        }
    }

    /// Compresses the batched lines into one frame and appends it to the file.
    fn drain_pending(&mut self, frames: &mut Frames) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = match self.out.as_mut() {
            Some(out) => frames
                .compress(&self.pending)
                .and_then(|frame| out.write_all(frame))
                .map_err(|e| format!("{}: {e}", self.path.display())),
            None => Ok(()),
        };
        self.pending.clear();
        result
    }
}

/// One zstd context for every trace, and its output buffer.
///
/// Each batch of lines becomes an independent zstd frame (a file is a
/// sequence of them, which every zstd decoder reads as one stream). Against
/// one streaming encoder per root this keeps a single compression context
/// however many roots are live (a streaming context holds its window, about
/// a megabyte, per root), and it skips the streaming path's copy of the
/// input into that window: with a 1,000,000-sub-agent trace the writer's
/// zstd time fell by about a third (BENCHMARKS.md).
struct Frames {
    cx: zstd::bulk::Compressor<'static>,
    buf: Vec<u8>,
}

impl Frames {
    fn new(level: i32) -> std::io::Result<Self> {
        Ok(Self {
            cx: zstd::bulk::Compressor::new(level)?,
            buf: Vec::new(),
        })
    }

    /// `data` as one frame (valid until the next call).
    fn compress(&mut self, data: &[u8]) -> std::io::Result<&[u8]> {
        self.buf.clear();
        self.buf.reserve(zstd::zstd_safe::compress_bound(data.len()));
        let n = self.cx.compress_to_buffer(data, &mut self.buf)?;
        Ok(self.buf.get(..n).unwrap_or_default())
    }
}

struct Writer {
    config: TraceConfig,
    frames: Frames,
    dropped: Arc<AtomicU64>,
    roots: Roots,
    /// Live run → root, for routing model I/O (only at `ModelIo` level).
    run_roots: IdMap<RunId>,
    /// Children announced by `SubAgentStarted` that have not started yet,
    /// with the announcement held back while it may be redundant.
    /// (Boxed: the map stays a few bytes an entry, so its probes stay in
    /// cache; with events inline its slots were 240 bytes and every probe
    /// missed.)
    announced: IdMap<Option<Box<Event>>>,
    /// Children announced by a held-back parent view that have started
    /// (their end is awaited).
    viewed: IdSet,
    /// Children whose own end event was written (their parent's
    /// `sub_agent_completed` would repeat it).
    ended: IdSet,
    /// Per live parent: children seen so far (sampling).
    child_counts: IdMap<u32>,
    sampled_out: IdMap<SampledOut>,
    line: Vec<u8>,
    report: SinkReport,
    /// The SQLite database, when writing there instead of files.
    db: Option<crate::sqlite::SqliteOut>,
    /// The emitting threads' stages, collected at every wake-up.
    stages: Option<Arc<Stages>>,
    /// A sub-agent's start waiting for the next event (see `write_or_hold`).
    held_start: Option<Event>,
}

impl Writer {
    fn new(config: TraceConfig, frames: Frames, dropped: Arc<AtomicU64>) -> Self {
        Self {
            config,
            frames,
            dropped,
            roots: Roots::default(),
            run_roots: IdMap::default(),
            announced: IdMap::default(),
            viewed: IdSet::default(),
            ended: IdSet::default(),
            child_counts: IdMap::default(),
            sampled_out: IdMap::default(),
            line: Vec::with_capacity(512),
            report: SinkReport::default(),
            db: None,
            stages: None,
            held_start: None,
        }
    }

    /// The writer loop. It polls instead of blocking on the queue: a writer
    /// asleep in `recv` must be woken by a system call on *every* send once
    /// it has caught up, which would put a futex wake-up on the hot path.
    /// Polling with a short, backed-off sleep keeps `emit` a plain push.
    /// After a batch under 4,096 events it naps 2 ms too, so it handles
    /// events thousands at a time: each wake-up takes a core from the run
    /// (a 1,000,000-sub-agent run woke it about 2,000 times with 0.5 ms
    /// naps, 500 times with 2 ms). The queue holds 16 Ki events, so only a
    /// burst above 8 million events a second could fill it during a nap.
    fn run(mut self, rx: Receiver<Msg>) {
        const MIN_IDLE: Duration = Duration::from_micros(2000);
        const SMALL_BATCH: usize = 4096;
        const MAX_IDLE: Duration = Duration::from_millis(4);
        let interval = self.config.flush_interval.max(Duration::from_millis(1));
        let mut last_flush = Instant::now();
        let mut idle = MIN_IDLE;
        loop {
            let mut handled = 0usize;
            loop {
                let msg = match rx.try_recv() {
                    Ok(m) => m,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.collect_stages(true);
                        self.finish_all();
                        return;
                    }
                };
                handled += 1;
                match msg {
                    Msg::Event(e) => self.on_event(e),
                    Msg::Batch(events) => {
                        handled += events.len();
                        for e in events {
                            self.on_event(e);
                        }
                    }
                    Msg::ModelIo(r) => self.on_model_io(r),
                    Msg::Flush(ack) => {
                        self.collect_stages(false);
                        let r = self.flush_all();
                        let _ = ack.send(r);
                        last_flush = Instant::now();
                    }
                    Msg::Close(ack) => {
                        self.collect_stages(true);
                        self.finish_all();
                        let _ = ack.send(std::mem::take(&mut self.report));
                        return;
                    }
                }
                if handled >= 8192 {
                    break;
                }
            }
            handled += self.collect_stages(false);
            if last_flush.elapsed() >= interval {
                if let Err(e) = self.flush_all() {
                    self.report.errors.push(e);
                }
                last_flush = Instant::now();
            }
            if handled == 0 {
                // `flush` and `close` unpark the writer; events never do.
                std::thread::park_timeout(idle);
                idle = (idle * 2).min(MAX_IDLE);
            } else if handled < SMALL_BATCH {
                // Caught up: let events gather instead of looping over one
                // or two at a time (each loop reads the clock and polls the
                // queue; on a busy machine that spinning is CPU the run
                // needs).
                idle = MIN_IDLE;
                std::thread::park_timeout(idle);
            } else {
                idle = MIN_IDLE;
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        let ends_root = event.run_id == event.root_run_id
            && matches!(event.kind, EventKind::RunCompleted { .. } | EventKind::RunFailed { .. });
        if ends_root {
            // Events of the tree still staged by the run's threads happened
            // before its end: they are written first.
            self.collect_stages(false);
        }
        // A parent's view of a child repeats the child's own start and end
        // events. Spawners that know the child reports itself ask the sink
        // first (`RunContext::parent_view_needed`) and send none; a view
        // that still comes (another spawner) is held back and written only
        // when the child's own event does not come (discarded child events,
        // a panic). The maps below stay empty, and cost nothing, when no
        // parent view comes.
        let elide = self.config.elide_parent_view && self.config.sampling.is_none();
        let mut held: Option<Event> = None;
        let mut skip = false;
        let counts_as_new_run = match &event.kind {
            EventKind::RunStarted { .. } => {
                if self.announced.is_empty() {
                    true
                } else {
                    match self.announced.remove(&event.run_id) {
                        None => true,
                        Some(view) => {
                            if elide && view.is_some() {
                                self.viewed.insert(event.run_id);
                            }
                            false
                        }
                    }
                }
            }
            EventKind::SubAgentStarted { child_run_id, .. } if elide => {
                // Held back (moved, not copied) until the child starts.
                let child = *child_run_id;
                let new = !self.announced.contains_key(&child);
                self.summarize(&event, new);
                self.announced.insert(child, Some(Box::new(event)));
                return;
            }
            EventKind::SubAgentStarted { child_run_id, .. } => self.announced.insert(*child_run_id, None).is_none(),
            EventKind::SubAgentCompleted { child_run_id, .. } => {
                match self.announced.remove(child_run_id) {
                    Some(Some(h)) => held = Some(*h),
                    _ => skip = elide && !self.ended.is_empty() && self.ended.remove(child_run_id),
                }
                false
            }
            EventKind::RunCompleted { .. } | EventKind::RunFailed { .. }
                if elide && !self.viewed.is_empty() && self.viewed.remove(&event.run_id) =>
            {
                // Its parent's `sub_agent_completed` would repeat this.
                self.ended.insert(event.run_id);
                false
            }
            _ => false,
        };
        self.summarize(&event, counts_as_new_run);
        if self.config.detail >= DetailLevel::ModelIo {
            match &event.kind {
                EventKind::RunStarted { .. } => {
                    self.run_roots.insert(event.run_id, event.root_run_id);
                }
                EventKind::RunCompleted { .. } | EventKind::RunFailed { .. } => {
                    self.run_roots.remove(&event.run_id);
                }
                _ => {}
            }
        }
        let root = event.root_run_id;
        if let Some(h) = held {
            self.write_event(&h);
        }
        if skip {
            // Held back (announcement) or redundant (completion).
        } else if let Some(sampling) = self.config.sampling {
            self.sample(sampling, event);
        } else {
            self.write_or_hold(event);
        }
        if ends_root {
            self.finish_root(root);
        }
    }

    /// Writes `event`, except a sub-agent's start, which is held back: when
    /// the next event is the same run's completion (both usually come from
    /// one thread's stage), the two are written as one `rr` line. Any other
    /// event writes the held start first, and so does every flush (the
    /// periodic one included), so holding it never keeps it off the disk
    /// longer than its line would have stayed in the batch.
    fn write_or_hold(&mut self, event: Event) {
        if let Some(start) = self.held_start.take() {
            if start.run_id == event.run_id
                && matches!(event.kind, EventKind::RunCompleted { .. })
                && self.write_pair(&start, &event)
            {
                return;
            }
            self.write_event_now(&start);
        }
        let holdable = self.db.is_none()
            && self.config.redactor.is_none()
            && event.run_id != event.root_run_id
            && matches!(event.kind, EventKind::RunStarted { .. });
        if holdable {
            self.held_start = Some(event);
        } else {
            self.write_event_now(&event);
        }
    }

    /// Writes the held start, if any (before anything that must follow it).
    fn write_held(&mut self) {
        if let Some(start) = self.held_start.take() {
            self.write_event_now(&start);
        }
    }

    /// Writes `start` and `end` as one `rr` line, when `start`'s trace is a
    /// file of version 3 written without a redaction hook; false (nothing
    /// written) otherwise.
    fn write_pair(&mut self, start: &Event, end: &Event) -> bool {
        let root = start.root_run_id;
        if self.db.is_some() || self.config.redactor.is_some() || !self.open_root(root, start.timestamp_us) {
            return false;
        }
        let Some(file) = self.roots.get_mut(&root) else {
            return false;
        };
        let Some(cursor) = file.cursor.as_mut().filter(|c| c.uses_deltas()) else {
            return false;
        };
        if file.out.is_none() {
            return false;
        }
        let at = file.pending.len();
        if write_run_line(&mut file.pending, start, end, cursor).is_err() {
            file.pending.truncate(at);
            return false;
        }
        file.pending.push(b'\n');
        file.line_added(2, &mut self.frames, &mut self.report);
        true
    }

    /// Handles every thread's staged events; how many there were.
    fn collect_stages(&mut self, closing: bool) -> usize {
        let Some(stages) = self.stages.clone() else { return 0 };
        let mut n = 0;
        for batch in stages.take_all(closing) {
            n += batch.len();
            for e in batch {
                self.on_event(e);
            }
        }
        n
    }

    fn summarize(&mut self, e: &Event, counts_as_new_run: bool) {
        let root = e.root_run_id;
        let dropped = self.dropped.load(Ordering::Relaxed);
        let detail = self.config.detail;
        let Some(file) = self
            .roots
            .get_or_insert_with(root, || RootFile::new(root, detail, e.timestamp_us))
        else {
            return;
        };
        let m = &mut file.manifest;
        m.dropped_events = dropped;
        if counts_as_new_run {
            m.agents += 1;
        }
        match &e.kind {
            EventKind::RunStarted { name } => {
                m.max_depth = m.max_depth.max(e.depth);
                if e.run_id == root {
                    m.name = name.to_string();
                    m.started_us = e.timestamp_us;
                }
            }
            EventKind::SubAgentStarted { child_depth, .. } => m.max_depth = m.max_depth.max(*child_depth),
            EventKind::RunCompleted {
                total_usage,
                total_cost,
                ..
            } if e.run_id == root => {
                m.status = TraceStatus::Completed;
                m.usage = *total_usage;
                m.cost = *total_cost;
                m.ended_us = Some(e.timestamp_us);
            }
            EventKind::RunFailed {
                error,
                total_usage,
                total_cost,
            } => {
                m.failed_runs += 1;
                if e.run_id == root {
                    m.status = TraceStatus::Failed;
                    m.error = Some(
                        self.config
                            .redactor
                            .as_ref()
                            .and_then(|r| r.apply(error))
                            .unwrap_or_else(|| error.clone()),
                    );
                    m.usage = *total_usage;
                    m.cost = *total_cost;
                    m.ended_us = Some(e.timestamp_us);
                }
            }
            _ => {}
        }
    }

    fn sample(&mut self, sampling: Sampling, event: Event) {
        // Decide for announced children.
        if let EventKind::SubAgentStarted { child_run_id, .. } = &event.kind {
            let parent_out = self.sampled_out.contains_key(&event.run_id);
            let n = self.child_counts.entry(event.run_id).or_insert(0);
            let index = *n;
            *n = n.saturating_add(1);
            if parent_out || !sampling.keeps(index) {
                self.sampled_out.insert(
                    *child_run_id,
                    SampledOut {
                        held: Vec::new(),
                        overflow: 0,
                    },
                );
                if let Some(f) = self.roots.get_mut(&event.root_run_id) {
                    f.manifest.sampled_out_runs += 1;
                }
            }
        }
        let ends = match &event.kind {
            EventKind::RunCompleted { failures, .. } => Some(*failures > 0),
            EventKind::RunFailed { .. } => Some(true),
            _ => None,
        };
        if ends.is_some() {
            self.child_counts.remove(&event.run_id);
        }
        let Some(out) = self.sampled_out.get_mut(&event.run_id) else {
            self.write_event(&event);
            return;
        };
        match ends {
            None => {
                if out.held.len() < sampling.failure_buffer as usize {
                    out.held.push(Held::Event(event));
                } else {
                    out.overflow += 1;
                }
            }
            Some(false) => {
                self.sampled_out.remove(&event.run_id);
            }
            Some(true) => {
                if let Some(out) = self.sampled_out.remove(&event.run_id) {
                    for h in out.held {
                        match h {
                            Held::Event(e) => self.write_event(&e),
                            Held::ModelIo(r) => self.write_model_io(event.root_run_id, &r),
                        }
                    }
                }
                self.write_event(&event);
            }
        }
    }

    fn on_model_io(&mut self, record: Box<ModelIoRecord>) {
        let Some(root) = self.run_roots.get(&record.run_id).copied() else {
            self.report.orphan_records += 1;
            return;
        };
        if let Some(out) = self.sampled_out.get_mut(&record.run_id) {
            if let Some(s) = self.config.sampling
                && out.held.len() < s.failure_buffer as usize
            {
                out.held.push(Held::ModelIo(record));
            } else {
                out.overflow += 1;
            }
            return;
        }
        self.write_model_io(root, &record);
    }

    /// Writes `event` after the held start, if any.
    fn write_event(&mut self, event: &Event) {
        self.write_held();
        self.write_event_now(event);
    }

    fn write_event_now(&mut self, event: &Event) {
        let root = event.root_run_id;
        if !self.open_root(root, event.timestamp_us) {
            return;
        }
        let Some(file) = self.roots.get_mut(&root) else { return };
        // The common case (a file, no redaction hook, compact lines): the
        // line is written straight into the batch.
        if self.db.is_none()
            && self.config.redactor.is_none()
            && file.out.is_some()
            && let Some(cursor) = file.cursor.as_mut()
        {
            let start = file.pending.len();
            if write_event_line(&mut file.pending, event, cursor).is_ok() {
                file.pending.push(b'\n');
                file.line_added(1, &mut self.frames, &mut self.report);
            } else {
                file.pending.truncate(start);
            }
            return;
        }
        self.line.clear();
        let ok = match (&self.config.redactor, file.cursor.as_mut()) {
            (None, Some(cursor)) => write_event_line(&mut self.line, event, cursor).is_ok(),
            // A file begun by a version 1 writer: full-form lines.
            (None, None) => serde_json::to_writer(&mut self.line, event).is_ok(),
            (Some(r), _) => serde_json::to_value(event)
                .map(|v| redact_value(r, v))
                .and_then(|v| serde_json::to_writer(&mut self.line, &v))
                .is_ok(),
        };
        if ok {
            self.append_line(root);
        }
    }

    fn write_model_io(&mut self, root: RunId, record: &ModelIoRecord) {
        self.write_held();
        if !self.open_root(root, record.timestamp_us) {
            return;
        }
        self.line.clear();
        let ok = match &self.config.redactor {
            None => serde_json::to_writer(&mut self.line, record).is_ok(),
            Some(r) => serde_json::to_value(record)
                .map(|v| redact_value(r, v))
                .and_then(|v| serde_json::to_writer(&mut self.line, &v))
                .is_ok(),
        };
        if ok {
            self.append_line(root);
        }
    }

    /// Makes sure `root`'s trace is open (creating it at `ts`) and sets how
    /// its lines are written (compact, or in the full form for a trace
    /// begun by a version 1 writer). False when it could not be opened
    /// (the error is in the report).
    fn open_root(&mut self, root: RunId, ts: u64) -> bool {
        let detail = self.config.detail;
        let dir = &self.config.dir;
        let Some(file) = self.roots.get_or_insert_with(root, || RootFile::new(root, detail, ts)) else {
            return false;
        };
        if let Some(db) = self.db.as_mut() {
            if !file.in_db {
                let header = TraceHeader::new(root, detail, ts);
                let text = serde_json::to_vec(&header).unwrap_or_default();
                file.path = db.path().to_path_buf();
                match db.begin_root(&text, &file.manifest) {
                    Ok(stored) => {
                        file.in_db = true;
                        file.cursor = cursor_of(stored.as_ref().unwrap_or(&header));
                    }
                    Err(e) => {
                        self.report.errors.push(e);
                        return false;
                    }
                }
            }
            return true;
        }
        if file.out.is_none() {
            match open_file(dir, root, detail, ts) {
                Ok((path, out, existing)) => {
                    file.path = path;
                    file.out = Some(out);
                    match existing {
                        Opened::Fresh(header) => {
                            // The header is the first line.
                            file.pending.extend_from_slice(&header);
                            file.cursor = Some(LineCursor::new(root, ts));
                            // A provisional manifest, so `trace list` sees a
                            // run that is still going (or crashed).
                            if let Err(e) = write_manifest(dir, &file.manifest) {
                                self.report.errors.push(e.to_string());
                            }
                        }
                        Opened::Existing(header) => file.cursor = cursor_of(&header),
                    }
                }
                Err(e) => {
                    self.report.errors.push(e.to_string());
                    return false;
                }
            }
        }
        true
    }

    /// Appends `self.line` to `root`'s trace (opened by `open_root`).
    fn append_line(&mut self, root: RunId) {
        self.line.push(b'\n');
        let Some(file) = self.roots.get_mut(&root) else { return };
        if let Some(db) = self.db.as_mut() {
            db.push(root, file.manifest.events, &self.line);
            file.manifest.events += 1;
            file.dirty = true;
            self.report.lines += 1;
            if db.pending() >= 8192
                && let Err(e) = db.commit()
            {
                self.report.errors.push(e);
            }
            return;
        }
        if file.out.is_some() {
            file.pending.extend_from_slice(&self.line);
            file.line_added(1, &mut self.frames, &mut self.report);
        }
    }

    fn flush_all(&mut self) -> Result<(), String> {
        self.write_held();
        let mut errors = Vec::new();
        if let Some(db) = self.db.as_mut()
            && let Err(e) = db.commit()
        {
            errors.push(e);
        }
        for (_, f) in &mut self.roots.files {
            if !f.dirty {
                continue;
            }
            if let Err(e) = f.drain_pending(&mut self.frames) {
                errors.push(e);
            }
            if let Some(out) = f.out.as_mut()
                && let Err(e) = out.flush()
            {
                errors.push(format!("{}: {e}", f.path.display()));
            }
            f.dirty = false;
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    fn finish_root(&mut self, root: RunId) {
        self.write_held();
        let dir = self.config.dir.clone();
        let Some(f) = self.roots.get_mut(&root) else { return };
        f.ended = true;
        if let Err(e) = f.drain_pending(&mut self.frames) {
            self.report.errors.push(e);
        }
        // A finished root keeps only its summary.
        f.pending = Vec::new();
        // The file (and its writer lock) is let go only after the final
        // manifest is written: a reader that finds the lock free then finds
        // the manifest too, and never takes a run that just ended for an
        // interrupted one.
        let mut closing = f.out.take();
        if let Some(out) = closing.as_mut()
            && let Err(e) = out.flush()
        {
            self.report.errors.push(format!("{}: {e}", f.path.display()));
        }
        f.manifest.dropped_events = self.dropped.load(Ordering::Relaxed);
        if let Some(db) = self.db.as_mut() {
            if let Err(e) = db.commit() {
                self.report.errors.push(e);
            }
            f.manifest.bytes = db.bytes_of(root);
            if f.in_db
                && let Err(e) = db.write_manifest(&f.manifest)
            {
                self.report.errors.push(e);
            }
        } else {
            f.manifest.bytes = std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
            if let Err(e) = write_manifest(&dir, &f.manifest) {
                self.report.errors.push(e.to_string());
            }
        }
        f.dirty = false;
        drop(closing);
        // Keep a small summary so a late event can reopen the file.
    }

    fn finish_all(&mut self) {
        self.write_held();
        // Announced children that never started: their announcement is all there is.
        let held: Vec<Event> = self.announced.drain().filter_map(|(_, h)| h.map(|b| *b)).collect();
        for h in held {
            self.write_event(&h);
        }
        let open: Vec<RunId> = self
            .roots
            .files
            .iter()
            .filter(|(_, f)| f.out.is_some() || !f.ended || (f.in_db && f.dirty))
            .map(|(r, _)| *r)
            .collect();
        for root in open {
            self.finish_root(root);
        }
        self.report.dropped_events = self.dropped.load(Ordering::Relaxed);
        let mut roots: Vec<TraceManifest> = self.roots.files.iter().map(|(_, f)| f.manifest.clone()).collect();
        roots.sort_by_key(|m| (m.started_us, m.root_run_id));
        self.report.roots = roots;
    }
}

fn empty_manifest(root: RunId, detail: DetailLevel, ts: u64) -> TraceManifest {
    TraceManifest {
        version: crate::format::FORMAT_VERSION,
        root_run_id: root,
        name: String::new(),
        started_us: ts,
        ended_us: None,
        status: TraceStatus::Running,
        error: None,
        agents: 0,
        max_depth: 0,
        usage: Default::default(),
        cost: Default::default(),
        failed_runs: 0,
        events: 0,
        bytes: 0,
        detail: detail.as_str().into(),
        sampled_out_runs: 0,
        dropped_events: 0,
    }
}

/// How lines are written under `header`: compact from version 2 on, with
/// deltas from version 3 on.
fn cursor_of(header: &TraceHeader) -> Option<LineCursor> {
    (header.version >= 2).then(|| LineCursor::of(header))
}

/// What `open_file` found.
enum Opened {
    /// A new file, and the header line it starts with.
    Fresh(Vec<u8>),
    /// An existing trace, and its header (one that cannot be read is taken
    /// as version 1's: full-form lines, readable by every version).
    Existing(TraceHeader),
}

/// Opens (or reopens for appending) a root's trace.
fn open_file(
    dir: &Path,
    root: RunId,
    detail: DetailLevel,
    ts: u64,
) -> Result<(PathBuf, BufWriter<File>, Opened), TraceError> {
    let path = dir.join(trace_file_name(root));
    let fresh = !path.exists();
    let existing = if fresh {
        None
    } else {
        Some(
            crate::reader::TraceReader::open(&path)
                .map(|r| r.header().clone())
                .unwrap_or_else(|_| TraceHeader {
                    version: 1,
                    ..TraceHeader::new(root, detail, ts)
                }),
        )
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| TraceError::io(&path, e))?;
    hold_writer_lock(&file);
    let out = BufWriter::with_capacity(64 * 1024, file);
    let opened = match existing {
        Some(header) => Opened::Existing(header),
        None => {
            let mut line =
                serde_json::to_vec(&TraceHeader::new(root, detail, ts)).map_err(|e| TraceError::io(&path, e.into()))?;
            line.push(b'\n');
            Opened::Fresh(line)
        }
    };
    Ok((path, out, opened))
}

/// Takes an advisory lock on a trace file for as long as it stays open here,
/// so a reader can tell a live writer from one whose process died (see
/// [`TraceStatus::Interrupted`]): the system drops the lock with the last
/// open handle, however the process ends. When another sink (another
/// process appending late events) holds it, that one is alive, which is all
/// the lock says. Unix only: elsewhere a lock can keep readers out.
fn hold_writer_lock(file: &File) {
    #[cfg(unix)]
    {
        let _ = file.try_lock();
    }
    #[cfg(not(unix))]
    let _ = file;
}

pub(crate) fn write_manifest(dir: &Path, m: &TraceManifest) -> Result<(), TraceError> {
    let path = dir.join(manifest_file_name(m.root_run_id));
    let tmp = dir.join(format!("{}.tmp", manifest_file_name(m.root_run_id)));
    let text = serde_json::to_vec_pretty(m).map_err(|e| TraceError::io(&path, e.into()))?;
    std::fs::write(&tmp, text).map_err(|e| TraceError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| TraceError::io(&path, e))
}

/// Keys whose values are identifiers, never free text.
const NOT_TEXT: &[&str] = &[
    "type",
    "role",
    "run_id",
    "parent_run_id",
    "root_run_id",
    "child_run_id",
    "id",
    "call_id",
    "name",
    "agent",
    "model",
    "tool",
    "limit",
];

/// Applies `r` to every free-text string of `v` (iteratively; deep values
/// do not recurse on the stack).
pub(crate) fn redact_value(r: &Redactor, mut v: serde_json::Value) -> serde_json::Value {
    let mut stack: Vec<&mut serde_json::Value> = vec![&mut v];
    while let Some(cur) = stack.pop() {
        match cur {
            serde_json::Value::String(s) => {
                if let Some(new) = r.apply(s) {
                    *s = new;
                }
            }
            serde_json::Value::Array(a) => stack.extend(a.iter_mut()),
            serde_json::Value::Object(o) => {
                for (k, val) in o.iter_mut() {
                    if !(NOT_TEXT.contains(&k.as_str()) && val.is_string()) {
                        stack.push(val);
                    }
                }
            }
            _ => {}
        }
    }
    v
}
