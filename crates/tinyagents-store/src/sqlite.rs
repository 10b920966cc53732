//! [`SqliteCheckpointer`]: checkpoints in an embedded SQLite database (the
//! bundled SQLite, WAL mode).
//!
//! Three tables mirror the records (see [`crate::record`]): `checkpoints`
//! (one row per superstep: the record and, as one blob, the next step's
//! tasks), `channel_values` (one row per changed channel) and `writes` (one
//! row per batch of task results, one transaction per batch). Every row has
//! a `format` column. Rows are JSON so a database can be inspected with the
//! `sqlite3` shell.
//!
//! With `synchronous=NORMAL` in WAL mode a committed transaction survives a
//! killed process (it is in the WAL file); only an OS crash or power loss
//! can lose the newest transactions.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};

use crate::Checkpointer;
use crate::codec::{self, Key};
use crate::error::StoreError;
use crate::record::{
    ChannelValue, CheckpointRecord, CheckpointSummary, FORMAT_VERSION, LoadedCheckpoint, StoreStats, TaskRecord,
    TaskWritesRecord,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS checkpoints (
    thread TEXT NOT NULL, ns TEXT NOT NULL, id INTEGER NOT NULL,
    parent INTEGER, step INTEGER NOT NULL, format INTEGER NOT NULL, source TEXT NOT NULL,
    n_tasks INTEGER NOT NULL, n_interrupts INTEGER NOT NULL,
    meta BLOB NOT NULL, tasks BLOB NOT NULL,
    PRIMARY KEY (thread, ns, id)
);
CREATE TABLE IF NOT EXISTS channel_values (
    thread TEXT NOT NULL, ns TEXT NOT NULL, channel TEXT NOT NULL, version INTEGER NOT NULL,
    format INTEGER NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (thread, ns, channel, version)
);
CREATE TABLE IF NOT EXISTS writes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    thread TEXT NOT NULL, ns TEXT NOT NULL, checkpoint INTEGER NOT NULL,
    format INTEGER NOT NULL, n_tasks INTEGER NOT NULL, batch BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS writes_by_checkpoint ON writes (thread, ns, checkpoint);
";

#[derive(Default)]
struct Counters {
    checkpoints: AtomicU64,
    channel_values: AtomicU64,
    task_writes: AtomicU64,
    write_batches: AtomicU64,
    bytes: AtomicU64,
}

/// Checkpoints in an SQLite file (see the module docs).
pub struct SqliteCheckpointer {
    conn: Mutex<Connection>,
    counters: Counters,
}

impl std::fmt::Debug for SqliteCheckpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteCheckpointer")
            .field("stats", &self.stats())
            .finish()
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl SqliteCheckpointer {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::with_connection(Connection::open(path).map_err(db)?)
    }

    /// A private in-memory database.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::with_connection(Connection::open_in_memory().map_err(db)?)
    }

    fn with_connection(conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Self {
            conn: Mutex::new(conn),
            counters: Counters::default(),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }
}

