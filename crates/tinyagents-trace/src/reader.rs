//! Reading one trace file: a streaming iterator of [`Record`]s that reports
//! damage instead of giving up.
//!
//! * A header of a newer format version is refused outright
//!   ([`TraceError::NewerFormat`]).
//! * A line that is not JSON is reported ([`TraceError::CorruptLine`]) and
//!   skipped; the lines after it are still read.
//! * A file that ends early (a crash, a partial copy) yields everything up to
//!   the cut, then one [`TraceError::Truncated`].
//!
//! [`read_trace`] collects records and damage into a [`TraceContents`];
//! [`TraceReader`] streams them for traces too large to hold.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use tinyagents_core::Event;

use crate::error::TraceError;
use crate::format::{
    FORMAT_NAME, FORMAT_VERSION, LineBase, LineCursor, ModelIoRecord, OtherRecord, Record, TraceHeader,
};

/// A streaming reader of one trace file.
pub struct TraceReader {
    path: PathBuf,
    header: TraceHeader,
    lines: LineReader,
    input: Box<dyn BufRead + Send>,
    line_no: u64,
    buf: Vec<u8>,
    done: bool,
}

impl std::fmt::Debug for TraceReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceReader")
            .field("path", &self.path)
            .field("line", &self.line_no)
            .finish_non_exhaustive()
    }
}

impl TraceReader {
    /// Opens `path` and checks its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TraceError> {
        let path = path.as_ref().to_path_buf();
        let mut file = File::open(&path).map_err(|e| TraceError::io(&path, e))?;
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic).map_err(|e| TraceError::io(&path, e))?;
        if n < 4 || magic != [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(TraceError::NotATrace {
                path,
                reason: if n == 0 {
                    "the file is empty".into()
                } else {
                    "not zstd-compressed".into()
                },
            });
        }
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| TraceError::io(&path, e))?;
        let decoder = zstd::stream::read::Decoder::new(file).map_err(|e| TraceError::io(&path, e))?;
        Self::from_reader(path, decoder)
    }

    /// Reads a trace from any decompressed byte stream (`path` names it in errors).
    pub fn from_reader(path: PathBuf, reader: impl Read + Send + 'static) -> Result<Self, TraceError> {
        let mut lines: Box<dyn BufRead + Send> = Box::new(BufReader::with_capacity(128 * 1024, reader));
        let mut first = Vec::new();
        let read = lines.read_until(b'\n', &mut first);
        let not_a_trace = |reason: String| TraceError::NotATrace {
            path: path.clone(),
            reason,
        };
        match read {
            Ok(0) => return Err(not_a_trace("the file is empty".into())),
            Ok(_) => {}
            Err(e) => {
                // A zstd stream that ends before its first flushed block.
                return Err(TraceError::Truncated {
                    path,
                    after_lines: 0,
                    detail: format!("nothing decodable before the cut: {e}"),
                });
            }
        }
        let header = check_header(trim_newline(&first), path.clone())?;
        Ok(Self {
            path,
            lines: LineReader::new(&header),
            header,
            input: lines,
            line_no: 1,
            buf: Vec::with_capacity(512),
            done: false,
        })
    }

    /// The header.
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Parses one line after the header of a version 1 trace.
pub fn parse_line(line: &[u8]) -> Result<Record, String> {
    if let Ok(e) = serde_json::from_slice::<Event>(line) {
        return Ok(Record::Event(e));
    }
    parse_other(line, None)
}

/// Parses the lines after one trace's header, in order (any version this
/// build reads): compact lines are resolved against the ones before them
/// (see [`LineCursor`]).
#[derive(Clone, Debug)]
pub struct LineReader {
    /// Set for compact (version 2 and later) traces.
    cursor: Option<LineCursor>,
    /// The second event of the last line read (an `rr` line holds two).
    second: Option<Record>,
}

impl LineReader {
    /// A reader of the lines after `header`.
    pub fn new(header: &TraceHeader) -> Self {
        Self {
            cursor: (header.version >= 2).then(|| LineCursor::of(header)),
            second: None,
        }
    }

    /// Parses the next line into its (first) record. A line that holds two
    /// events (`rr`: a run's start and end) leaves the second for
    /// [`take_second`](Self::take_second), which readers call after each
    /// line. The error says when the lines after it carry approximate times
    /// (their deltas were relative to it).
    pub fn parse(&mut self, line: &[u8]) -> Result<Record, String> {
        self.second = None;
        match self.cursor.as_mut() {
            Some(cursor) => match parse_compact(line, cursor) {
                Ok((first, second)) => {
                    self.second = second;
                    Ok(first)
                }
                Err(e) if cursor.uses_deltas() => Err(format!(
                    "{e} (the sequence numbers and times of up to {} lines after it may be off by this line's own step)",
                    crate::format::KEY_EVERY - 1
                )),
                Err(e) => Err(e),
            },
            None => parse_line(line),
        }
    }

