//! Durable agent runs: a checkpoint after every agent step.
//!
//! Because [`AgentRun`] is a serializable state machine, a checkpoint is just
//! the run's state between two steps, its identity and its usage so far. The
//! steering log of the run is journaled separately on every change (a command
//! accepted, applied or rejected), so a command accepted a moment before a
//! crash is not lost; on resume it is queued again unless it was already
//! applied, so it takes effect exactly once.
//!
//! Records carry a format version; a checkpoint written by a newer format is
//! refused with [`CheckpointError::NewerFormat`] and left untouched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tinyagents_core::{Cost, RunId, RunMeta, Usage};

use crate::machine::AgentRun;
use crate::steering::SteeringLog;

/// The format version this build writes and reads.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// One agent run between two steps.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentCheckpoint {
    /// Format version.
    pub format: u32,
    /// Increases with every checkpoint of the run.
    pub seq: u64,
    /// The run's identity.
    pub meta: RunMeta,
    /// The state machine.
    pub run: AgentRun,
    /// Usage of the run's own model calls so far.
    pub usage: Usage,
    /// Their cost.
    pub cost: Cost,
    /// The steering log as of this checkpoint.
    #[serde(default)]
    pub steering: SteeringLog,
}

impl AgentCheckpoint {
    /// The checkpoint's id, as steering events report it.
    pub fn id(&self) -> String {
        format!("{}:{}", self.meta.run_id, self.seq)
    }
}

/// A checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The storage failed.
    #[error("checkpoint I/O at {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The stored record does not parse.
    #[error("corrupt checkpoint at {path}: {message}")]
    Corrupt {
        /// Where.
        path: PathBuf,
        /// The parse error.
        message: String,
    },
    /// The record was written by a newer TinyAgents.
    #[error(
        "checkpoint at {path} has format {found}, newer than the supported {supported}; upgrade TinyAgents to read it"
    )]
    NewerFormat {
        /// Where.
        path: PathBuf,
        /// Its format.
        found: u32,
        /// Ours.
        supported: u32,
    },
}

/// Where agent checkpoints go.
pub trait AgentCheckpointer: Send + Sync + 'static {
    /// Saves the run's state (replacing the previous one).
    fn save_run(&self, checkpoint: &AgentCheckpoint) -> Result<(), CheckpointError>;
    /// Saves the run's steering log (replacing the previous one).
    fn save_steering(&self, run_id: RunId, log: &SteeringLog) -> Result<(), CheckpointError>;
    /// The latest state and steering log of a run, if any.
    fn load(&self, run_id: RunId) -> Result<Option<(AgentCheckpoint, SteeringLog)>, CheckpointError>;
}

/// Keeps checkpoints in memory (tests, short-lived processes).
#[derive(Debug, Default)]
pub struct MemoryCheckpointer {
    runs: Mutex<HashMap<RunId, AgentCheckpoint>>,
    steering: Mutex<HashMap<RunId, SteeringLog>>,
}

impl AgentCheckpointer for MemoryCheckpointer {
    fn save_run(&self, checkpoint: &AgentCheckpoint) -> Result<(), CheckpointError> {
        if let Ok(mut m) = self.runs.lock() {
            m.insert(checkpoint.meta.run_id, checkpoint.clone());
        }
        Ok(())
    }
    fn save_steering(&self, run_id: RunId, log: &SteeringLog) -> Result<(), CheckpointError> {
        if let Ok(mut m) = self.steering.lock() {
            m.insert(run_id, log.clone());
        }
        Ok(())
    }
    fn load(&self, run_id: RunId) -> Result<Option<(AgentCheckpoint, SteeringLog)>, CheckpointError> {
        let run = self.runs.lock().ok().and_then(|m| m.get(&run_id).cloned());
        let log = self
            .steering
            .lock()
            .ok()
            .and_then(|m| m.get(&run_id).cloned())
            .unwrap_or_default();
        Ok(run.map(|r| (r, log)))
    }
}

/// Keeps checkpoints as JSON files in a directory, written atomically
/// (temporary file, fsync, rename), so a crash mid-write leaves the previous
/// checkpoint intact.
#[derive(Debug, Clone)]
pub struct FileCheckpointer {
    dir: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SteeringRecord {
    format: u32,
    log: SteeringLog,
}

impl FileCheckpointer {
    /// Checkpoints in `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| CheckpointError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    fn path(&self, run_id: RunId, kind: &str) -> PathBuf {
        self.dir.join(format!("{run_id}.{kind}.json"))
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
        use std::io::Write;
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    fn read<T: serde::de::DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, CheckpointError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let found = value.get("format").and_then(serde_json::Value::as_u64).unwrap_or(0) as u32;
        if found > CHECKPOINT_FORMAT {
            return Err(CheckpointError::NewerFormat {
                path: path.to_path_buf(),
                found,
                supported: CHECKPOINT_FORMAT,
            });
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| CheckpointError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    }
}

impl AgentCheckpointer for FileCheckpointer {
    fn save_run(&self, checkpoint: &AgentCheckpoint) -> Result<(), CheckpointError> {
        let path = self.path(checkpoint.meta.run_id, "run");
        let bytes = serde_json::to_vec(checkpoint).map_err(|e| CheckpointError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        self.write(&path, &bytes)
    }

    fn save_steering(&self, run_id: RunId, log: &SteeringLog) -> Result<(), CheckpointError> {
        let path = self.path(run_id, "steering");
        let record = SteeringRecord {
            format: CHECKPOINT_FORMAT,
            log: log.clone(),
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| CheckpointError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        self.write(&path, &bytes)
    }

    fn load(&self, run_id: RunId) -> Result<Option<(AgentCheckpoint, SteeringLog)>, CheckpointError> {
        let Some(run) = self.read::<AgentCheckpoint>(&self.path(run_id, "run"))? else {
            return Ok(None);
        };
        let log = self
            .read::<SteeringRecord>(&self.path(run_id, "steering"))?
            .map(|r| r.log)
            .unwrap_or_default();
        Ok(Some((run, log)))
    }
}
