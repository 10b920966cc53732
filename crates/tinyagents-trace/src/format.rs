//! The on-disk format, version [`FORMAT_VERSION`].
//!
//! A trace directory holds, per root run `R` (32 hex digits):
//!
//! * `R.jsonl.zst`: zstd-compressed JSON lines. Line 1 is a [`TraceHeader`]
//!   (`"type":"trace_header"`, format name and version). Every other line is
//!   either an event of the tree or a [`ModelIoRecord`] (`"type":"model_io"`).
//!   Lines are written in the order the writer received them; `seq` gives
//!   the total order of the tree. The file is a sequence of independent zstd
//!   frames, one per batch of lines the writer compressed (about 64 KiB of
//!   text, or less at each flush interval and at the root's end), which any
//!   zstd decoder reads as one stream; a crash leaves a readable prefix.
//! * `R.meta.json`: the [`TraceManifest`], written when the root ends (and
//!   rewritten if late events arrive): the summary `trace list` shows
//!   without decompressing anything.
//!
//! # Event lines
//! **Version 3** (written by this build) writes events compactly, relative
//! to the header ([`LineBase`]) and to the line before ([`LineCursor`]):
//! short keys (`r` run, `p` parent, `d` depth, `s` seq, `t` time), a run id
//! whose high 64 bits are the root's (every run a process creates) as the
//! number of its low 64 bits, else as its 32 hex digits, and times as
//! signed microseconds since the header's `created_us`. The root id is in
//! the header only.
//!
//! Sequence numbers and times are written as **deltas** (`ds`, `dt`: the
//! difference from the previous compact event line of the trace, so a
//! burst of sub-agents writes `"ds":1,"dt":0` line after line), except on
//! every [`KEY_EVERY`]-th line, which carries them whole (`s`, `t`). A
//! reader resolves each line against the one before; a line it cannot
//! parse makes the times and sequence numbers of the lines after it
//! approximate until the next whole one (at most [`KEY_EVERY`] − 1 lines;
//! the corrupt-line error says so). Run ids, parents, depths and every
//! lifecycle field are always whole, so the tree itself is exact. Why
//! deltas: a 1,000,000-sub-agent trace is then a repetition of two nearly
//! identical lines, which zstd compresses at about twice the speed (the
//! writer's time is the budget that matters; see BENCHMARKS.md).
//!
//! Lifecycle kinds have a short code `k` and short fields:
//!
//! | `k` | kind | fields |
//! | --- | --- | --- |
//! | `rs` | `run_started` | `n` name |
//! | `rc` | `run_completed` | `u` usage, `tu` total usage (left out when equal to `u`), `c` total cost, `f` failures (both left out when 0) |
//! | `rf` | `run_failed` | `e` error, `tu`, `c` (left out when 0) |
//! | `rr` | a sub-agent's `run_started` and the `run_completed` that came right after it, as one line (version 3) | `n`, `es` and `et` (the completion's sequence number and time minus the start's), then the `rc` fields; the common fields are the start's, and the next line's deltas are from the completion |
//! | `ss` | `sub_agent_started` | `n`, `ci` child id, `cd` child depth |
//! | `sc` | `sub_agent_completed` | `n`, `ci`, `cd`, `ok`, `u`, `c` (left out when 0) |
//!
//! A usage is an array `[input, output, cached input, cache write,
//! requests]` without its trailing zeros; a cost is picodollars. Every other
//! kind keeps its serde form (`"type":"model_call_started",…`) after the
//! compact common fields. A line with the full common fields
//! (`root_run_id`, `run_id`, …: what version 1 wrote, and what a redaction
//! hook's output is written as) is read too; it does not move the cursor.
//!
//! A 1,000,000-sub-agent lifecycle trace writes one `rr` line of about 80
//! bytes per sub-agent (the writer holds a start back until the next event
//! shows whether it is the same run's completion), against two lines of
//! about 240 bytes in version 1.
//!
//! **Version 2** wrote the same lines with whole sequence numbers and times
//! on every line and every `rc` field; this build still reads it (and
//! appends version 2 lines to a trace a version 2 writer began).
//!
//! **Version 1** wrote every event exactly as `serde` serializes
//! [`tinyagents_core::Event`]; this build still reads it.
//!
//! A reader refuses a header with a version above [`FORMAT_VERSION`] (a
//! clear error, not garbage); event kinds it does not know are carried
//! through as [`Record::Other`].

