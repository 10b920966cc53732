//! An embedded GGUF model: llama.cpp in process, through `llama-cpp-2`, with
//! llguidance for grammar-constrained decoding. No key, no network.
//!
//! * **Chat template and tokenizer** are the model's own, applied by
//!   llama.cpp (chatml when the file has none).
//! * **Structured output** (`ModelRequest::response_format`) is decoded under
//!   the schema's grammar, compact (no free whitespace), so the reply is
//!   always valid JSON for the schema. Unconstrained, a 135M model almost
//!   never produces valid JSON; constrained, it always does.
//! * **Tool calls**: a small model cannot be trusted to decide when to call
//!   a tool, so when the request requires one (`ToolChoice::Required` or a
//!   named tool) the prompt ends with `<tool_call>` and the call's JSON
//!   (`{"name": …, "arguments": …}`, one of the offered tools) is decoded
//!   under a grammar. With `ToolChoice::Auto` the model writes freely, and if
//!   it opens a `<tool_call>` by itself the call is completed under the same
//!   grammar (`<tool_call>{"name": …, "arguments": …}</tool_call>`, tools
//!   listed in the system prompt, results sent back in `<tool_response>`).
//! * **Streaming**: tokens are reported as they are generated (text as
//!   `ModelDelta::Text`, a call's JSON as `ModelDelta::ToolCall` pieces).
//! * **Threads**: llama.cpp collapses when its threads compete with other
//!   work; the default is one thread, and [`LocalConfig::threads`] sets more.
//!   Generations run on tokio's blocking pool, at most
//!   [`LocalConfig::parallel`] at a time.
//! * **Errors**: a missing file, a file that is not GGUF, a truncated file or
//!   an architecture llama.cpp does not know are [`LocalError`]s at load; a
//!   prompt longer than the context window is `ModelError::ContextLength`.
//!
//! ```no_run
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use tinyagents_providers::local::{LocalConfig, LocalModel};
//! use tinyagents_providers::pull;
//!
//! let path = pull::model_pull(|_| {})?; // fetched once, verified
//! let model = LocalModel::load(LocalConfig::new(path).threads(1)).await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # });
//! ```

mod engine;
mod prompt;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use engine::Generation;
use engine::{Constraint, Engine, GenOptions, Piece};
use prompt::{Plan, TOOL_CALL_OPEN};
use tinyagents_core::{DeltaFn, ModelDelta, ModelError, ModelRequest, ModelResponse, ToolCall, Usage};

/// A local model could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// The file could not be opened.
    #[error("cannot open model file {path}: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not GGUF.
    #[error("{0} is not a GGUF model file")]
    NotGguf(PathBuf),
    /// llama.cpp refused the file.
    #[error(
        "llama.cpp could not load {0}: the file is truncated or corrupt, or its architecture is not supported by this llama.cpp"
    )]
    Load(PathBuf),
    /// No model is known by that id.
    #[error("unknown local model id {id:?}; known ids: {known}; or pass a GGUF file path")]
    UnknownModel {
        /// The id asked for.
        id: String,
        /// The ids known.
        known: String,
    },
    /// llama.cpp's backend failed.
    #[error("llama.cpp backend: {0}")]
    Backend(String),
    /// The loading task failed.
    #[error("loading the model failed: {0}")]
    Task(String),
}

pub use crate::pull::KNOWN_MODELS;

/// The file name of a known model id.
pub fn known_model_file(id: &str) -> Result<&'static str, LocalError> {
    KNOWN_MODELS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(id))
        .map(|(_, f)| *f)
        .ok_or_else(|| LocalError::UnknownModel {
            id: id.to_string(),
            known: KNOWN_MODELS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "),
        })
}

