//! Errors of the trace store.

use std::path::PathBuf;

use tinyagents_core::RunId;

/// What went wrong reading, writing or pruning traces.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a TinyAgents trace.
    #[error("{path}: not a tinyagents trace ({reason})")]
    NotATrace {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The trace was written by a newer format than this build reads.
    #[error(
        "{path}: trace format version {found} is newer than this build reads (up to {supported}); upgrade tinyagents"
    )]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// The trace ends early (a crash, a copy cut short); everything before
    /// `after_lines` was read.
    #[error("{path}: trace is truncated after {after_lines} lines ({detail})")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Complete lines read before the cut.
        after_lines: u64,
        /// What the decoder said.
        detail: String,
    },
    /// A line is not valid JSON; the lines around it are still read.
    #[error("{path}: line {line} is corrupt: {detail}")]
    CorruptLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What the parser said.
        detail: String,
    },
    /// No trace (or no run in the trace) has this id.
    #[error("unknown run {id}: {hint}")]
    UnknownRun {
        /// What was asked for.
        id: String,
        /// Where it was looked for.
        hint: String,
    },
    /// A run-id prefix matches several traces.
    #[error("run id prefix {prefix:?} is ambiguous: it matches {matches}")]
    AmbiguousRun {
        /// What was asked for.
        prefix: String,
        /// The matching ids.
        matches: String,
    },
    /// A SQLite trace database could not be read or written.
    #[error("{path}: SQLite: {detail}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The sink's writer thread is gone.
    #[error("the trace writer stopped: {0}")]
    WriterStopped(String),
    /// OpenTelemetry export failed.
    #[error("OpenTelemetry export failed: {0}")]
    Otel(String),
    /// A replay could not be set up.
    #[error("replay: {0}")]
    Replay(String),
}

impl TraceError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// True for damage that leaves the rest of the trace readable
    /// (truncation, a corrupt line).
    pub fn is_damage(&self) -> bool {
        matches!(self, Self::Truncated { .. } | Self::CorruptLine { .. })
    }
}

/// The run id `id` as text (for [`TraceError::UnknownRun`]).
pub(crate) fn unknown_run(id: RunId, hint: &str) -> TraceError {
    TraceError::UnknownRun {
        id: id.to_string(),
        hint: hint.to_string(),
    }
}