    /// The second record of the line last parsed, once.
    pub fn take_second(&mut self) -> Option<Record> {
        self.second.take()
    }
}

/// A run id in a compact line: the low half, or all 32 hex digits.
enum CompactId {
    Low(u64),
    Full(tinyagents_core::RunId),
}

impl CompactId {
    fn id(&self, base: &LineBase) -> tinyagents_core::RunId {
        match self {
            Self::Low(v) => base.id(*v),
            Self::Full(id) => *id,
        }
    }
}

impl<'de> serde::Deserialize<'de> for CompactId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = CompactId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a run id (a number or 32 hex digits)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<CompactId, E> {
                Ok(CompactId::Low(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CompactId, E> {
                v.parse().map(CompactId::Full).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// The fields of a compact line (unknown keys are ignored).
#[derive(serde::Deserialize)]
struct CompactLine<'a> {
    r: Option<CompactId>,
    p: Option<CompactId>,
    #[serde(default)]
    d: u32,
    s: Option<u64>,
    t: Option<i64>,
    ds: Option<i64>,
    dt: Option<i64>,
    es: Option<i64>,
    et: Option<i64>,
    #[serde(borrow)]
    k: Option<&'a str>,
    n: Option<std::sync::Arc<str>>,
    u: Option<Vec<u64>>,
    tu: Option<Vec<u64>>,
    #[serde(default)]
    c: u64,
    #[serde(default)]
    f: u32,
    e: Option<String>,
    ci: Option<CompactId>,
    #[serde(default)]
    cd: u32,
    ok: Option<bool>,
}

/// Parses one line of a compact (version 2 or later) trace and moves
/// `cursor` past it: its record, and a second one for an `rr` line (a run's
/// start and its completion).
pub fn parse_compact(line: &[u8], cursor: &mut LineCursor) -> Result<(Record, Option<Record>), String> {
    use tinyagents_core::{Cost, EventKind as K};
    let c: CompactLine<'_> = match serde_json::from_slice(line) {
        Ok(c) => c,
        // A line in the full form (its keys are not the compact ones).
        Err(_) => return parse_line(line).map(|r| (r, None)),
    };
    let base = &cursor.base;
    let Some(run) = c.r.as_ref().map(|r| r.id(base)) else {
        // No compact run id: a model I/O record, or a line in the full form.
        return parse_line(line).map(|r| (r, None));
    };
    let parent_run_id = c.p.as_ref().map(|p| p.id(base));
    let root_run_id = base.root;
    let (seq, timestamp_us) = cursor.resolve(c.s, c.t, c.ds, c.dt);
    let base = &cursor.base;
    let usage = |u: &Option<Vec<u64>>| crate::format::usage_from(u.as_deref().unwrap_or_default());
    let missing = |what: &str| format!("a `{}` line without `{what}`", c.k.unwrap_or("?"));
    let completed = || K::RunCompleted {
        usage: usage(&c.u),
        // Left out when it equals `u` (version 3).
        total_usage: if c.tu.is_some() { usage(&c.tu) } else { usage(&c.u) },
        total_cost: Cost(c.c),
        failures: c.f,
    };
    let event = |seq: u64, timestamp_us: u64, kind: K| {
        Record::Event(Event {
            root_run_id,
            parent_run_id,
            run_id: run,
            depth: c.d,
            seq,
            timestamp_us,
            kind,
        })
    };
    let kind = match c.k {
        Some("rs") => K::RunStarted {
            name: c.n.clone().ok_or_else(|| missing("n"))?,
        },
        Some("rc") => completed(),
        Some("rr") => {
            let start = event(
                seq,
                timestamp_us,
                K::RunStarted {
                    name: c.n.clone().ok_or_else(|| missing("n"))?,
                },
            );
            // The completion, relative to the start; the cursor moves to it.
            let (end_seq, end_us) = cursor.resolve(None, None, Some(c.es.unwrap_or(0)), Some(c.et.unwrap_or(0)));
            return Ok((start, Some(event(end_seq, end_us, completed()))));
        }
        Some("rf") => K::RunFailed {
            error: c.e.clone().unwrap_or_default(),
            total_usage: usage(&c.tu),
            total_cost: Cost(c.c),
        },
        Some(k @ ("ss" | "sc")) => {
            let name = c.n.clone().ok_or_else(|| missing("n"))?;
            let child_run_id = c.ci.as_ref().map(|i| i.id(base)).ok_or_else(|| missing("ci"))?;
            if k == "ss" {
                K::SubAgentStarted {
                    name,
                    child_run_id,
                    child_depth: c.cd,
                }
            } else {
                K::SubAgentCompleted {
                    name,
                    child_run_id,
                    child_depth: c.cd,
                    ok: c.ok.unwrap_or(false),
                    usage: usage(&c.u),
                    cost: Cost(c.c),
                }
            }
        }
        Some(other) => return Err(format!("unknown compact kind {other:?}")),
        None => {
            // A kind in its serde form after the compact common fields.
            let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
            match serde_json::from_value::<tinyagents_core::EventKind>(value.clone()) {
                Ok(kind) => kind,
                Err(_) => {
                    let rec = parse_other(line, Some((base, seq, timestamp_us)))?;
                    return Ok((rec, None));
                }
            }
        }
    };
    Ok((event(seq, timestamp_us, kind), None))
}

/// A model I/O record, or an event of a kind this build does not know
/// (`compact`: the line's common fields are compact, with its resolved
/// sequence number and time).
fn parse_other(line: &[u8], compact: Option<(&LineBase, u64, u64)>) -> Result<Record, String> {
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or("the line has no `type`")?
        .to_string();
    if kind == "model_io" {
        return serde_json::from_value::<ModelIoRecord>(value)
            .map(Record::ModelIo)
            .map_err(|e| format!("bad model_io record: {e}"));
    }
    let num = |k: &str| value.get(k).and_then(|v| v.as_u64());
    if let Some((base, seq, time)) = compact
        && value.get("r").is_some()
    {
        let id = |k: &str| match value.get(k) {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| base.id(v)),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        return Ok(Record::Other(OtherRecord {
            run_id: id("r"),
            parent_run_id: id("p"),
            depth: Some(num("d").and_then(|d| u32::try_from(d).ok()).unwrap_or(0)),
            seq: Some(seq),
            timestamp_us: Some(time),
            kind,
            raw: value,
        }));
    }
    let id = |k: &str| value.get(k).and_then(|v| v.as_str()).and_then(|s| s.parse().ok());
    Ok(Record::Other(OtherRecord {
        run_id: id("run_id"),
        parent_run_id: id("parent_run_id"),
        depth: num("depth").and_then(|d| u32::try_from(d).ok()),
        seq: num("seq"),
        timestamp_us: num("timestamp_us"),
        kind,
        raw: value,
    }))
}

impl Iterator for TraceReader {
    type Item = Result<Record, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        // The second event of an `rr` line.
        if let Some(second) = self.lines.take_second() {
            return Some(Ok(second));
        }
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            match self.input.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {
                    if self.buf.last() != Some(&b'\n') {
                        // The stream ended mid-line: the writer was cut off.
                        self.done = true;
                        return Some(Err(TraceError::Truncated {
                            path: self.path.clone(),
                            after_lines: self.line_no,
                            detail: "the last line is incomplete".into(),
                        }));
                    }
                    self.line_no += 1;
                    let line = trim_newline(&self.buf);
                    if line.is_empty() {
                        continue;
                    }
                    return Some(self.lines.parse(line).map_err(|detail| TraceError::CorruptLine {
                        path: self.path.clone(),
                        line: self.line_no,
                        detail,
                    }));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(TraceError::Truncated {
                        path: self.path.clone(),
                        after_lines: self.line_no,
                        detail: e.to_string(),
                    }));
                }
            }
        }
    }
}

