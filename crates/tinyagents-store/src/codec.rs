//! Encoding of records, shared by the backends, with the format check.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::StoreError;
use crate::record::{CheckpointRecord, FORMAT_VERSION, LoadedCheckpoint, TaskRecord, TaskWritesRecord};

pub(crate) struct Key<'a> {
    pub thread_id: &'a str,
    pub namespace: &'a str,
}

pub(crate) fn check_format(key: &Key<'_>, what: &str, found: u32) -> Result<(), StoreError> {
    if found > FORMAT_VERSION {
        return Err(StoreError::NewerFormat {
            what: what.to_string(),
            thread_id: key.thread_id.to_string(),
            namespace: key.namespace.to_string(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.to_string(),
        message: e.to_string(),
    }
}

pub(crate) fn encode<T: serde::Serialize + ?Sized>(what: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| corrupt(what, e))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(what, e))
}

/// Encoded checkpoint: (meta, tasks).
pub(crate) fn encode_checkpoint(
    record: &CheckpointRecord,
    tasks: &[TaskRecord],
) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    Ok((encode("checkpoint", record)?, encode("checkpoint tasks", tasks)?))
}

pub(crate) fn decode_checkpoint(
    key: &Key<'_>,
    format: u32,
    meta: &[u8],
    tasks: &[u8],
) -> Result<(CheckpointRecord, Vec<TaskRecord>), StoreError> {
    check_format(key, "checkpoint", format)?;
    let record: CheckpointRecord = decode("checkpoint", meta)?;
    check_format(key, "checkpoint", record.format)?;
    let tasks = decode::<Vec<TaskRecord>>("checkpoint tasks", tasks)?;
    Ok((record, tasks))
}

/// Assembles a loaded checkpoint from its record, values and write batches
/// (oldest batch first; later results for a task replace earlier ones).
pub(crate) fn assemble(
    key: &Key<'_>,
    (record, next_tasks): (CheckpointRecord, Vec<TaskRecord>),
    values: Vec<(String, u32, Vec<u8>)>,
    batches: Vec<(u32, Vec<u8>)>,
) -> Result<LoadedCheckpoint, StoreError> {
    let mut vals = BTreeMap::new();
    for (channel, format, bytes) in values {
        check_format(key, "channel value", format)?;
        let v: Value = decode("channel value", &bytes)?;
        vals.insert(channel, v);
    }
    let mut by_index: BTreeMap<u32, TaskWritesRecord> = BTreeMap::new();
    for (format, bytes) in batches {
        check_format(key, "task writes", format)?;
        let batch: Vec<TaskWritesRecord> = decode("task writes", &bytes)?;
        for w in batch {
            by_index.insert(w.index, w);
        }
    }
    Ok(LoadedCheckpoint {
        record,
        next_tasks,
        values: vals,
        writes: by_index.into_values().collect(),
    })
}
