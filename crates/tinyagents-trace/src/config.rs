//! What a trace keeps: detail level, redaction, sampling, back-pressure.
//!
//! # Why levels, redaction and sampling
//! A tree of 10,000 agents streaming tokens can produce a gigabyte of events
//! a minute. Most of it is not needed to answer "what ran, what failed, what
//! did it cost": that is the *lifecycle* (runs and sub-agents starting and
//! ending, budgets, failures). [`DetailLevel`] picks how much more is kept;
//! the filter runs on the emitting task before anything is queued, so a
//! dropped model delta costs one `match`.
//!
//! Prompts carry secrets. A [`Redactor`] sees every free-text field before it
//! is written (errors, model I/O, deltas), on the writer thread, never on the
//! hot path.
//!
//! A fan-out of 100,000 identical workers is better summarized than recorded:
//! [`Sampling`] keeps the first `keep_first` children of every parent and
//! then every `every_nth`; a child that is sampled out is still counted, its
//! parent's `sub_agent_started`/`sub_agent_completed` (name, status, usage,
//! cost) are kept, and if it *fails* its buffered lifecycle is written after
//! all: failures are never dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How much of a run a trace keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetailLevel {
    /// Runs and sub-agents starting and ending, budgets, failed tool calls,
    /// and every event kind this build does not know (graph, steering, …).
    #[default]
    Lifecycle,
    /// Plus model and tool calls, and the model I/O recorded by
    /// [`TracedModel`](crate::TracedModel) (needed for transcripts and replay).
    ModelIo,
    /// Plus every streamed token delta.
    Deltas,
}

impl DetailLevel {
    /// Parses `lifecycle`, `model_io` (or `io`) and `deltas`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "lifecycle" => Some(Self::Lifecycle),
            "model_io" | "io" => Some(Self::ModelIo),
            "deltas" => Some(Self::Deltas),
            _ => None,
        }
    }

    /// The level's name as written in trace headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lifecycle => "lifecycle",
            Self::ModelIo => "model_io",
            Self::Deltas => "deltas",
        }
    }
}

/// Rewrites one free-text field; `None` keeps it unchanged.
pub type RedactFn = dyn Fn(&str) -> Option<String> + Send + Sync;

/// A redaction hook applied to every free-text field before it is written.
#[derive(Clone)]
pub struct Redactor(pub Arc<RedactFn>);

impl Redactor {
    /// A hook from a closure.
    pub fn new(f: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Replaces every occurrence of each secret with `[REDACTED]`.
    pub fn secrets(secrets: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let secrets: Vec<String> = secrets.into_iter().map(Into::into).filter(|s| !s.is_empty()).collect();
        Self::new(move |text| {
            if !secrets.iter().any(|s| text.contains(s.as_str())) {
                return None;
            }
            let mut out = text.to_string();
            for s in &secrets {
                out = out.replace(s.as_str(), "[REDACTED]");
            }
            Some(out)
        })
    }

    /// Applies the hook.
    pub fn apply(&self, text: &str) -> Option<String> {
        (self.0)(text)
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor(..)")
    }
}

/// Sampling of huge fan-outs (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sampling {
    /// Children of one parent recorded in full before sampling starts.
    pub keep_first: u32,
    /// Beyond `keep_first`, one child in `every_nth` is recorded in full.
    pub every_nth: u32,
    /// Lifecycle events buffered per sampled-out run, written if it fails.
    pub failure_buffer: u32,
}

impl Sampling {
    /// Keep the first `keep_first` children of each parent, then every `every_nth`.
    pub fn new(keep_first: u32, every_nth: u32) -> Self {
        Self {
            keep_first,
            every_nth: every_nth.max(1),
            failure_buffer: 64,
        }
    }

    /// Whether the child with 0-based index `index` among its parent's
    /// children is recorded in full.
    pub fn keeps(&self, index: u32) -> bool {
        index < self.keep_first || (index - self.keep_first).is_multiple_of(self.every_nth.max(1))
    }
}