use std::sync::Arc;

use tinyagents_core::{Cost, Event, Message, ModelResponse, RunId, Usage};

/// Name written in every header.
pub const FORMAT_NAME: &str = "tinyagents-trace";
/// Version written by this build, and the newest it reads.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Extension of trace files.
pub const TRACE_EXT: &str = "jsonl.zst";
/// Extension of manifests.
pub const MANIFEST_EXT: &str = "meta.json";

/// First line of every trace file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TraceHeader {
    /// Always `trace_header`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// Format version.
    pub version: u32,
    /// The root run.
    pub root_run_id: RunId,
    /// Detail level the trace was written at.
    pub detail: String,
    /// When the file was created (µs since the Unix epoch).
    pub created_us: u64,
}

impl TraceHeader {
    /// A header of this build's version.
    pub fn new(root_run_id: RunId, detail: crate::DetailLevel, created_us: u64) -> Self {
        Self {
            kind: "trace_header".into(),
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            root_run_id,
            detail: detail.as_str().into(),
            created_us,
        }
    }
}

/// One model call with its input and output, recorded by
/// [`TracedModel`](crate::TracedModel) at [`DetailLevel::ModelIo`](crate::DetailLevel::ModelIo).
///
/// `messages` holds only what is new since the run's previous model call
/// (turn 0: the whole prompt; later turns: the tool results and anything
/// injected), so a run's transcript is the concatenation of each record's
/// `messages` and its response, and the trace grows linearly, not
/// quadratically, with the number of turns.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelIoRecord {
    /// Always `model_io`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The run that made the call.
    pub run_id: RunId,
    /// Its depth.
    pub depth: u32,
    /// The agent's name.
    pub agent: Arc<str>,
    /// Model id.
    pub model: Arc<str>,
    /// Turn within the run, from 0.
    pub turn: u32,
    /// When the call returned (µs since the Unix epoch).
    pub timestamp_us: u64,
    /// Messages new since the previous call of this run.
    pub messages: Vec<Message>,
    /// The reply, when the call succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ModelResponse>,
    /// The error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An event of a kind this build does not know (a newer build's graph or
/// steering event, say), carried through with its common fields.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OtherRecord {
    /// The emitting run, if the line names one.
    pub run_id: Option<RunId>,
    /// Its parent.
    pub parent_run_id: Option<RunId>,
    /// Its depth.
    pub depth: Option<u32>,
    /// Sequence number.
    pub seq: Option<u64>,
    /// Timestamp.
    pub timestamp_us: Option<u64>,
    /// The `type` field.
    pub kind: String,
    /// The whole line.
    pub raw: serde_json::Value,
}

/// One line of a trace after the header.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A known event.
    Event(Event),
    /// A model call's input and output.
    ModelIo(ModelIoRecord),
    /// An event of an unknown kind.
    Other(OtherRecord),
}

impl Record {
    /// The run the record belongs to.
    pub fn run_id(&self) -> Option<RunId> {
        match self {
            Self::Event(e) => Some(e.run_id),
            Self::ModelIo(m) => Some(m.run_id),
            Self::Other(o) => o.run_id,
        }
    }

    /// Serializes the record as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Event(e) => serde_json::to_value(e).unwrap_or(serde_json::Value::Null),
            Self::ModelIo(m) => serde_json::to_value(m).unwrap_or(serde_json::Value::Null),
            Self::Other(o) => o.raw.clone(),
        }
    }
}

/// Status of a root run in a manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceStatus {
    /// Still running: its root has not ended and a sink is writing it. (A
    /// trace in SQLite has no writer lock; there it also covers a run whose
    /// process died.)
    Running,
    /// Its root never ended and no sink is writing it any more: the process
    /// died or was killed, or its sink was closed before the root ended.
    /// What was flushed is all readable. Told apart from `Running` by the
    /// lock a sink holds on a trace file while it writes it.
    Interrupted,
    /// Ended successfully.
    Completed,
    /// Ended with an error.
    Failed,
}

