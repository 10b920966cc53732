//! [`MemoryCheckpointer`]: checkpoints in memory, encoded exactly as the
//! SQLite backend encodes them (so format checks and byte counts match).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::Checkpointer;
use crate::codec::{self, Key};
use crate::error::StoreError;
use crate::record::{
    ChannelValue, CheckpointRecord, CheckpointSummary, FORMAT_VERSION, LoadedCheckpoint, StoreStats, TaskRecord,
    TaskWritesRecord,
};

type Thread = (String, String);
/// Encoded rows: (format, bytes).
type Rows = Vec<(u32, Vec<u8>)>;

struct StoredCheckpoint {
    format: u32,
    meta: Vec<u8>,
    tasks: Vec<u8>,
    summary: CheckpointSummary,
}

#[derive(Default)]
struct Inner {
    checkpoints: HashMap<Thread, BTreeMap<u64, StoredCheckpoint>>,
    values: HashMap<(Thread, String, u64), (u32, Vec<u8>)>,
    writes: HashMap<(Thread, u64), Rows>,
    stats: StoreStats,
}

/// Checkpoints kept in process memory; for tests and short-lived runs.
#[derive(Default)]
pub struct MemoryCheckpointer(Mutex<Inner>);

impl std::fmt::Debug for MemoryCheckpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCheckpointer")
            .field("stats", &self.stats())
            .finish()
    }
}

impl MemoryCheckpointer {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks every record of a thread as written by format `format`: a test
    /// hook to check that newer formats are refused.
    pub fn set_format_for_testing(&self, thread_id: &str, format: u32) {
        if let Ok(mut g) = self.0.lock() {
            for ((t, _), cps) in g.checkpoints.iter_mut() {
                if t == thread_id {
                    for cp in cps.values_mut() {
                        cp.format = format;
                    }
                }
            }
        }
    }
}

fn key(thread_id: &str, namespace: &str) -> Thread {
    (thread_id.to_string(), namespace.to_string())
}

impl Checkpointer for MemoryCheckpointer {
    fn put_checkpoint(
        &self,
        record: &CheckpointRecord,
        next_tasks: &[TaskRecord],
        changed: &[ChannelValue],
    ) -> Result<(), StoreError> {
        let (meta, tasks) = codec::encode_checkpoint(record, next_tasks)?;
        let mut encoded = Vec::with_capacity(changed.len());
        for c in changed {
            encoded.push((c.channel.clone(), c.version, codec::encode("channel value", &*c.value)?));
        }
        let mut g = self.0.lock().map_err(|_| StoreError::Poisoned)?;
        let k = key(&record.thread_id, &record.namespace);
        g.stats.checkpoints += 1;
        g.stats.bytes += (meta.len() + tasks.len()) as u64;
        for (channel, version, bytes) in encoded {
            g.stats.channel_values += 1;
            g.stats.bytes += bytes.len() as u64;
            g.values.insert((k.clone(), channel, version), (FORMAT_VERSION, bytes));
        }
        let summary = CheckpointSummary {
            checkpoint_id: record.checkpoint_id,
            parent_id: record.parent_id,
            step: record.step,
            source: record.source.clone(),
            next_tasks: next_tasks.len(),
            interrupts: record.interrupts.len(),
        };
        g.checkpoints.entry(k).or_default().insert(
            record.checkpoint_id,
            StoredCheckpoint {
                format: FORMAT_VERSION,
                meta,
                tasks,
                summary,
            },
        );
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
        let bytes = codec::encode("task writes", writes)?;
        let mut g = self.0.lock().map_err(|_| StoreError::Poisoned)?;
        g.stats.write_batches += 1;
        g.stats.task_writes += writes.len() as u64;
        g.stats.bytes += bytes.len() as u64;
        g.writes
            .entry((key(thread_id, namespace), checkpoint_id))
            .or_default()
            .push((FORMAT_VERSION, bytes));
        Ok(())
    }

    fn get_checkpoint(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<u64>,
    ) -> Result<Option<LoadedCheckpoint>, StoreError> {
        let g = self.0.lock().map_err(|_| StoreError::Poisoned)?;
        let k = key(thread_id, namespace);
        let ck = Key { thread_id, namespace };
        let Some(cps) = g.checkpoints.get(&k) else {
            return Ok(None);
        };
        let stored = match checkpoint_id {
            Some(id) => cps.get(&id),
            None => cps.values().next_back(),
        };
        let Some(stored) = stored else {
            return Ok(None);
        };
        let (record, next_tasks) = codec::decode_checkpoint(&ck, stored.format, &stored.meta, &stored.tasks)?;
        let mut values = Vec::with_capacity(record.channel_versions.len());
        for (channel, version) in &record.channel_versions {
            if let Some((format, bytes)) = g.values.get(&(k.clone(), channel.clone(), *version)) {
                values.push((channel.clone(), *format, bytes.clone()));
            }
        }
        let batches = g
            .writes
            .get(&(k.clone(), record.checkpoint_id))
            .cloned()
            .unwrap_or_default();
        codec::assemble(&ck, (record, next_tasks), values, batches).map(Some)
    }

    fn list_checkpoints(&self, thread_id: &str, namespace: &str) -> Result<Vec<CheckpointSummary>, StoreError> {
        let g = self.0.lock().map_err(|_| StoreError::Poisoned)?;
        let ck = Key { thread_id, namespace };
        let Some(cps) = g.checkpoints.get(&key(thread_id, namespace)) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(cps.len());
        for cp in cps.values() {
            codec::check_format(&ck, "checkpoint", cp.format)?;
            out.push(cp.summary.clone());
        }
        Ok(out)
    }

    fn next_checkpoint_id(&self, thread_id: &str, namespace: &str) -> Result<u64, StoreError> {
        let g = self.0.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(g.checkpoints
            .get(&key(thread_id, namespace))
            .and_then(|c| c.keys().next_back())
            .map_or(1, |id| id + 1))
    }

    fn stats(&self) -> StoreStats {
        self.0.lock().map(|g| g.stats).unwrap_or_default()
    }
}