pub(crate) fn trim_newline(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// A whole trace in memory: its header, records and any damage met.
#[derive(Debug)]
pub struct TraceContents {
    /// The header.
    pub header: TraceHeader,
    /// Every readable record, in file order.
    pub records: Vec<Record>,
    /// Damage met while reading (the records above are what could be read).
    pub damage: Vec<TraceError>,
}

/// Reads a whole trace (see the module docs for how damage is handled).
pub fn read_trace(path: impl AsRef<Path>) -> Result<TraceContents, TraceError> {
    Ok(collect(TraceReader::open(path)?))
}

/// Everything `reader` yields, with the damage met.
pub(crate) fn collect(reader: TraceReader) -> TraceContents {
    let header = reader.header().clone();
    let mut records = Vec::new();
    let mut damage = Vec::new();
    for r in reader {
        match r {
            Ok(rec) => records.push(rec),
            Err(e) => damage.push(e),
        }
    }
    TraceContents {
        header,
        records,
        damage,
    }
}

/// Checks a trace's first line: a header of this format, of a version
/// this build reads (shared by the reader and the follower).
pub(crate) fn check_header(line: &[u8], path: PathBuf) -> Result<TraceHeader, TraceError> {
    let not_a_trace = |reason: String| TraceError::NotATrace {
        path: path.clone(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| not_a_trace(format!("first line is not a header: {e}")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
        return Err(not_a_trace(
            "the header does not name the tinyagents-trace format".into(),
        ));
    }
    let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
    if version > u64::from(FORMAT_VERSION) {
        return Err(TraceError::NewerFormat {
            path,
            found: u32::try_from(version).unwrap_or(u32::MAX),
            supported: FORMAT_VERSION,
        });
    }
    serde_json::from_value(value).map_err(|e| not_a_trace(format!("bad header: {e}")))
}
