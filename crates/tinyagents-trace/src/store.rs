//! [`TraceStore`]: a directory of traces (or a SQLite trace database, see
//! [`crate::sqlite`]): list, find, load, prune.
//!
//! # Retention
//! [`TraceStore::prune`] removes whole traces (trace file and manifest),
//! oldest first, until every rule of the [`Retention`] holds: no trace
//! older than `max_age`, no more than `max_total_bytes` on disk, no more
//! than `max_traces`. Traces of runs still going are never removed. It
//! returns a [`PruneReport`] naming every trace it removed and the bytes
//! freed: pruning is never silent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tinyagents_core::RunId;

use crate::error::{TraceError, unknown_run};
use crate::format::{
    FORMAT_VERSION, MANIFEST_EXT, Record, TRACE_EXT, TraceManifest, TraceStatus, manifest_file_name, trace_file_name,
};
use crate::reader::{TraceContents, TraceReader, read_trace};
use crate::tree::{RunStatus, RunTree};

/// A directory of traces, or a SQLite trace database.
#[derive(Clone, Debug)]
pub struct TraceStore {
    /// The directory, or the database file.
    dir: PathBuf,
    sqlite: bool,
}

/// Where a loaded trace lives (to read a run's records on demand).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceLocation {
    /// A `.jsonl.zst` file.
    File(PathBuf),
    /// One root of a SQLite trace database.
    Sqlite {
        /// The database file.
        db: PathBuf,
        /// The root run.
        root: RunId,
    },
}

impl TraceLocation {
    /// Every record of `run` (see [`run_records`]).
    pub fn run_records(&self, run: RunId) -> Result<Vec<Record>, TraceError> {
        match self {
            Self::File(path) => run_records(path, run),
            Self::Sqlite { db, root } => {
                let reader = crate::sqlite::reader(db, *root)?;
                Ok(filter_run_records(reader.filter_map(Result::ok), run))
            }
        }
    }

    /// Reads the whole trace: header, records and damage (see [`read_trace`]).
    pub fn read(&self) -> Result<TraceContents, TraceError> {
        match self {
            Self::File(path) => read_trace(path),
            Self::Sqlite { db, root } => Ok(crate::reader::collect(crate::sqlite::reader(db, *root)?)),
        }
    }

    /// The file (the database, for SQLite).
    pub fn path(&self) -> &Path {
        match self {
            Self::File(p) | Self::Sqlite { db: p, .. } => p,
        }
    }
}

impl std::fmt::Display for TraceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Sqlite { db, root } => write!(f, "{} (SQLite, root {root})", db.display()),
        }
    }
}

/// One trace as listed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TraceEntry {
    /// The summary.
    pub manifest: TraceManifest,
    /// The trace file.
    pub path: PathBuf,
    /// True when the summary was rebuilt from the trace (no manifest, or a
    /// provisional one).
    pub rebuilt: bool,
    /// Damage met while rebuilding it, rendered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damage: Vec<String>,
}

/// A trace loaded as a run tree.
#[derive(Debug)]
pub struct LoadedTrace {
    /// The trace file (the database, for SQLite).
    pub path: PathBuf,
    /// Where it lives.
    pub location: TraceLocation,
    /// The tree.
    pub tree: RunTree,
    /// Damage met while reading (the tree holds what was readable).
    pub damage: Vec<TraceError>,
}

/// What to keep (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Traces older than this (by their root's start) are removed.
    pub max_age: Option<Duration>,
    /// The newest traces are kept up to this many bytes in total.
    pub max_total_bytes: Option<u64>,
    /// The newest traces are kept up to this count.
    pub max_traces: Option<usize>,
}

