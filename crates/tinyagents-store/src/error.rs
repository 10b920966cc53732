//! Store errors.

/// A checkpointer failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record was written by a newer format than this build reads. Nothing
    /// was changed.
    #[error(
        "{what} of thread {thread_id:?} (namespace {namespace:?}) has format {found}, newer than the supported {supported}; upgrade tinyagents to read it (nothing was changed)"
    )]
    NewerFormat {
        /// Which record.
        what: String,
        /// The thread.
        thread_id: String,
        /// The namespace.
        namespace: String,
        /// Format found.
        found: u32,
        /// Newest format this build reads.
        supported: u32,
    },
    /// A record could not be decoded.
    #[error("corrupt {what}: {message}")]
    Corrupt {
        /// Which record.
        what: String,
        /// The decoder's message.
        message: String,
    },
    /// A checkpoint was asked for that does not exist.
    #[error("no checkpoint {checkpoint_id} in thread {thread_id:?} (namespace {namespace:?})")]
    NotFound {
        /// The thread.
        thread_id: String,
        /// The namespace.
        namespace: String,
        /// The checkpoint.
        checkpoint_id: u64,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(String),
    /// A lock was poisoned by a panic in another thread.
    #[error("store lock poisoned")]
    Poisoned,
}
