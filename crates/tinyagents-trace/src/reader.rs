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
use crate::format::{FORMAT_NAME, FORMAT_VERSION, ModelIoRecord, OtherRecord, Record, TraceHeader};

/// A streaming reader of one trace file.
pub struct TraceReader {
    path: PathBuf,
    header: TraceHeader,
    lines: Box<dyn BufRead + Send>,
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
        let value: serde_json::Value =
            serde_json::from_slice(&first).map_err(|e| not_a_trace(format!("first line is not a header: {e}")))?;
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
        let header: TraceHeader = serde_json::from_value(value).map_err(|e| not_a_trace(format!("bad header: {e}")))?;
        Ok(Self {
            path,
            header,
            lines,
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

/// Parses one line after the header.
pub fn parse_line(line: &[u8]) -> Result<Record, String> {
    if let Ok(e) = serde_json::from_slice::<Event>(line) {
        return Ok(Record::Event(e));
    }
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
    let id = |k: &str| value.get(k).and_then(|v| v.as_str()).and_then(|s| s.parse().ok());
    let num = |k: &str| value.get(k).and_then(|v| v.as_u64());
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
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            match self.lines.read_until(b'\n', &mut self.buf) {
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
                    return Some(parse_line(line).map_err(|detail| TraceError::CorruptLine {
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

fn trim_newline(b: &[u8]) -> &[u8] {
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
    let reader = TraceReader::open(path)?;
    let header = reader.header().clone();
    let mut records = Vec::new();
    let mut damage = Vec::new();
    for r in reader {
        match r {
            Ok(rec) => records.push(rec),
            Err(e) => damage.push(e),
        }
    }
    Ok(TraceContents {
        header,
        records,
        damage,
    })
}