impl TraceStatus {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Interrupted => "interrupted",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// The summary of one root run: what `trace list` shows.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TraceManifest {
    /// Format version.
    pub version: u32,
    /// The root run.
    pub root_run_id: RunId,
    /// The root agent's name.
    pub name: String,
    /// Root start (µs since the Unix epoch).
    pub started_us: u64,
    /// Root end, if it ended.
    pub ended_us: Option<u64>,
    /// Status of the root.
    pub status: TraceStatus,
    /// The root's error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Runs in the tree (the root included, sampled-out runs included).
    pub agents: u64,
    /// Deepest run's depth.
    pub max_depth: u32,
    /// Usage of the whole tree.
    pub usage: Usage,
    /// Cost of the whole tree.
    pub cost: Cost,
    /// Runs that failed anywhere in the tree.
    pub failed_runs: u64,
    /// Events and model I/O records written (an `rr` line holds two events).
    pub events: u64,
    /// Compressed bytes on disk.
    pub bytes: u64,
    /// Detail level.
    pub detail: String,
    /// Runs recorded only as counts by sampling.
    pub sampled_out_runs: u64,
    /// Events dropped by [`Backpressure::DropAndCount`](crate::Backpressure) in this sink.
    pub dropped_events: u64,
}

/// File name of a root's trace.
pub fn trace_file_name(root: RunId) -> String {
    format!("{root}.{TRACE_EXT}")
}

/// File name of a root's manifest.
pub fn manifest_file_name(root: RunId) -> String {
    format!("{root}.{MANIFEST_EXT}")
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Two hex digits per byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    t
};

/// Two decimal digits per value below 100.
const DEC_PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

fn push_run_id(out: &mut Vec<u8>, id: RunId) {
    let bytes = id.as_u128().to_be_bytes();
    let mut buf = [b'"'; 34];
    // Element by element: a `copy_from_slice` of two bytes may become a
    // `memmove` call per pair.
    for (k, byte) in bytes.into_iter().enumerate() {
        let [hi, lo] = HEX_PAIRS[usize::from(byte)];
        buf[1 + 2 * k] = hi;
        buf[2 + 2 * k] = lo;
    }
    out.extend_from_slice(&buf);
}

/// Appends `v` in decimal. Most numbers of a line are one digit (depths,
/// deltas, token counts of zero): those take the inlined first branch.
#[inline]
fn push_u64(out: &mut Vec<u8>, v: u64) {
    if v < 10 {
        out.push(b'0' + v as u8);
    } else {
        push_digits(out, v);
    }
}

/// `v` ≥ 10 in decimal. Below 10⁸ (nearly every number of a line) the
/// digits are put together in a register, two per table look-up, and stored
/// with one 8-byte write that is then cut back to the number's length.
/// (Digits gathered in a stack buffer and copied out were slower twice
/// over: a copy of a variable length is a call to `memmove`, and a wide
/// load of bytes just stored two at a time stalls store forwarding.)
fn push_digits(out: &mut Vec<u8>, v: u64) {
    let len = v.ilog10() as usize + 1;
    let at = out.len();
    if v < 100_000_000 {
        let pair = |k: u64| u64::from(u16::from_le_bytes(DEC_PAIRS[(k % 100) as usize]));
        // Eight digits, the first in the lowest byte (first in memory).
        let word = pair(v / 1_000_000) | pair(v / 10_000) << 16 | pair(v / 100) << 32 | pair(v) << 48;
        // Leading zeros dropped: the number's own digits move to the front.
        out.extend_from_slice(&(word >> (8 * (8 - len))).to_le_bytes());
    } else {
        let mut buf = [0u8; 20];
        let mut i = len;
        let mut n = v;
        while n >= 100 {
            let [hi, lo] = DEC_PAIRS[(n % 100) as usize];
            n /= 100;
            i -= 2;
            buf[i] = hi;
            buf[i + 1] = lo;
        }
        if n >= 10 {
            let [hi, lo] = DEC_PAIRS[n as usize];
            buf[0] = hi;
            buf[1] = lo;
        } else {
            buf[0] = b'0' + n as u8;
        }
        out.extend_from_slice(&buf);
    }
    out.truncate(at + len);
}