impl Retention {
    /// Parses an age: a number with a unit `s`, `m`, `h`, `d` or `w`
    /// (`7d`, `12h`, `1.5h`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tinyagents_trace::Retention;
    /// assert_eq!(Retention::parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
    /// assert_eq!(Retention::parse_age("90s"), Ok(Duration::from_secs(90)));
    /// assert!(Retention::parse_age("7").is_err());
    /// ```
    pub fn parse_age(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("bad age {text:?}: expected a number and a unit, like 7d or 12h"))?;
        let secs = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hour" | "hours" => 3_600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "" => return Err(format!("bad age {text:?}: give a unit (s, m, h, d or w), like 7d")),
            other => return Err(format!("bad age {text:?}: unknown unit {other:?} (s, m, h, d or w)")),
        };
        if !(n.is_finite() && n >= 0.0) {
            return Err(format!("bad age {text:?}: it must be a positive number"));
        }
        Ok(Duration::from_secs_f64(n * secs))
    }

    /// Parses a size: bytes, or a number with a unit `KB`, `MB`, `GB`,
    /// `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024).
    ///
    /// ```
    /// use tinyagents_trace::Retention;
    /// assert_eq!(Retention::parse_size("500MB"), Ok(500_000_000));
    /// assert_eq!(Retention::parse_size("1 KiB"), Ok(1024));
    /// assert_eq!(Retention::parse_size("4096"), Ok(4096));
    /// assert!(Retention::parse_size("lots").is_err());
    /// ```
    pub fn parse_size(text: &str) -> Result<u64, String> {
        let t = text.trim();
        let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("bad size {text:?}: expected bytes or a number and a unit, like 500MB"))?;
        let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "m" | "mb" => 1e6,
            "g" | "gb" => 1e9,
            "t" | "tb" => 1e12,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            other => {
                return Err(format!(
                    "bad size {text:?}: unknown unit {other:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
                ));
            }
        };
        if !(n.is_finite() && n >= 0.0) {
            return Err(format!("bad size {text:?}: it must be a positive number"));
        }
        Ok((n * mult).round() as u64)
    }
}

/// One removed trace.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PrunedTrace {
    /// The root run.
    pub root_run_id: RunId,
    /// The root's name.
    pub name: String,
    /// When it started (µs since the epoch).
    pub started_us: u64,
    /// Bytes freed.
    pub bytes: u64,
    /// Which rule removed it (`max_age`, `max_total_bytes`, `max_traces`).
    pub reason: &'static str,
}

/// What [`TraceStore::prune`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Removed traces, oldest first.
    pub removed: Vec<PrunedTrace>,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Traces kept.
    pub kept: usize,
    /// Bytes kept.
    pub bytes_kept: u64,
}

impl PruneReport {
    /// One line per removed trace and a total, for people.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .removed
            .iter()
            .map(|p| format!("pruned {} {} ({} bytes, {})", p.root_run_id, p.name, p.bytes, p.reason))
            .collect();
        out.push(format!(
            "pruned {} trace(s), freed {} bytes; kept {} trace(s), {} bytes",
            self.removed.len(),
            self.bytes_freed,
            self.kept,
            self.bytes_kept
        ));
        out
    }
}

