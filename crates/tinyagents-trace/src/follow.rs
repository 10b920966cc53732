//! [`TraceFollower`]: reads a trace while its run is still writing it.
//!
//! The sink flushes a trace in blocks (every flush interval, and when the
//! root ends). A follower keeps its place: for a `.jsonl.zst` file, the
//! byte offset read so far and a streaming zstd decoder fed with whatever
//! was appended since (a block that is only half written simply waits for
//! the next poll; a line cut at a block edge is kept until its end comes);
//! for a SQLite trace, the number of the last row read. Each
//! [`TraceFollower::poll`] returns the records that became readable since
//! the previous one, in file order. `tinyagents ui` on a run that is still
//! going feeds them to the live debugger, which pushes the updates to the
//! page over server-sent events.
//!
//! ```
//! use tinyagents_core::{EventKind, RunConfig, RunContext};
//! use tinyagents_trace::{TraceConfig, TraceFollower, TraceSink, TraceStore};
//!
//! let dir = std::env::temp_dir().join(format!("ta-doc-follow-{}", std::process::id()));
//! let sink = TraceSink::new(TraceConfig::new(&dir)).unwrap();
//! let root = RunContext::root("boss", &RunConfig::new().sink(sink.clone()));
//! root.emit(EventKind::RunStarted { name: "boss".into() });
//! sink.flush().unwrap();
//! let mut follower = TraceFollower::new(TraceStore::new(&dir).location(root.run_id()));
//! assert_eq!(follower.poll().unwrap().len(), 1);
//! assert!(!follower.root_ended());
//! root.emit(EventKind::RunCompleted {
//!     usage: Default::default(),
//!     total_usage: Default::default(),
//!     total_cost: Default::default(),
//!     failures: 0,
//! });
//! sink.close().unwrap();
//! assert_eq!(follower.poll().unwrap().len(), 1);
//! assert!(follower.root_ended());
//! # std::fs::remove_dir_all(&dir).ok();
//! ```

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use tinyagents_core::{EventKind, RunId};
use zstd::stream::raw::Operation;

use crate::error::TraceError;
use crate::format::{Record, TraceHeader};
use crate::reader::{LineReader, check_header, trim_newline};
use crate::store::TraceLocation;

/// Follows one trace as it grows (see the module docs).
pub struct TraceFollower {
    location: TraceLocation,
    header: Option<TraceHeader>,
    /// Parses the lines after the header (set with it).
    reader: Option<LineReader>,
    /// Decoded bytes not yet ending in a newline.
    partial: Vec<u8>,
    /// Lines read (the header included).
    lines: u64,
    root_ended: bool,
    damage: Vec<TraceError>,
    file: Option<FileState>,
    /// SQLite: the next row number to read.
    next_row: i64,
}

struct FileState {
    file: File,
    offset: u64,
    decoder: zstd::stream::raw::Decoder<'static>,
}

impl std::fmt::Debug for TraceFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceFollower")
            .field("location", &self.location)
            .field("lines", &self.lines)
            .field("root_ended", &self.root_ended)
            .finish_non_exhaustive()
    }
}

impl TraceFollower {
    /// A follower at the start of the trace at `location` (nothing is read
    /// until [`poll`](Self::poll)).
    pub fn new(location: TraceLocation) -> Self {
        Self {
            location,
            header: None,
            reader: None,
            partial: Vec::new(),
            lines: 0,
            root_ended: false,
            damage: Vec::new(),
            file: None,
            next_row: 0,
        }
    }

    /// The header, once read.
    pub fn header(&self) -> Option<&TraceHeader> {
        self.header.as_ref()
    }

    /// True once the root's own end event was read.
    pub fn root_ended(&self) -> bool {
        self.root_ended
    }

    /// Damage met so far (corrupt lines are reported here and skipped).
    pub fn damage(&self) -> &[TraceError] {
        &self.damage
    }

    /// The records that became readable since the last poll. Errors are
    /// what stops following (a file that is not a trace, a newer format);
    /// a missing file or database row is not one yet (nothing was flushed).
    pub fn poll(&mut self) -> Result<Vec<Record>, TraceError> {
        match self.location.clone() {
            TraceLocation::File(path) => self.poll_file(&path)?,
            TraceLocation::Sqlite { db, root } => self.poll_sqlite(&db, root)?,
        }
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            let line = self.partial[start..end].to_vec();
            start = end + 1;
            self.line(&line, &mut out)?;
        }
        self.partial.drain(..start);
        Ok(out)
    }

    fn line(&mut self, raw: &[u8], out: &mut Vec<Record>) -> Result<(), TraceError> {
        let line = trim_newline(raw);
        self.lines += 1;
        if line.is_empty() {
            return Ok(());
        }
        let (Some(header), Some(reader)) = (&self.header, self.reader.as_mut()) else {
            let header = check_header(line, self.location.path().to_path_buf())?;
            self.reader = Some(LineReader::new(&header));
            self.header = Some(header);
            return Ok(());
        };
        match reader.parse(line) {
            Ok(first) => {
                // An `rr` line holds two events.
                for rec in std::iter::once(first).chain(reader.take_second()) {
                    if let Record::Event(e) = &rec
                        && e.run_id == header.root_run_id
                        && matches!(e.kind, EventKind::RunCompleted { .. } | EventKind::RunFailed { .. })
                    {
                        self.root_ended = true;
                    }
                    out.push(rec);
                }
            }
            Err(detail) => self.damage.push(TraceError::CorruptLine {
                path: self.location.path().to_path_buf(),
                line: self.lines,
                detail,
            }),
        }
        Ok(())
    }

    fn poll_file(&mut self, path: &std::path::Path) -> Result<(), TraceError> {
        if self.file.is_none() {
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(TraceError::io(path, e)),
            };
            let decoder = zstd::stream::raw::Decoder::new().map_err(|e| TraceError::io(path, e))?;
            self.file = Some(FileState {
                file,
                offset: 0,
                decoder,
            });
        }
        let Some(state) = self.file.as_mut() else { return Ok(()) };
        state
            .file
            .seek(SeekFrom::Start(state.offset))
            .map_err(|e| TraceError::io(path, e))?;
        let mut input = Vec::new();
        state
            .file
            .read_to_end(&mut input)
            .map_err(|e| TraceError::io(path, e))?;
        state.offset += input.len() as u64;
        let mut chunk = vec![0u8; 128 * 1024];
        let mut at = 0;
        loop {
            let status = state
                .decoder
                .run_on_buffers(&input[at..], &mut chunk)
                .map_err(|e| TraceError::NotATrace {
                    path: path.to_path_buf(),
                    reason: format!("not zstd-compressed: {e}"),
                })?;
            at += status.bytes_read;
            self.partial
                .extend_from_slice(chunk.get(..status.bytes_written).unwrap_or_default());
            // Done when the input is used up and the output did not fill
            // (a full output may hide more decoded bytes).
            if at >= input.len() && status.bytes_written < chunk.len() {
                break;
            }
        }
        Ok(())
    }

    fn poll_sqlite(&mut self, db: &std::path::Path, root: RunId) -> Result<(), TraceError> {
        if self.header.is_none() {
            match crate::sqlite::header_text(db, root)? {
                Some(h) => {
                    self.partial.extend_from_slice(h.as_bytes());
                    self.partial.push(b'\n');
                }
                None => return Ok(()),
            }
        }
        let rows = crate::sqlite::lines_from(db, root, self.next_row)?;
        for (n, line) in rows {
            self.partial.extend_from_slice(&line);
            self.partial.push(b'\n');
            self.next_row = n + 1;
        }
        Ok(())
    }
}