/// What the sink does when its queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backpressure {
    /// The emitting task waits for room (nothing is lost).
    #[default]
    Block,
    /// The event is dropped and counted; the count is written to every
    /// manifest (`dropped_events`), so a loss is never silent.
    DropAndCount,
}

/// Configuration of a [`TraceSink`](crate::TraceSink); one per run or per
/// process.
#[derive(Clone, Debug)]
pub struct TraceConfig {
    /// Directory holding the traces (created if missing).
    pub dir: PathBuf,
    /// Write into this SQLite database instead of `.jsonl.zst` files in
    /// `dir` (see [`crate::sqlite`]).
    pub sqlite: Option<PathBuf>,
    /// How much is kept.
    pub detail: DetailLevel,
    /// Free-text rewriting before anything is written.
    pub redactor: Option<Redactor>,
    /// Fan-out sampling; `None` records every run.
    pub sampling: Option<Sampling>,
    /// Capacity of the queue between emitters and the writer thread
    /// (default 16,384 events, about 3.7 MB: small enough for its slots to
    /// stay in cache, large enough for a burst while the writer naps).
    pub queue_capacity: usize,
    /// What happens when the queue is full.
    pub backpressure: Backpressure,
    /// How often buffered output is flushed to disk while a run proceeds.
    pub flush_interval: Duration,
    /// Leave out a parent's `sub_agent_started` / `sub_agent_completed`
    /// when the child's own `run_started` / end event is written: they say
    /// the same (name, parent, depth, totals, outcome). Halves the lines of
    /// a lifecycle trace; the run tree read back is the same. Harness
    /// sub-agents then do not emit the parent view at all (the sink answers
    /// `wants_parent_view` with false); a view that still comes is held
    /// back by the writer and dropped once the child's own event arrives.
    /// Ignored while sampling (a sampled-out child is known only by its
    /// parent's view).
    pub elide_parent_view: bool,
    /// zstd compression level (1–19; default 1: on event lines it is both
    /// faster and smaller than zstd's usual 3).
    pub compression_level: i32,
}

impl TraceConfig {
    /// Lifecycle-level traces in `dir`, no redaction, no sampling.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            sqlite: None,
            detail: DetailLevel::Lifecycle,
            redactor: None,
            sampling: None,
            queue_capacity: 16 * 1024,
            backpressure: Backpressure::Block,
            flush_interval: Duration::from_millis(250),
            compression_level: 1,
            elide_parent_view: true,
        }
    }

    /// Lifecycle-level traces written into the SQLite database `db`
    /// (created if missing; see [`crate::sqlite`]) instead of files.
    pub fn sqlite(db: impl Into<PathBuf>) -> Self {
        let db: PathBuf = db.into();
        let dir = db
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Self {
            sqlite: Some(db),
            ..Self::new(dir)
        }
    }

    /// Sets the detail level.
    #[must_use]
    pub fn detail(mut self, detail: DetailLevel) -> Self {
        self.detail = detail;
        self
    }

    /// Sets the redaction hook.
    #[must_use]
    pub fn redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = Some(redactor);
        self
    }

    /// Enables fan-out sampling.
    #[must_use]
    pub fn sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = Some(sampling);
        self
    }

    /// Sets the queue capacity (at least 16).
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(16);
        self
    }

    /// Sets the back-pressure policy.
    #[must_use]
    pub fn backpressure(mut self, backpressure: Backpressure) -> Self {
        self.backpressure = backpressure;
        self
    }

    /// Sets the flush interval.
    #[must_use]
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Keeps or leaves out the parent's redundant view of each child.
    #[must_use]
    pub fn elide_parent_view(mut self, on: bool) -> Self {
        self.elide_parent_view = on;
        self
    }

    /// Sets the zstd level (−7 to 19: negative levels are zstd's fast
    /// ones, larger output for less CPU).
    #[must_use]
    pub fn compression_level(mut self, level: i32) -> Self {
        self.compression_level = level.clamp(-7, 19);
        self
    }
}