/// Configuration of a [`LocalModel`].
#[derive(Clone, Debug, PartialEq)]
pub struct LocalConfig {
    /// The GGUF file.
    pub path: PathBuf,
    /// Model id for events and pricing (default: the file name without `.gguf`).
    pub id: Option<String>,
    /// llama.cpp threads per generation (default 1).
    pub threads: u32,
    /// Generations run at once (default 1).
    pub parallel: usize,
    /// Context window in tokens (capped at the model's training context).
    pub context_size: u32,
    /// Output cap when the request sets none.
    pub max_output_tokens: u32,
    /// Sampling temperature; 0 decodes greedily (default 0, reproducible).
    pub temperature: f32,
    /// Sampling seed.
    pub seed: u32,
    /// Constrained JSON without free whitespace (default true).
    pub compact_json: bool,
    /// Penalty (> 1) on tokens repeated within the last 64 of free text;
    /// 1 disables it. Default 1.3: small models decoded greedily otherwise
    /// loop on one sentence.
    pub repeat_penalty: f32,
}

impl LocalConfig {
    /// Defaults for the model at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            id: None,
            threads: 1,
            parallel: 1,
            context_size: 4096,
            max_output_tokens: 512,
            temperature: 0.0,
            seed: 42,
            compact_json: true,
            repeat_penalty: 1.3,
        }
    }

    /// Sets the thread count (at least 1).
    #[must_use]
    pub fn threads(mut self, threads: u32) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Sets the context window.
    #[must_use]
    pub fn context_size(mut self, tokens: u32) -> Self {
        self.context_size = tokens;
        self
    }

    /// Sets the default output cap.
    #[must_use]
    pub fn max_output_tokens(mut self, tokens: u32) -> Self {
        self.max_output_tokens = tokens;
        self
    }

    /// Sets the sampling temperature (0: greedy).
    #[must_use]
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }

    /// Sets the repeat penalty (1: off).
    #[must_use]
    pub fn repeat_penalty(mut self, penalty: f32) -> Self {
        self.repeat_penalty = penalty;
        self
    }

    /// Sets the model id.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// An in-process GGUF model (see the module docs).