/// What the compact (version 2 and later) lines of one trace are written relative
/// to: the high half of the root's run id and the header's `created_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineBase {
    /// The root run.
    pub root: RunId,
    /// High 64 bits of the root run id.
    pub id_high: u64,
    /// The header's `created_us`.
    pub t0: u64,
}

impl LineBase {
    /// The base of a trace whose header is `header`.
    pub fn of(header: &TraceHeader) -> Self {
        Self::new(header.root_run_id, header.created_us)
    }

    /// The base of root `root`'s trace created at `t0`.
    pub fn new(root: RunId, t0: u64) -> Self {
        Self {
            root,
            id_high: (root.as_u128() >> 64) as u64,
            t0,
        }
    }

    /// The id written as `low` (a number in a line).
    pub fn id(&self, low: u64) -> RunId {
        RunId::from_u128((u128::from(self.id_high) << 64) | u128::from(low))
    }

    /// The time written as `t`.
    pub fn time(&self, t: i64) -> u64 {
        // Wrapping, as the writer subtracts: every `u64` time round-trips.
        self.t0.wrapping_add_signed(t)
    }
}

/// Compact lines from one whole (`s`, `t`) line to the next in a version 3
/// trace.
pub const KEY_EVERY: u32 = 64;

/// Where the compact lines of one trace stand: its [`LineBase`] and, from
/// version 3, the previous line's sequence number and time, which the next
/// line is written relative to. A writer and a reader each keep one per
/// trace and move it line by line in the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineCursor {
    /// The trace's base.
    pub base: LineBase,
    /// Sequence numbers and times are written as deltas (version 3).
    deltas: bool,
    seq: u64,
    /// Time of the previous line, relative to `base.t0`.
    time: i64,
    /// Lines since the last whole one (writer).
    since_key: u32,
}

impl LineCursor {
    /// The cursor at the start of the trace whose header is `header`
    /// (compact lines: version 2 and later).
    pub fn of(header: &TraceHeader) -> Self {
        Self {
            base: LineBase::of(header),
            deltas: header.version >= 3,
            seq: 0,
            time: 0,
            since_key: 0,
        }
    }

    /// The cursor at the start of a trace this build creates for `root` at `t0`.
    pub fn new(root: RunId, t0: u64) -> Self {
        Self {
            base: LineBase::new(root, t0),
            deltas: true,
            seq: 0,
            time: 0,
            since_key: 0,
        }
    }

    /// True when lines are written relative to the one before (version 3).
    pub fn uses_deltas(&self) -> bool {
        self.deltas
    }

    /// The sequence number and time (µs since the epoch) of a line that
    /// wrote `s` / `t` whole or `ds` / `dt` as deltas, moving the cursor
    /// to it (reader).
    pub fn resolve(&mut self, s: Option<u64>, t: Option<i64>, ds: Option<i64>, dt: Option<i64>) -> (u64, u64) {
        self.seq = match (s, ds) {
            (Some(s), _) => s,
            (None, Some(d)) => self.seq.wrapping_add(d as u64),
            (None, None) => 0,
        };
        self.time = match (t, dt) {
            (Some(t), _) => t,
            (None, Some(d)) => self.time.wrapping_add(d),
            (None, None) => 0,
        };
        (self.seq, self.base.time(self.time))
    }
}

fn push_id(out: &mut Vec<u8>, id: RunId, base: &LineBase) {
    let v = id.as_u128();
    if (v >> 64) as u64 == base.id_high {
        push_u64(out, v as u64);
    } else {
        push_run_id(out, id);
    }
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// `[input, output, cached, cache_write, requests]` without trailing zeros.
fn push_usage(out: &mut Vec<u8>, u: &Usage) {
    let all = [
        u.input_tokens,
        u.output_tokens,
        u.cached_input_tokens,
        u.cache_write_input_tokens,
        u.requests,
    ];
    let n = all.iter().rposition(|&v| v != 0).map_or(0, |i| i + 1);
    out.push(b'[');
    for (i, v) in all.iter().take(n).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_u64(out, *v);
    }
    out.push(b']');
}