impl TraceStore {
    /// The store in `dir` (it need not exist yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            sqlite: false,
        }
    }

    /// The store in the SQLite trace database `db` (see [`crate::sqlite`];
    /// it need not exist yet).
    pub fn sqlite(db: impl Into<PathBuf>) -> Self {
        Self {
            dir: db.into(),
            sqlite: true,
        }
    }

    /// True for a SQLite trace database.
    pub fn is_sqlite(&self) -> bool {
        self.sqlite
    }

    /// Where a root's trace lives.
    pub fn location(&self, root: RunId) -> TraceLocation {
        if self.sqlite {
            TraceLocation::Sqlite {
                db: self.dir.clone(),
                root,
            }
        } else {
            TraceLocation::File(self.trace_path(root))
        }
    }

    /// The default directory: `$TINYAGENTS_TRACE_DIR`, else `.tinyagents/traces`.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("TINYAGENTS_TRACE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".tinyagents").join("traces"))
    }

    /// The directory (the database file, for SQLite).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a root's trace file (the database, for SQLite).
    pub fn trace_path(&self, root: RunId) -> PathBuf {
        if self.sqlite {
            return self.dir.clone();
        }
        self.dir.join(trace_file_name(root))
    }

    fn root_ids(&self) -> Result<Vec<RunId>, TraceError> {
        if self.sqlite {
            return crate::sqlite::root_ids(&self.dir);
        }
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TraceError::io(&self.dir, e)),
        };
        let mut ids = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| TraceError::io(&self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let stem = name
                .strip_suffix(&format!(".{TRACE_EXT}"))
                .or_else(|| name.strip_suffix(&format!(".{MANIFEST_EXT}")));
            if let Some(id) = stem.and_then(|s| s.parse::<RunId>().ok())
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Every trace, oldest first. A trace without a final manifest (still
    /// running, or its process died) is summarized from its contents; one
    /// whose root never ended and that no sink holds any more is
    /// [`TraceStatus::Interrupted`], and retention prunes it like a finished one.
    pub fn list(&self) -> Result<Vec<TraceEntry>, TraceError> {
        let mut out = Vec::new();
        for id in self.root_ids()? {
            out.push(self.entry(id)?);
        }
        out.sort_by_key(|e| (e.manifest.started_us, e.manifest.root_run_id));
        Ok(out)
    }

    fn read_manifest(&self, root: RunId) -> Option<TraceManifest> {
        let text = std::fs::read(self.dir.join(manifest_file_name(root))).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The entry of one root.
    pub fn entry(&self, root: RunId) -> Result<TraceEntry, TraceError> {
        if self.sqlite {
            return self.sqlite_entry(root);
        }
        let path = self.trace_path(root);
        let manifest = self.read_manifest(root);
        if let Some(m) = &manifest
            && m.status != TraceStatus::Running
        {
            return Ok(TraceEntry::stored(m.clone(), path, Vec::new()));
        }
        if !path.exists() {
            return match manifest {
                Some(m) => Ok(TraceEntry::stored(m, path, vec!["the trace file is missing".into()])),
                None => Err(unknown_run(root, &format!("no trace in {}", self.dir.display()))),
            };
        }
        let (loaded, provisional) = match (self.load_path(&path), manifest) {
            (Ok(loaded), provisional) => (loaded, provisional),
            // A run that has just begun: nothing flushed yet, its
            // provisional manifest is all there is.
            (Err(e), Some(m)) => {
                return Ok(TraceEntry::stored(m, path, vec![format!("nothing readable yet: {e}")]));
            }
            (Err(e), None) => return Err(e),
        };
        let mut m = manifest_from_tree(root, &loaded.tree, provisional.as_ref());
        m.bytes = std::fs::metadata(&path).map(|md| md.len()).unwrap_or(0);
        if m.status == TraceStatus::Running && !writer_holds(&path) {
            // Its writer may have ended the root since the read above: it
            // writes the final manifest before it lets go of the file.
            if let Some(done) = self.read_manifest(root).filter(|d| d.status != TraceStatus::Running) {
                return Ok(TraceEntry::stored(done, path, Vec::new()));
            }
            m.status = TraceStatus::Interrupted;
        }
        Ok(TraceEntry {
            manifest: m,
            path,
            rebuilt: true,
            damage: loaded.damage.iter().map(ToString::to_string).collect(),
        })
    }

    fn sqlite_entry(&self, root: RunId) -> Result<TraceEntry, TraceError> {
        let path = self.dir.clone();
        let Some((manifest, bytes)) = crate::sqlite::manifest(&self.dir, root)? else {
            return Err(unknown_run(
                root,
                &format!("no trace in the database {}", self.dir.display()),
            ));
        };
        if manifest.status != TraceStatus::Running {
            return Ok(TraceEntry::stored(manifest, path, Vec::new()));
        }
        let loaded = self.load_root(root)?;
        let mut m = manifest_from_tree(root, &loaded.tree, Some(&manifest));
        m.bytes = bytes;
        Ok(TraceEntry {
            manifest: m,
            path,
            rebuilt: true,
            damage: loaded.damage.iter().map(ToString::to_string).collect(),
        })
    }

    fn has_root(&self, id: RunId) -> Result<bool, TraceError> {
        if self.sqlite {
            Ok(self.root_ids()?.contains(&id))
        } else {
            Ok(self.trace_path(id).exists())
        }
    }

    /// Loads the tree of one root (a full id).
    pub fn load_root(&self, root: RunId) -> Result<LoadedTrace, TraceError> {
        if self.sqlite {
            let reader = crate::sqlite::reader(&self.dir, root)?;
            return Ok(load_from(reader, self.dir.clone(), self.location(root)));
        }
        self.load_path(&self.trace_path(root))
    }

    /// Resolves a full run id or a unique prefix of one (as `trace list` prints).
    pub fn resolve(&self, id_or_prefix: &str) -> Result<RunId, TraceError> {
        if let Ok(id) = id_or_prefix.parse::<RunId>()
            && self.has_root(id)?
        {
            return Ok(id);
        }
        let ids = self.root_ids()?;
        let needle = id_or_prefix.to_ascii_lowercase();
        let matches: Vec<RunId> = ids
            .into_iter()
            .filter(|id| {
                let s = id.to_string();
                s.starts_with(&needle) || s.ends_with(&needle)
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(TraceError::UnknownRun {
                id: id_or_prefix.to_string(),
                hint: format!(
                    "no trace in {} matches it (see `tinyagents trace list`)",
                    self.dir.display()
                ),
            }),
            many => Err(TraceError::AmbiguousRun {
                prefix: id_or_prefix.to_string(),
                matches: many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Loads the tree of a root (full id or unique prefix).
    pub fn load(&self, id_or_prefix: &str) -> Result<LoadedTrace, TraceError> {
        let id = self.resolve(id_or_prefix)?;
        self.load_root(id)
    }

    /// Loads the tree of a trace file.
    pub fn load_path(&self, path: &Path) -> Result<LoadedTrace, TraceError> {
        load_tree(path)
    }

    /// Removes traces per `retention` (see the module docs).
    pub fn prune(&self, retention: &Retention) -> Result<PruneReport, TraceError> {
        self.prune_or_plan(retention, false)
    }

    /// What [`prune`](Self::prune) would remove, removing nothing.
    pub fn prune_plan(&self, retention: &Retention) -> Result<PruneReport, TraceError> {
        self.prune_or_plan(retention, true)
    }

    fn prune_or_plan(&self, retention: &Retention, dry_run: bool) -> Result<PruneReport, TraceError> {
        let entries = self.list()?;
        let now_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut report = PruneReport::default();
        // Newest first: keep while within limits.
        let mut kept_bytes = 0u64;
        let mut kept_count = 0usize;
        let mut removed: Vec<(TraceEntry, &'static str)> = Vec::new();
        for e in entries.into_iter().rev() {
            let m = &e.manifest;
            let bytes = self.bytes_of(m.root_run_id);
            let running = m.status == TraceStatus::Running && !e.rebuilt_ended();
            let too_old = retention
                .max_age
                .is_some_and(|age| now_us.saturating_sub(m.started_us) > age.as_micros() as u64);
            let over_bytes = retention.max_total_bytes.is_some_and(|b| kept_bytes + bytes > b);
            let over_count = retention.max_traces.is_some_and(|n| kept_count >= n);
            let reason = if too_old {
                Some("max_age")
            } else if over_bytes {
                Some("max_total_bytes")
            } else if over_count {
                Some("max_traces")
            } else {
                None
            };
            match reason {
                Some(r) if !running => removed.push((e, r)),
                _ => {
                    kept_bytes += bytes;
                    kept_count += 1;
                }
            }
        }
        removed.reverse();
        if dry_run {
            for (e, reason) in removed {
                let bytes = self.bytes_of(e.manifest.root_run_id);
                report.bytes_freed += bytes;
                report.removed.push(PrunedTrace {
                    root_run_id: e.manifest.root_run_id,
                    name: e.manifest.name.clone(),
                    started_us: e.manifest.started_us,
                    bytes,
                    reason,
                });
            }
            report.kept = kept_count;
            report.bytes_kept = kept_bytes;
            return Ok(report);
        }
        let any = !removed.is_empty();
        for (e, reason) in removed {
            let root = e.manifest.root_run_id;
            let bytes = self.bytes_of(root);
            if self.sqlite {
                crate::sqlite::delete_root(&self.dir, root)?;
            }
            let files = if self.sqlite {
                Vec::new()
            } else {
                vec![self.trace_path(root), self.dir.join(manifest_file_name(root))]
            };
            for p in files {
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => return Err(TraceError::io(&p, err)),
                }
            }
            report.bytes_freed += bytes;
            report.removed.push(PrunedTrace {
                root_run_id: root,
                name: e.manifest.name.clone(),
                started_us: e.manifest.started_us,
                bytes,
                reason,
            });
        }
        if self.sqlite && any {
            crate::sqlite::vacuum(&self.dir)?;
        }
        report.kept = kept_count;
        report.bytes_kept = kept_bytes;
        Ok(report)
    }

    fn bytes_of(&self, root: RunId) -> u64 {
        if self.sqlite {
            return crate::sqlite::manifest(&self.dir, root)
                .ok()
                .flatten()
                .map_or(0, |(_, bytes)| bytes);
        }
        [self.trace_path(root), self.dir.join(manifest_file_name(root))]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Every record of one run (and the model I/O it made), read from the
    /// root's trace: what the UI shows for a selected run.
    pub fn run_records(&self, root: RunId, run: RunId) -> Result<Vec<Record>, TraceError> {
        self.location(root).run_records(run)
    }
}

impl TraceEntry {
    /// An entry whose summary is a manifest as written (not rebuilt).
    fn stored(manifest: TraceManifest, path: PathBuf, damage: Vec<String>) -> Self {
        Self {
            manifest,
            path,
            rebuilt: false,
            damage,
        }
    }

    fn rebuilt_ended(&self) -> bool {
        self.rebuilt && self.manifest.ended_us.is_some()
    }
}

/// Whether a sink holds the writer lock of a trace file (see
/// [`TraceStatus::Interrupted`]). When the lock cannot be tried, or off Unix,
/// the writer is taken to be alive: a run is never called interrupted on a
/// guess.
fn writer_holds(path: &Path) -> bool {
    #[cfg(unix)]
    {
        let Ok(file) = std::fs::File::open(path) else {
            return true;
        };
        // The shared lock, if taken, goes with `file`.
        !matches!(file.try_lock_shared(), Ok(()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        true
    }
}

/// Loads the tree of a trace file; damage is reported, not fatal.
pub fn load_tree(path: &Path) -> Result<LoadedTrace, TraceError> {
    let reader = TraceReader::open(path)?;
    Ok(load_from(
        reader,
        path.to_path_buf(),
        TraceLocation::File(path.to_path_buf()),
    ))
}

fn load_from(reader: TraceReader, path: PathBuf, location: TraceLocation) -> LoadedTrace {
    let mut tree = RunTree::new();
    let mut damage = Vec::new();
    for r in reader {
        match r {
            Ok(rec) => tree.apply(&rec),
            Err(e) => damage.push(e),
        }
    }
    tree.finish();
    LoadedTrace {
        path,
        location,
        tree,
        damage,
    }
}

/// The records of one run (events it emitted, events its parent emitted
/// about it, its model I/O), in sequence order.
pub fn run_records(path: &Path, run: RunId) -> Result<Vec<Record>, TraceError> {
    let contents = read_trace(path)?;
    Ok(filter_run_records(contents.records, run))
}

fn filter_run_records(records: impl IntoIterator<Item = Record>, run: RunId) -> Vec<Record> {
    let needle = run;
    let mut out: Vec<Record> = records
        .into_iter()
        .filter(|r| match r {
            Record::Event(e) => {
                e.run_id == needle
                    || matches!(&e.kind,
                        tinyagents_core::EventKind::SubAgentStarted { child_run_id, .. }
                        | tinyagents_core::EventKind::SubAgentCompleted { child_run_id, .. }
                        | tinyagents_core::EventKind::SubAgentReused { child_run_id, .. } if *child_run_id == needle)
            }
            Record::ModelIo(m) => m.run_id == needle,
            Record::Other(o) => o.run_id == Some(needle),
        })
        .collect();
    out.sort_by_key(record_order);
    out
}

fn record_order(r: &Record) -> (u64, u64) {
    match r {
        Record::Event(e) => (e.timestamp_us, e.seq),
        Record::ModelIo(m) => (m.timestamp_us, 0),
        Record::Other(o) => (o.timestamp_us.unwrap_or(0), o.seq.unwrap_or(0)),
    }
}

/// A manifest summarizing `tree` (for traces without a final one).
pub fn manifest_from_tree(root: RunId, tree: &RunTree, provisional: Option<&TraceManifest>) -> TraceManifest {
    let s = tree.summary();
    let root_node = tree.get(root);
    TraceManifest {
        version: FORMAT_VERSION,
        root_run_id: root,
        name: root_node.map(|n| n.name.to_string()).unwrap_or(s.name),
        started_us: root_node
            .and_then(|n| n.started_us)
            .or(s.started_us)
            .or(provisional.map(|m| m.started_us))
            .unwrap_or(0),
        ended_us: root_node.and_then(|n| n.ended_us),
        status: match root_node.map(|n| n.status) {
            Some(RunStatus::Completed) => TraceStatus::Completed,
            Some(RunStatus::Failed) => TraceStatus::Failed,
            _ => TraceStatus::Running,
        },
        error: root_node.and_then(|n| n.error.clone()),
        agents: s.counts.runs,
        max_depth: s.counts.max_depth,
        usage: s.total_usage,
        cost: s.total_cost,
        failed_runs: s.counts.failed,
        events: s.records,
        bytes: 0,
        detail: provisional.map(|m| m.detail.clone()).unwrap_or_default(),
        sampled_out_runs: provisional.map_or(0, |m| m.sampled_out_runs),
        dropped_events: provisional.map_or(0, |m| m.dropped_events),
    }
}

/// Renders `trace list` as text: one line per trace.
pub fn render_list(entries: &[TraceEntry]) -> Vec<String> {
    let mut out = vec![format!(
        "{:<32}  {:<20}  {:<11}  {:>7}  {:>10}  {:>10}  {}",
        "ROOT", "STARTED (UTC)", "STATUS", "AGENTS", "TOKENS", "COST", "NAME"
    )];
    for e in entries {
        let m = &e.manifest;
        let mut line = format!(
            "{:<32}  {:<20}  {:<11}  {:>7}  {:>10}  {:>10}  {}",
            m.root_run_id.to_string(),
            crate::render::utc(m.started_us),
            m.status.as_str(),
            m.agents,
            m.usage.total_tokens(),
            m.cost.to_string(),
            m.name
        );
        if !e.damage.is_empty() {
            line.push_str("  [damaged: ");
            line.push_str(&e.damage.join("; "));
            line.push(']');
        }
        out.push(line);
    }
    out
}

/// Counts by status, for a short footer.
pub fn status_counts(entries: &[TraceEntry]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for e in entries {
        *m.entry(e.manifest.status.as_str()).or_insert(0) += 1;
    }
    m
}