#[derive(Clone)]
pub struct LocalModel {
    engine: Arc<Engine>,
    config: Arc<LocalConfig>,
    id: String,
    permits: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("id", &self.id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Sets a flag when dropped: a generation whose caller went away stops.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl LocalModel {
    /// Loads the model (on the blocking pool).
    pub async fn load(config: LocalConfig) -> Result<Self, LocalError> {
        let path = config.path.clone();
        let engine = tokio::task::spawn_blocking(move || Engine::load(&path))
            .await
            .map_err(|e| LocalError::Task(e.to_string()))??;
        Ok(Self::from_engine(engine, config))
    }

    /// Loads the model on the current thread.
    pub fn load_blocking(config: LocalConfig) -> Result<Self, LocalError> {
        Ok(Self::from_engine(Engine::load(&config.path)?, config))
    }

    fn from_engine(engine: Engine, config: LocalConfig) -> Self {
        let id = config.id.clone().unwrap_or_else(|| {
            Path::new(&config.path)
                .file_name()
                .map(|f| f.to_string_lossy().trim_end_matches(".gguf").to_string())
                .unwrap_or_else(|| "local".into())
        });
        Self {
            engine: Arc::new(engine),
            permits: Arc::new(tokio::sync::Semaphore::new(config.parallel.max(1))),
            config: Arc::new(config),
            id,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LocalConfig {
        &self.config
    }

    /// The model's training context length.
    pub fn n_ctx_train(&self) -> u32 {
        self.engine.n_ctx_train
    }

    /// The prompt llama.cpp will see for `request` (chat template applied,
    /// `<tool_call>` appended when a call is forced).
    pub fn render_prompt(&self, request: &ModelRequest) -> Result<String, ModelError> {
        let mut prompt = self.engine.render(&prompt::chat_messages(request))?;
        if matches!(prompt::plan(request), Plan::ForcedCall(_)) {
            prompt.push_str(TOOL_CALL_OPEN);
        }
        Ok(prompt)
    }

    /// Tokens of `text` as a prompt.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.engine.count_tokens(text)
    }

    fn constraint(&self, request: &ModelRequest) -> Result<Constraint, ModelError> {
        let compact = self.config.compact_json;
        Ok(match prompt::plan(request) {
            Plan::Json(schema) => Constraint::Json(self.engine.json_matcher(&prompt::compact(&schema, compact))?),
            Plan::ForcedCall(schema) => Constraint::Call(self.engine.json_matcher(&prompt::compact(&schema, compact))?),
            Plan::Free => {
                let tools = prompt::offered_tools(request);
                Constraint::Free((!tools.is_empty()).then(|| prompt::compact(&prompt::call_schema(&tools), compact)))
            }
        })
    }

    /// Runs one generation on raw prompt text, blocking; `schema` constrains
    /// the output. For benchmarks and diagnostics.
    pub fn generate_blocking(
        &self,
        prompt: &str,
        schema: Option<&serde_json::Value>,
        max_tokens: u32,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation, ModelError> {
        let constraint = match schema {
            Some(s) => Constraint::Json(
                self.engine
                    .json_matcher(&prompt::compact(s, self.config.compact_json))?,
            ),
            None => Constraint::Free(None),
        };
        let opts = self.gen_options(max_tokens);
        let cancel = AtomicBool::new(false);
        self.engine
            .generate(prompt, constraint, &opts, &cancel, &mut |p| match p {
                Piece::Text(t) | Piece::Call(t) => on_text(&t),
            })
    }

    fn gen_options(&self, max_tokens: u32) -> GenOptions {
        GenOptions {
            max_tokens,
            n_ctx: self.config.context_size,
            threads: i32::try_from(self.config.threads.max(1)).unwrap_or(1),
            temperature: self.config.temperature,
            seed: self.config.seed,
            repeat_penalty: self.config.repeat_penalty,
        }
    }

    async fn run(&self, request: &ModelRequest, on_delta: Option<&DeltaFn<'_>>) -> Result<ModelResponse, ModelError> {
        let prompt = self.render_prompt(request)?;
        let constraint = self.constraint(request)?;
        let opts = self.gen_options(request.max_output_tokens.unwrap_or(self.config.max_output_tokens));
        let _permit = self.permits.acquire().await.map_err(|_| ModelError::Cancelled)?;
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Piece>();
        let engine = self.engine.clone();
        let streaming = on_delta.is_some();
        let task = tokio::task::spawn_blocking(move || {
            engine.generate(&prompt, constraint, &opts, &cancel, &mut |p| {
                if streaming {
                    let _ = tx.send(p);
                }
            })
        });
        if let Some(on_delta) = on_delta {
            while let Some(piece) = rx.recv().await {
                on_delta(match piece {
                    Piece::Text(t) => ModelDelta::Text { text: t.into() },
                    Piece::Call(t) => ModelDelta::ToolCall {
                        index: 0,
                        name: None,
                        arguments: t.into(),
                    },
                });
            }
        }
        let generation = task.await.map_err(|e| ModelError::Other {
            message: format!("local generation task failed: {e}"),
        })??;
        self.response(request, generation)
    }

    fn response(&self, request: &ModelRequest, g: Generation) -> Result<ModelResponse, ModelError> {
        let usage = Usage::call(u64::from(g.prompt_tokens), u64::from(g.generated_tokens));
        let mut tool_calls = Vec::new();
        if let Some(call) = &g.call {
            let (name, args) = prompt::parse_call(call).ok_or_else(|| ModelError::InvalidResponse {
                message: format!("the local model's tool call is not valid JSON: {call}"),
            })?;
            tool_calls.push(ToolCall::raw(format!("call_{}_{}", request.turn, 0), name, args));
        }
        let text = g.text.trim();
        Ok(ModelResponse {
            content: (!text.is_empty()).then(|| text.into()),
            tool_calls,
            usage,
        })
    }
}

impl_model_via_run!(LocalModel);