/// `,"c":` and the cost in picodollars, nothing for a zero cost.
fn push_cost(out: &mut Vec<u8>, cost: Cost) {
    if cost.picodollars() != 0 {
        out.extend_from_slice(b",\"c\":");
        push_u64(out, cost.picodollars());
    }
}

/// Reads a usage written by `push_usage`.
pub(crate) fn usage_from(v: &[u64]) -> Usage {
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Usage {
        input_tokens: at(0),
        output_tokens: at(1),
        cached_input_tokens: at(2),
        cache_write_input_tokens: at(3),
        requests: at(4),
    }
}

/// Whether `b` is written as itself inside a JSON string.
fn plain(b: u8) -> bool {
    b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f
}

fn push_str(out: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    let bytes = s.as_bytes();
    if bytes.len() <= 30 {
        // Short names (the common case): checked and copied in one pass
        // into a fixed buffer that is appended whole and cut back (see
        // `push_u64`; no `memmove` call).
        let mut buf = [0u8; 32];
        buf[0] = b'"';
        for (k, &b) in bytes.iter().enumerate() {
            if !plain(b) {
                return serde_json::to_writer(&mut *out, s);
            }
            buf[k + 1] = b;
        }
        buf[bytes.len() + 1] = b'"';
        let at = out.len();
        out.extend_from_slice(&buf);
        out.truncate(at + bytes.len() + 2);
        Ok(())
    } else if bytes.iter().all(|&b| plain(b)) {
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(&mut *out, s)
    }
}

/// Appends `event` as one compact JSON object, no newline, and moves
/// `cursor` past it (see the module docs; a failed line leaves the cursor
/// where it was). Lifecycle kinds are written by hand, the rest through
/// serde: the writer thread's budget is a few hundred nanoseconds per event.
pub fn write_event_line(out: &mut Vec<u8>, event: &Event, cursor: &mut LineCursor) -> Result<(), serde_json::Error> {
    let time = push_common(out, event, cursor);
    write_kind(out, &event.kind, &cursor.base)?;
    cursor.seq = event.seq;
    cursor.time = time;
    cursor.since_key = (cursor.since_key + 1) % KEY_EVERY;
    Ok(())
}

/// Appends one `rr` line (no newline): a sub-agent's `run_started` and its
/// `run_completed` that came right after it, written as one (see the module
/// docs), and moves `cursor` past both. Only for version 3 traces; `start`
/// and `end` must be those two events of one run.
pub fn write_run_line(
    out: &mut Vec<u8>,
    start: &Event,
    end: &Event,
    cursor: &mut LineCursor,
) -> Result<(), serde_json::Error> {
    use tinyagents_core::EventKind as K;
    let (
        K::RunStarted { name },
        K::RunCompleted {
            usage,
            total_usage,
            total_cost,
            failures,
        },
    ) = (&start.kind, &end.kind)
    else {
        return Err(<serde_json::Error as serde::ser::Error>::custom(
            "an `rr` line is a run's start and its completion",
        ));
    };
    if start.run_id != end.run_id || !cursor.deltas {
        return Err(<serde_json::Error as serde::ser::Error>::custom(
            "an `rr` line is one run's, in a version 3 trace",
        ));
    }
    let start_time = push_common(out, start, cursor);
    let end_time = (end.timestamp_us as i64).wrapping_sub(cursor.base.t0 as i64);
    out.extend_from_slice(b",\"k\":\"rr\",\"n\":");
    push_str(out, name)?;
    out.extend_from_slice(b",\"es\":");
    push_i64(out, end.seq.wrapping_sub(start.seq) as i64);
    out.extend_from_slice(b",\"et\":");
    push_i64(out, end_time.wrapping_sub(start_time));
    push_completed(out, usage, total_usage, *total_cost, *failures);
    out.push(b'}');
    cursor.seq = end.seq;
    cursor.time = end_time;
    cursor.since_key = (cursor.since_key + 1) % KEY_EVERY;
    Ok(())
}

