#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod codec;
pub mod error;
pub mod memory;
pub mod record;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use error::StoreError;
pub use memory::MemoryCheckpointer;
pub use record::{
    ChannelValue, CheckpointRecord, CheckpointSummary, ChildRunKind, ChildRunRef, FORMAT_VERSION, InterruptRecord,
    LoadedCheckpoint, RouteRecord, StoreStats, TaskExtra, TaskRecord, TaskWritesRecord,
};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteCheckpointer;

/// Durable storage of graph checkpoints.
///
/// Calls are synchronous (the graph runtime calls them off the async
/// executor) and each call is atomic: a checkpoint and its changed channel
/// values are written together or not at all, and so is a batch of task
/// results.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a checkpointer",
    label = "use `MemoryCheckpointer` or `SqliteCheckpointer`, or implement `Checkpointer`"
)]
pub trait Checkpointer: Send + Sync + 'static {
    /// Writes a checkpoint, the tasks of its next step and the channel values
    /// that changed in its step.
    fn put_checkpoint(
        &self,
        record: &CheckpointRecord,
        next_tasks: &[TaskRecord],
        changed: &[ChannelValue],
    ) -> Result<(), StoreError>;

    /// Saves results of tasks scheduled by checkpoint `checkpoint_id`, in one
    /// transaction.
    fn put_writes(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: u64,
        writes: &[TaskWritesRecord],
    ) -> Result<(), StoreError>;

    /// Loads checkpoint `checkpoint_id`, or the newest one when `None`.
    fn get_checkpoint(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<u64>,
    ) -> Result<Option<LoadedCheckpoint>, StoreError>;

    /// Checkpoints of a thread and namespace, oldest first.
    fn list_checkpoints(&self, thread_id: &str, namespace: &str) -> Result<Vec<CheckpointSummary>, StoreError>;

    /// An id greater than every checkpoint id of the thread and namespace.
    fn next_checkpoint_id(&self, thread_id: &str, namespace: &str) -> Result<u64, StoreError>;

    /// What was written so far through this handle.
    fn stats(&self) -> StoreStats;
}

impl<T: Checkpointer + ?Sized> Checkpointer for std::sync::Arc<T> {
    fn put_checkpoint(
        &self,
        record: &CheckpointRecord,
        next_tasks: &[TaskRecord],
        changed: &[ChannelValue],
    ) -> Result<(), StoreError> {
        (**self).put_checkpoint(record, next_tasks, changed)
    }
    fn put_writes(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: u64,
        writes: &[TaskWritesRecord],
    ) -> Result<(), StoreError> {
        (**self).put_writes(thread_id, namespace, checkpoint_id, writes)
    }
    fn get_checkpoint(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<u64>,
    ) -> Result<Option<LoadedCheckpoint>, StoreError> {
        (**self).get_checkpoint(thread_id, namespace, checkpoint_id)
    }
    fn list_checkpoints(&self, thread_id: &str, namespace: &str) -> Result<Vec<CheckpointSummary>, StoreError> {
        (**self).list_checkpoints(thread_id, namespace)
    }
    fn next_checkpoint_id(&self, thread_id: &str, namespace: &str) -> Result<u64, StoreError> {
        (**self).next_checkpoint_id(thread_id, namespace)
    }
    fn stats(&self) -> StoreStats {
        (**self).stats()
    }
}