impl Checkpointer for SqliteCheckpointer {
    fn put_checkpoint(
        &self,
        record: &CheckpointRecord,
        next_tasks: &[TaskRecord],
        changed: &[ChannelValue],
    ) -> Result<(), StoreError> {
        let (meta, tasks) = codec::encode_checkpoint(record, next_tasks)?;
        let mut encoded = Vec::with_capacity(changed.len());
        for c in changed {
            encoded.push((c, codec::encode("channel value", &*c.value)?));
        }
        let mut conn = self.lock()?;
        let tx = conn.transaction().map_err(db)?;
        let mut bytes = (meta.len() + tasks.len()) as u64;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO channel_values (thread, ns, channel, version, format, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(db)?;
            for (c, value) in &encoded {
                bytes += value.len() as u64;
                stmt.execute(params![
                    record.thread_id,
                    record.namespace,
                    c.channel,
                    c.version as i64,
                    FORMAT_VERSION,
                    value
                ])
                .map_err(db)?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO checkpoints (thread, ns, id, parent, step, format, source, n_tasks, n_interrupts, meta, tasks) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                record.thread_id,
                record.namespace,
                record.checkpoint_id as i64,
                record.parent_id.map(|p| p as i64),
                record.step as i64,
                FORMAT_VERSION,
                record.source,
                next_tasks.len() as i64,
                record.interrupts.len() as i64,
                meta,
                tasks
            ],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.counters
            .channel_values
            .fetch_add(encoded.len() as u64, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    fn put_writes(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: u64,
        writes: &[TaskWritesRecord],
    ) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let batch = codec::encode("task writes", writes)?;
        let conn = self.lock()?;
        conn.prepare_cached(
            "INSERT INTO writes (thread, ns, checkpoint, format, n_tasks, batch) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                thread_id,
                namespace,
                checkpoint_id as i64,
                FORMAT_VERSION,
                writes.len() as i64,
                batch
            ])
        })
        .map_err(db)?;
        self.counters.write_batches.fetch_add(1, Ordering::Relaxed);
        self.counters
            .task_writes
            .fetch_add(writes.len() as u64, Ordering::Relaxed);
        self.counters.bytes.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn get_checkpoint(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<u64>,
    ) -> Result<Option<LoadedCheckpoint>, StoreError> {
        let conn = self.lock()?;
        let ck = Key { thread_id, namespace };
        let row: Option<(u32, Vec<u8>, Vec<u8>)> = match checkpoint_id {
            Some(id) => conn
                .query_row(
                    "SELECT format, meta, tasks FROM checkpoints WHERE thread = ?1 AND ns = ?2 AND id = ?3",
                    params![thread_id, namespace, id as i64],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(db)?,
            None => conn
                .query_row(
                    "SELECT format, meta, tasks FROM checkpoints WHERE thread = ?1 AND ns = ?2 ORDER BY id DESC LIMIT 1",
                    params![thread_id, namespace],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(db)?,
        };
        let Some((format, meta, tasks)) = row else {
            return Ok(None);
        };
        let (record, next_tasks) = codec::decode_checkpoint(&ck, format, &meta, &tasks)?;
        let mut values = Vec::with_capacity(record.channel_versions.len());
        {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT format, value FROM channel_values WHERE thread = ?1 AND ns = ?2 AND channel = ?3 AND version = ?4",
                )
                .map_err(db)?;
            for (channel, version) in &record.channel_versions {
                let v: Option<(u32, Vec<u8>)> = stmt
                    .query_row(params![thread_id, namespace, channel, *version as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                    .map_err(db)?;
                if let Some((f, bytes)) = v {
                    values.push((channel.clone(), f, bytes));
                }
            }
        }
        let mut batches = Vec::new();
        {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT format, batch FROM writes WHERE thread = ?1 AND ns = ?2 AND checkpoint = ?3 ORDER BY seq",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![thread_id, namespace, record.checkpoint_id as i64], |r| {
                    Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .map_err(db)?;
            for r in rows {
                batches.push(r.map_err(db)?);
            }
        }
        codec::assemble(&ck, (record, next_tasks), values, batches).map(Some)
    }

    fn list_checkpoints(&self, thread_id: &str, namespace: &str) -> Result<Vec<CheckpointSummary>, StoreError> {
        let conn = self.lock()?;
        let ck = Key { thread_id, namespace };
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, parent, step, source, n_tasks, n_interrupts, format FROM checkpoints WHERE thread = ?1 AND ns = ?2 ORDER BY id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![thread_id, namespace], |r| {
                Ok((
                    CheckpointSummary {
                        checkpoint_id: r.get::<_, i64>(0)? as u64,
                        parent_id: r.get::<_, Option<i64>>(1)?.map(|p| p as u64),
                        step: r.get::<_, i64>(2)? as u64,
                        source: r.get(3)?,
                        next_tasks: r.get::<_, i64>(4)? as usize,
                        interrupts: r.get::<_, i64>(5)? as usize,
                    },
                    r.get::<_, u32>(6)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for r in rows {
            let (summary, format) = r.map_err(db)?;
            codec::check_format(&ck, "checkpoint", format)?;
            out.push(summary);
        }
        Ok(out)
    }

    fn next_checkpoint_id(&self, thread_id: &str, namespace: &str) -> Result<u64, StoreError> {
        let conn = self.lock()?;
        let max: Option<i64> = conn
            .query_row(
                "SELECT MAX(id) FROM checkpoints WHERE thread = ?1 AND ns = ?2",
                params![thread_id, namespace],
                |r| r.get(0),
            )
            .map_err(db)?;
        Ok(max.map_or(1, |m| m as u64 + 1))
    }

    fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            channel_values: c.channel_values.load(Ordering::Relaxed),
            task_writes: c.task_writes.load(Ordering::Relaxed),
            write_batches: c.write_batches.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
        }
    }
}