/// `,"u":`… the fields of a `run_completed` (`rc` and `rr` lines).
fn push_completed(out: &mut Vec<u8>, usage: &Usage, total_usage: &Usage, total_cost: Cost, failures: u32) {
    out.extend_from_slice(b",\"u\":");
    push_usage(out, usage);
    if total_usage != usage {
        out.extend_from_slice(b",\"tu\":");
        push_usage(out, total_usage);
    }
    push_cost(out, total_cost);
    if failures != 0 {
        out.extend_from_slice(b",\"f\":");
        push_u64(out, u64::from(failures));
    }
}

/// `{` and the common fields of a compact line for `event` under `cursor`
/// (which it does not move); the event's time relative to the header.
fn push_common(out: &mut Vec<u8>, event: &Event, cursor: &LineCursor) -> i64 {
    let base = &cursor.base;
    let time = (event.timestamp_us as i64).wrapping_sub(base.t0 as i64);
    out.extend_from_slice(b"{\"r\":");
    push_id(out, event.run_id, base);
    if let Some(p) = event.parent_run_id {
        out.extend_from_slice(b",\"p\":");
        push_id(out, p, base);
    }
    if event.depth != 0 {
        out.extend_from_slice(b",\"d\":");
        push_u64(out, u64::from(event.depth));
    }
    if cursor.deltas && cursor.since_key != 0 {
        out.extend_from_slice(b",\"ds\":");
        push_i64(out, event.seq.wrapping_sub(cursor.seq) as i64);
        out.extend_from_slice(b",\"dt\":");
        push_i64(out, time.wrapping_sub(cursor.time));
    } else {
        out.extend_from_slice(b",\"s\":");
        push_u64(out, event.seq);
        out.extend_from_slice(b",\"t\":");
        push_i64(out, time);
    }
    time
}

/// `,"k":…` and the child fields shared by `ss` and `sc` lines.
fn push_child(
    out: &mut Vec<u8>,
    code: &[u8; 2],
    name: &str,
    child_run_id: RunId,
    child_depth: u32,
    base: &LineBase,
) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b",\"k\":\"");
    out.extend_from_slice(code);
    out.extend_from_slice(b"\",\"n\":");
    push_str(out, name)?;
    out.extend_from_slice(b",\"ci\":");
    push_id(out, child_run_id, base);
    out.extend_from_slice(b",\"cd\":");
    push_u64(out, u64::from(child_depth));
    Ok(())
}

/// The kind's fields of a compact line, and its closing brace.
fn write_kind(out: &mut Vec<u8>, kind: &tinyagents_core::EventKind, base: &LineBase) -> Result<(), serde_json::Error> {
    use tinyagents_core::EventKind as K;
    match kind {
        K::RunStarted { name } => {
            out.extend_from_slice(b",\"k\":\"rs\",\"n\":");
            push_str(out, name)?;
        }
        K::RunCompleted {
            usage,
            total_usage,
            total_cost,
            failures,
        } => {
            out.extend_from_slice(b",\"k\":\"rc\"");
            push_completed(out, usage, total_usage, *total_cost, *failures);
        }
        K::RunFailed {
            error,
            total_usage,
            total_cost,
        } => {
            out.extend_from_slice(b",\"k\":\"rf\",\"e\":");
            push_str(out, error)?;
            out.extend_from_slice(b",\"tu\":");
            push_usage(out, total_usage);
            push_cost(out, *total_cost);
        }
        K::SubAgentStarted {
            name,
            child_run_id,
            child_depth,
        } => {
            push_child(out, b"ss", name, *child_run_id, *child_depth, base)?;
        }
        K::SubAgentCompleted {
            name,
            child_run_id,
            child_depth,
            ok,
            usage,
            cost,
        } => {
            push_child(out, b"sc", name, *child_run_id, *child_depth, base)?;
            out.extend_from_slice(if *ok { b",\"ok\":true" } else { b",\"ok\":false" });
            out.extend_from_slice(b",\"u\":");
            push_usage(out, usage);
            push_cost(out, *cost);
        }
        other => {
            // An internally tagged object: splice its fields in.
            out.push(b',');
            let start = out.len();
            serde_json::to_writer(&mut *out, other)?;
            if out.get(start) == Some(&b'{') {
                out.remove(start);
            }
            return Ok(());
        }
    }
    out.push(b'}');
    Ok(())
}
