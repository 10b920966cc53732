//! Record and replay: any model, wrapped, writes each request and its reply
//! to a cassette (a JSON-lines file); a replaying cassette answers the same
//! requests with the same replies, deterministically and offline.
//!
//! # Matching
//!
//! A request is matched by its content: agent, depth, turn, messages, tools,
//! tool choice, response format and output cap. The run id is left out (it
//! is new on every run). Among the recorded entries that match, the first
//! not yet used answers, so identical requests are answered in recording
//! order while concurrent sub-agents may ask in any order. A request that
//! matches nothing is an error naming the first field that differs from the
//! closest recorded request (same agent and turn when there is one), e.g.
//! `messages[1].content: recorded "hi", got "hello"`.
//!
//! Streaming is recorded too: the deltas a streaming call reported are
//! stored with the reply and reported again on replay.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use tinyagents_core::{Model, ModelRequest, ModelResponse, Message, RunId, ToolChoice};
//! use tinyagents_providers::{CassetteModel, ScriptedModel};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("hello.jsonl");
//! let request = ModelRequest {
//!     agent: "a".into(), run_id: RunId::new(), depth: 0, turn: 0,
//!     messages: [Message::user("hi")].into_iter().collect(),
//!     tools: Arc::from([]), tool_choice: ToolChoice::Auto,
//!     response_format: None, max_output_tokens: None,
//! };
//! let inner = Arc::new(ScriptedModel::new([ModelResponse::text("hello")]));
//! let recorder = CassetteModel::record(inner, &path).unwrap();
//! recorder.complete(&request).await.unwrap();
//!
//! let replay = CassetteModel::replay(&path).unwrap();
//! let reply = replay.complete(&request).await.unwrap();
//! assert_eq!(reply.content.as_deref(), Some("hello"));
//! # });
//! ```

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tinyagents_core::{
    DeltaFn, Message, ModelDelta, ModelError, ModelRequest, ModelResponse, SharedModel, ToolChoice, ToolSpec,
};

/// A cassette could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum CassetteError {
    /// The file could not be read or created.
    #[error("cassette {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a cassette entry.
    #[error("cassette {path}, line {line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// The parts of a request that identify it (everything but the run id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Agent name.
    pub agent: String,
    /// Run depth.
    pub depth: u32,
    /// Turn within the run.
    pub turn: u32,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Tools offered.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// Tool-use constraint.
    #[serde(default)]
    pub tool_choice: ToolChoice,
    /// Requested output schema.
    #[serde(default)]
    pub response_format: Option<Value>,
    /// Output cap.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
}

impl From<&ModelRequest> for RecordedRequest {
    fn from(r: &ModelRequest) -> Self {
        Self {
            agent: r.agent.to_string(),
            depth: r.depth,
            turn: r.turn,
            messages: r.messages.to_vec(),
            tools: r.tools.to_vec(),
            tool_choice: r.tool_choice.clone(),
            response_format: r.response_format.as_deref().cloned(),
            max_output_tokens: r.max_output_tokens,
        }
    }
}

/// One line of a cassette.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CassetteEntry {
    /// Id of the recorded model.
    pub model: String,
    /// What was asked.
    pub request: RecordedRequest,
    /// The reply, when the call succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ModelResponse>,
    /// The error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ModelError>,
    /// Deltas reported while streaming (empty for non-streaming calls).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<ModelDelta>,
}

struct Replay {
    entries: Vec<(CassetteEntry, Value)>,
    used: Vec<bool>,
}

enum Mode {
    Record {
        inner: SharedModel,
        file: Mutex<std::fs::File>,
    },
    Replay(Mutex<Replay>),
}

/// A model that records to, or replays from, a cassette (see the module docs).
pub struct CassetteModel {
    id: String,
    path: PathBuf,
    mode: Mode,
}

impl std::fmt::Debug for CassetteModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::Record { .. } => "record",
            Mode::Replay(_) => "replay",
        };
        f.debug_struct("CassetteModel")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("mode", &mode)
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CassetteError + '_ {
    move |source| CassetteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The first place where two JSON values differ, as `path: recorded …, got …`.
pub fn first_difference(recorded: &Value, got: &Value) -> Option<String> {
    fn short(v: Option<&Value>) -> String {
        let s = v.map_or_else(|| "nothing".to_string(), Value::to_string);
        if s.len() > 120 {
            let mut end = 117;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}...", &s[..end])
        } else {
            s
        }
    }
    fn walk(path: &str, a: Option<&Value>, b: Option<&Value>) -> Option<String> {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let extra = y.keys().filter(|k| !x.contains_key(*k));
                x.keys().chain(extra).find_map(|k| {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&p, x.get(k), y.get(k))
                })
            }
            (Some(Value::Array(x)), Some(Value::Array(y))) => {
                (0..x.len().max(y.len())).find_map(|i| walk(&format!("{path}[{i}]"), x.get(i), y.get(i)))
            }
            _ if a == b => None,
            _ => Some(format!("{path}: recorded {}, got {}", short(a), short(b))),
        }
    }
    walk("", Some(recorded), Some(got))
}

