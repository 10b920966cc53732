//! The SQLite backend: traces as rows of one database file.
//!
//! [`TraceConfig::sqlite`](crate::TraceConfig::sqlite) makes the
//! [`TraceSink`](crate::TraceSink) write here instead of into `.jsonl.zst`
//! files, and [`TraceStore::sqlite`](crate::TraceStore::sqlite) reads it
//! back (`trace list|show`, `ui`, pruning). The tables are prefixed
//! `trace_`, so the file may be shared with the graph runtime's
//! checkpointer (`tinyagents-store`'s `SqliteCheckpointer`): one file then
//! holds a graph's checkpoints and its trace.
//!
//! ```sql
//! trace_meta  (key TEXT PRIMARY KEY, value TEXT)        -- format, version
//! trace_roots (root_run_id TEXT PRIMARY KEY, started_us INTEGER,
//!              header TEXT, manifest TEXT)              -- one row per root run
//! trace_lines (root_run_id TEXT, n INTEGER, line TEXT,  -- one row per record,
//!              PRIMARY KEY (root_run_id, n))             --   the JSONL line
//! ```
//!
//! A row of `trace_lines` is exactly a line of the JSONL format (the same
//! bytes, uncompressed: queryable with SQLite's JSON functions), so reading
//! reuses the JSONL reader: format version checks, corrupt-line reports,
//! unknown record kinds. Writes stay off the hot path: the sink's writer
//! thread inserts the lines of a batch in one transaction (WAL journal, so
//! readers such as the web UI see a run while it proceeds).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tinyagents_core::RunId;