impl CassetteModel {
    /// Records every call to `inner` into `path` (created or truncated).
    pub fn record(inner: SharedModel, path: impl AsRef<Path>) -> Result<Self, CassetteError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(&path))?;
        }
        let file = std::fs::File::create(&path).map_err(io_err(&path))?;
        Ok(Self {
            id: inner.id().to_string(),
            path,
            mode: Mode::Record {
                inner,
                file: Mutex::new(file),
            },
        })
    }

    /// Replays the cassette at `path`; its model id is the recorded one.
    pub fn replay(path: impl AsRef<Path>) -> Result<Self, CassetteError> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(io_err(&path))?;
        let mut entries = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io_err(&path))?;
            if line.trim().is_empty() {
                continue;
            }
            let entry: CassetteEntry = serde_json::from_str(&line).map_err(|e| CassetteError::Parse {
                path: path.clone(),
                line: i + 1,
                message: e.to_string(),
            })?;
            let key = serde_json::to_value(&entry.request).map_err(|e| CassetteError::Parse {
                path: path.clone(),
                line: i + 1,
                message: e.to_string(),
            })?;
            entries.push((entry, key));
        }
        let id = entries
            .first()
            .map_or_else(|| "cassette".to_string(), |(e, _)| e.model.clone());
        let used = vec![false; entries.len()];
        Ok(Self {
            id,
            path,
            mode: Mode::Replay(Mutex::new(Replay { entries, used })),
        })
    }

    /// Replays `path` when it exists, otherwise records `inner` into it.
    pub fn replay_or_record(inner: SharedModel, path: impl AsRef<Path>) -> Result<Self, CassetteError> {
        if path.as_ref().exists() {
            Self::replay(path)
        } else {
            Self::record(inner, path)
        }
    }

    /// True when replaying.
    pub fn is_replaying(&self) -> bool {
        matches!(self.mode, Mode::Replay(_))
    }

    /// Recorded entries not yet replayed (0 when recording).
    pub fn unused(&self) -> usize {
        match &self.mode {
            Mode::Replay(r) => r.lock().map(|r| r.used.iter().filter(|u| !**u).count()).unwrap_or(0),
            Mode::Record { .. } => 0,
        }
    }

    fn write(&self, file: &Mutex<std::fs::File>, entry: &CassetteEntry) -> Result<(), ModelError> {
        let fail = |e: &dyn std::fmt::Display| ModelError::Other {
            message: format!("cassette {}: cannot record: {e}", self.path.display()),
        };
        let mut line = serde_json::to_string(entry).map_err(|e| fail(&e))?;
        line.push('\n');
        let mut f = file.lock().map_err(|e| fail(&e))?;
        f.write_all(line.as_bytes()).map_err(|e| fail(&e))?;
        f.flush().map_err(|e| fail(&e))
    }

    fn lookup(&self, replay: &Mutex<Replay>, request: &ModelRequest) -> Result<CassetteEntry, ModelError> {
        let recorded = RecordedRequest::from(request);
        let key = serde_json::to_value(&recorded).map_err(|e| ModelError::Script { message: e.to_string() })?;
        let mut r = replay.lock().map_err(|e| ModelError::Script {
            message: format!("cassette {}: {e}", self.path.display()),
        })?;
        let Replay { entries, used } = &mut *r;
        let hit = entries
            .iter()
            .zip(used.iter())
            .position(|((_, k), used)| !*used && *k == key);
        if let Some(i) = hit
            && let (Some(slot), Some((entry, _))) = (used.get_mut(i), entries.get(i))
        {
            *slot = true;
            return Ok(entry.clone());
        }
        let unused = || entries.iter().zip(used.iter()).filter(|(_, u)| !**u).map(|(e, _)| e);
        let closest = unused()
            .find(|(e, _)| e.request.agent == recorded.agent && e.request.turn == recorded.turn)
            .or_else(|| unused().next());
        let what = format!(
            "cassette {}: no recorded request matches the call of agent {:?} (depth {}, turn {})",
            self.path.display(),
            recorded.agent,
            recorded.depth,
            recorded.turn
        );
        let message = match closest {
            Some((_, k)) => match first_difference(k, &key) {
                Some(diff) => format!("{what}; first difference: {diff}"),
                None => format!("{what}; the matching entry was already replayed"),
            },
            None => format!("{what}; all {} recorded entries were already replayed", entries.len()),
        };
        Err(ModelError::Script { message })
    }

    async fn run(&self, request: &ModelRequest, on_delta: Option<&DeltaFn<'_>>) -> Result<ModelResponse, ModelError> {
        match &self.mode {
            Mode::Replay(replay) => {
                let entry = self.lookup(replay, request)?;
                if let Some(on_delta) = on_delta {
                    if entry.deltas.is_empty() {
                        if let Some(resp) = &entry.response {
                            crate::replay_deltas(resp, on_delta);
                        }
                    } else {
                        entry.deltas.iter().cloned().for_each(on_delta);
                    }
                }
                match (entry.response, entry.error) {
                    (_, Some(e)) => Err(e),
                    (Some(r), None) => Ok(r),
                    (None, None) => Err(ModelError::Script {
                        message: format!("cassette {}: entry has neither response nor error", self.path.display()),
                    }),
                }
            }
            Mode::Record { inner, file } => {
                let deltas = Mutex::new(Vec::new());
                let result = match on_delta {
                    Some(on_delta) => {
                        let tee = |d: ModelDelta| {
                            if let Ok(mut v) = deltas.lock() {
                                v.push(d.clone());
                            }
                            on_delta(d);
                        };
                        inner.complete_streaming(request, &tee).await
                    }
                    None => inner.complete(request).await,
                };
                let (response, error) = match &result {
                    Ok(r) => (Some(r.clone()), None),
                    Err(e) => (None, Some(e.clone())),
                };
                let entry = CassetteEntry {
                    model: self.id.clone(),
                    request: request.into(),
                    response,
                    error,
                    deltas: deltas.into_inner().unwrap_or_default(),
                };
                self.write(file, &entry)?;
                result
            }
        }
    }
}

impl_model_via_run!(CassetteModel);