use crate::error::TraceError;
use crate::format::{FORMAT_NAME, FORMAT_VERSION, TraceManifest};
use crate::reader::TraceReader;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS trace_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trace_roots (
    root_run_id TEXT PRIMARY KEY,
    started_us INTEGER NOT NULL,
    header TEXT NOT NULL,
    manifest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trace_lines (
    root_run_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (root_run_id, n)
) WITHOUT ROWID;
";

fn db_error(path: &Path, e: &rusqlite::Error) -> TraceError {
    if let rusqlite::Error::SqliteFailure(f, _) = e
        && matches!(
            f.code,
            rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
        )
    {
        return TraceError::NotATrace {
            path: path.to_path_buf(),
            reason: format!("not a usable SQLite database: {e}"),
        };
    }
    TraceError::Database {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Checks the format recorded in `trace_meta` (if the tables exist).
fn check_format(conn: &Connection, path: &Path) -> Result<bool, TraceError> {
    let has_meta: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'trace_meta'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(|e| db_error(path, &e))?
        > 0;
    if !has_meta {
        return Ok(false);
    }
    let get = |k: &str| -> Result<Option<String>, TraceError> {
        conn.query_row("SELECT value FROM trace_meta WHERE key = ?1", [k], |r| r.get(0))
            .optional()
            .map_err(|e| db_error(path, &e))
    };
    if let Some(format) = get("format")?
        && format != FORMAT_NAME
    {
        return Err(TraceError::NotATrace {
            path: path.to_path_buf(),
            reason: format!("its trace tables hold format {format:?}, not {FORMAT_NAME:?}"),
        });
    }
    let version = get("version")?.and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    if version > FORMAT_VERSION {
        return Err(TraceError::NewerFormat {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(true)
}

/// Opens (creating if missing) a database for writing traces.
pub(crate) fn open_for_writing(path: &Path) -> Result<Connection, TraceError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| TraceError::io(dir, e))?;
    }
    let conn = Connection::open(path).map_err(|e| db_error(path, &e))?;
    check_format(&conn, path)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .map_err(|e| db_error(path, &e))?;
    conn.execute_batch(SCHEMA).map_err(|e| db_error(path, &e))?;
    conn.execute(
        "INSERT OR IGNORE INTO trace_meta (key, value) VALUES ('format', ?1), ('version', ?2)",
        params![FORMAT_NAME, FORMAT_VERSION.to_string()],
    )
    .map_err(|e| db_error(path, &e))?;
    Ok(conn)
}

/// Opens an existing database for reading; `None` when it has no trace
/// tables (or does not exist).
fn open_for_reading(path: &Path) -> Result<Option<Connection>, TraceError> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| db_error(path, &e))?;
    if check_format(&conn, path)? {
        Ok(Some(conn))
    } else {
        Ok(None)
    }
}

/// The writer thread's side (see the module docs).
pub(crate) struct SqliteOut {
    path: PathBuf,
    conn: Connection,
    pending: Vec<(RunId, u64, Vec<u8>)>,
}

impl SqliteOut {
    pub(crate) fn open(path: &Path) -> Result<Self, TraceError> {
        Ok(Self {
            path: path.to_path_buf(),
            conn: open_for_writing(path)?,
            pending: Vec::with_capacity(4096),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a root's row (header and provisional manifest) unless it
    /// exists; returns the header of an existing row (its lines must be
    /// written the way that header says).
    pub(crate) fn begin_root(
        &mut self,
        header: &[u8],
        manifest: &TraceManifest,
    ) -> Result<Option<crate::format::TraceHeader>, String> {
        let err = |e: rusqlite::Error| format!("{}: {e}", self.path.display());
        let root = manifest.root_run_id.to_string();
        let stored: Option<String> = self
            .conn
            .query_row("SELECT header FROM trace_roots WHERE root_run_id = ?1", [&root], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err)?;
        if let Some(h) = stored {
            return Ok(Some(serde_json::from_str(&h).unwrap_or_else(|_| {
                crate::format::TraceHeader {
                    version: 1,
                    ..crate::format::TraceHeader::new(manifest.root_run_id, crate::DetailLevel::Lifecycle, 0)
                }
            })));
        }
        let text = serde_json::to_string(manifest).map_err(|e| e.to_string())?;
        let header = String::from_utf8_lossy(header);
        self.conn
            .execute(
                "INSERT OR IGNORE INTO trace_roots (root_run_id, started_us, header, manifest) VALUES (?1, ?2, ?3, ?4)",
                params![root, manifest.started_us as i64, header.trim_end(), text],
            )
            .map(|_| None)
            .map_err(err)
    }

    /// Queues line `n` of `root` (written by [`commit`](Self::commit)).
    pub(crate) fn push(&mut self, root: RunId, n: u64, line: &[u8]) {
        self.pending.push((root, n, line.to_vec()));
    }

    /// Lines queued and not yet committed.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Writes the queued lines in one transaction.
    pub(crate) fn commit(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = self.path.display().to_string();
        let err = |e: rusqlite::Error| format!("{path}: {e}");
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR REPLACE INTO trace_lines (root_run_id, n, line) VALUES (?1, ?2, ?3)")
                .map_err(err)?;
            let mut root_text = String::new();
            let mut last: Option<RunId> = None;
            for (root, n, line) in &self.pending {
                if last != Some(*root) {
                    root_text = root.to_string();
                    last = Some(*root);
                }
                let line = std::str::from_utf8(line).unwrap_or_default();
                stmt.execute(params![root_text, *n as i64, line.trim_end()])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        self.pending.clear();
        Ok(())
    }

    /// Stores a root's manifest (provisional or final), with its start.
    pub(crate) fn write_manifest(&mut self, m: &TraceManifest) -> Result<(), String> {
        let text = serde_json::to_string(m).map_err(|e| e.to_string())?;
        self.conn
            .execute(
                "UPDATE trace_roots SET manifest = ?2, started_us = ?3 WHERE root_run_id = ?1",
                params![m.root_run_id.to_string(), text, m.started_us as i64],
            )
            .map(|_| ())
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Bytes of a root's lines (the trace's size, uncompressed).
    pub(crate) fn bytes_of(&self, root: RunId) -> u64 {
        bytes_of_root(&self.conn, root)
    }
}

fn bytes_of_root(conn: &Connection, root: RunId) -> u64 {
    conn.query_row(
        "SELECT coalesce(sum(length(line)) + count(*), 0) FROM trace_lines WHERE root_run_id = ?1",
        [root.to_string()],
        |r| r.get::<_, i64>(0),
    )
    .map_or(0, |b| u64::try_from(b).unwrap_or(0))
}

/// Root runs recorded in the database.
pub(crate) fn root_ids(path: &Path) -> Result<Vec<RunId>, TraceError> {
    let Some(conn) = open_for_reading(path)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn
        .prepare("SELECT root_run_id FROM trace_roots ORDER BY started_us, root_run_id")
        .map_err(|e| db_error(path, &e))?;
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| db_error(path, &e))?
        .filter_map(|r| r.ok().and_then(|s| s.parse::<RunId>().ok()))
        .collect();
    Ok(ids)
}

/// The stored manifest of a root (provisional while it runs), and the
/// bytes of its lines.
pub(crate) fn manifest(path: &Path, root: RunId) -> Result<Option<(TraceManifest, u64)>, TraceError> {
    let Some(conn) = open_for_reading(path)? else {
        return Ok(None);
    };
    let text: Option<String> = conn
        .query_row(
            "SELECT manifest FROM trace_roots WHERE root_run_id = ?1",
            [root.to_string()],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| db_error(path, &e))?;
    Ok(text
        .and_then(|t| serde_json::from_str::<TraceManifest>(&t).ok())
        .map(|m| (m, bytes_of_root(&conn, root))))
}

/// A reader over one root's records: its header and lines, as the JSONL
/// reader would see them in a file (errors name `path` and the root).
pub(crate) fn reader(path: &Path, root: RunId) -> Result<TraceReader, TraceError> {
    let unknown = || TraceError::UnknownRun {
        id: root.to_string(),
        hint: format!("no trace of it in the database {}", path.display()),
    };
    let conn = open_for_reading(path)?.ok_or_else(unknown)?;
    let header: String = conn
        .query_row(
            "SELECT header FROM trace_roots WHERE root_run_id = ?1",
            [root.to_string()],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| db_error(path, &e))?
        .ok_or_else(unknown)?;
    let mut bytes = header.into_bytes();
    bytes.push(b'\n');
    let mut stmt = conn
        .prepare("SELECT line FROM trace_lines WHERE root_run_id = ?1 ORDER BY n")
        .map_err(|e| db_error(path, &e))?;
    let mut rows = stmt.query([root.to_string()]).map_err(|e| db_error(path, &e))?;
    while let Some(row) = rows.next().map_err(|e| db_error(path, &e))? {
        // A line stored as text or as a blob reads the same.
        match row.get_ref(0).map_err(|e| db_error(path, &e))? {
            rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => bytes.extend_from_slice(t),
            _ => bytes.extend_from_slice(b"<not text>"),
        }
        bytes.push(b'\n');
    }
    TraceReader::from_reader(
        PathBuf::from(format!("{}#{root}", path.display())),
        std::io::Cursor::new(bytes),
    )
}

/// A root's stored header line, if the root has a row yet.
pub(crate) fn header_text(path: &Path, root: RunId) -> Result<Option<String>, TraceError> {
    let Some(conn) = open_for_reading(path)? else {
        return Ok(None);
    };
    conn.query_row(
        "SELECT header FROM trace_roots WHERE root_run_id = ?1",
        [root.to_string()],
        |r| r.get(0),
    )
    .optional()
    .map_err(|e| db_error(path, &e))
}

/// A root's lines numbered `from` and up, with their numbers, in order
/// (what a follower has not read yet).
pub(crate) fn lines_from(path: &Path, root: RunId, from: i64) -> Result<Vec<(i64, Vec<u8>)>, TraceError> {
    let Some(conn) = open_for_reading(path)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn
        .prepare("SELECT n, line FROM trace_lines WHERE root_run_id = ?1 AND n >= ?2 ORDER BY n")
        .map_err(|e| db_error(path, &e))?;
    let mut rows = stmt
        .query(params![root.to_string(), from])
        .map_err(|e| db_error(path, &e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| db_error(path, &e))? {
        let n: i64 = row.get(0).map_err(|e| db_error(path, &e))?;
        let line = match row.get_ref(1).map_err(|e| db_error(path, &e))? {
            rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => t.to_vec(),
            _ => b"<not text>".to_vec(),
        };
        out.push((n, line));
    }
    Ok(out)
}

/// Removes a root's rows; returns the bytes its lines took.
pub(crate) fn delete_root(path: &Path, root: RunId) -> Result<u64, TraceError> {
    let mut conn = Connection::open(path).map_err(|e| db_error(path, &e))?;
    let bytes = bytes_of_root(&conn, root);
    let tx = conn.transaction().map_err(|e| db_error(path, &e))?;
    for sql in [
        "DELETE FROM trace_lines WHERE root_run_id = ?1",
        "DELETE FROM trace_roots WHERE root_run_id = ?1",
    ] {
        tx.execute(sql, [root.to_string()]).map_err(|e| db_error(path, &e))?;
    }
    tx.commit().map_err(|e| db_error(path, &e))?;
    Ok(bytes)
}

/// Gives the space of deleted rows back to the file system.
pub(crate) fn vacuum(path: &Path) -> Result<(), TraceError> {
    let conn = Connection::open(path).map_err(|e| db_error(path, &e))?;
    conn.execute_batch("VACUUM").map_err(|e| db_error(path, &e))
}
