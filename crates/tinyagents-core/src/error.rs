//! Errors. Every run error carries the run path and depth; errors that stop a
//! run early carry its best partial result (degrade, don't drop).

use std::sync::Arc;

use crate::budget::LimitKind;
use crate::ids::RunPath;
use crate::message::Transcript;
use crate::usage::{Cost, Usage};

/// What a run had achieved when it was stopped.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartialResult {
    /// The last assistant text, if any.
    pub text: Option<Arc<str>>,
    /// The transcript up to the stop.
    pub transcript: Transcript,
    /// Usage of the run and its descendants up to the stop.
    pub usage: Usage,
    /// Cost of the run and its descendants up to the stop.
    pub cost: Cost,
    /// Model turns completed.
    pub turns: u32,
}

/// Why a model call failed. Providers map their wire errors onto these.
#[derive(Clone, Debug, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelError {
    /// 401/403: the key is missing, wrong or not allowed.
    #[error("authentication failed ({status}): {message}")]
    Auth {
        /// HTTP status.
        status: u16,
        /// Provider message.
        message: String,
    },
    /// The model id is unknown to the provider.
    #[error("model not found: {model}")]
    ModelNotFound {
        /// The id asked for.
        model: String,
    },
    /// 429: rate limited.
    #[error("rate limited (retry after {retry_after_ms:?} ms)")]
    RateLimited {
        /// The provider's `Retry-After`, in milliseconds.
        retry_after_ms: Option<u64>,
    },
    /// 5xx from the provider.
    #[error("provider error {status}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Provider message.
        message: String,
    },
    /// Connection failed or was reset.
    #[error("transport error: {message}")]
    Transport {
        /// What happened.
        message: String,
    },
    /// The response could not be understood (not JSON, truncated stream…).
    #[error("invalid response: {message}")]
    InvalidResponse {
        /// What was wrong.
        message: String,
    },
    /// The prompt does not fit the model's context window.
    #[error("context length exceeded: {message}")]
    ContextLength {
        /// Details.
        message: String,
    },
    /// The call took too long.
    #[error("model call timed out")]
    Timeout,
    /// The call was cancelled.
    #[error("model call cancelled")]
    Cancelled,
    /// A scripted model had no response for this request.
    #[error("script error: {message}")]
    Script {
        /// What was missing.
        message: String,
    },
    /// The reply reached its output cap before it was complete (for example
    /// structured output cut off mid-JSON). The tokens were generated, so
    /// they are counted: the run is charged `usage` like a finished call.
    #[error("the output cap of {cap} tokens was reached before the reply was complete")]
    OutputCapReached {
        /// The cap, in output tokens.
        cap: u32,
        /// What the cut-off call consumed (boxed: errors stay small).
        usage: Box<crate::Usage>,
    },
    /// Anything else.
    #[error("{message}")]
    Other {
        /// Details.
        message: String,
    },
}

impl ModelError {
    /// What a failed call consumed anyway, when the provider knows it (the
    /// run is charged for it before it fails).
    pub fn spent(&self) -> Option<&crate::Usage> {
        match self {
            Self::OutputCapReached { usage, .. } => Some(usage),
            _ => None,
        }
    }

    /// True for errors worth retrying (rate limits, 5xx, transport, timeout).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Transport { .. } | Self::Timeout
        )
    }
}

/// Classification of a tool failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolErrorKind {
    /// Arguments did not parse or did not match the schema.
    InvalidArguments,
    /// No tool of that name.
    NotFound,
    /// The tool took too long.
    Timeout,
    /// The call was cancelled.
    Cancelled,
    /// Policy refused the call.
    Denied,
    /// The tool ran and failed.
    Failed,
    /// The tool panicked.
    Panicked,
    /// A child run (sub-agent) failed.
    ChildRun,
}

/// A tool call failed. The message is what the model sees.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ToolError {
    /// Arguments did not parse or did not match the schema.
    #[error("invalid arguments: {message}")]
    InvalidArguments {
        /// Parser message.
        message: String,
    },
    /// No tool of that name.
    #[error("unknown tool {tool:?}; available tools: {available}")]
    NotFound {
        /// The requested name.
        tool: String,
        /// Comma-separated names the model may call.
        available: String,
    },
    /// The tool took too long.
    #[error("tool timed out")]
    Timeout,
    /// The call was cancelled.
    #[error("tool call cancelled")]
    Cancelled,
    /// Policy refused the call.
    #[error("denied: {reason}")]
    Denied {
        /// Why.
        reason: String,
    },
    /// The tool ran and failed.
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
    },
    /// The tool panicked; its siblings were not affected.
    #[error("tool panicked: {message}")]
    Panicked {
        /// The panic payload, if it was a string.
        message: String,
    },
    /// A sub-agent invoked as a tool failed.
    #[error("sub-agent failed: {0}")]
    ChildRun(Box<RunError>),
}

impl ToolError {
    /// A `Failed` error from anything printable.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        Self::Failed {
            message: message.to_string(),
        }
    }

    /// The classification.
    pub fn kind(&self) -> ToolErrorKind {
        match self {
            Self::InvalidArguments { .. } => ToolErrorKind::InvalidArguments,
            Self::NotFound { .. } => ToolErrorKind::NotFound,
            Self::Timeout => ToolErrorKind::Timeout,
            Self::Cancelled => ToolErrorKind::Cancelled,
            Self::Denied { .. } => ToolErrorKind::Denied,
            Self::Failed { .. } => ToolErrorKind::Failed,
            Self::Panicked { .. } => ToolErrorKind::Panicked,
            Self::ChildRun(_) => ToolErrorKind::ChildRun,
        }
    }
}

impl From<String> for ToolError {
    fn from(message: String) -> Self {
        Self::Failed { message }
    }
}

impl From<&str> for ToolError {
    fn from(message: &str) -> Self {
        Self::failed(message)
    }
}

impl From<std::convert::Infallible> for ToolError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

/// A run failed. Every variant names the run (path) and its depth.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RunError {
    /// Spawning a child at `depth` would exceed `max_depth`; refused before any
    /// model call.
    #[error(
        "{path} (depth {depth}): sub-agent depth {depth} exceeds max_depth {max_depth}; delegate less deeply or answer directly"
    )]
    SubAgentDepth {
        /// Path the refused child would have had.
        path: RunPath,
        /// Depth the child would have had.
        depth: u32,
        /// The cap in force.
        max_depth: u32,
    },
    /// A limit stopped the run (or refused a spawn).
    #[error("{path} (depth {depth}): {limit} budget exceeded")]
    BudgetExceeded {
        /// The stopped run.
        path: RunPath,
        /// Its depth.
        depth: u32,
        /// Which limit.
        limit: LimitKind,
        /// What it had done.
        partial: Box<PartialResult>,
    },
    /// The model failed.
    #[error("{path} (depth {depth}): model call failed: {source}")]
    Model {
        /// The run.
        path: RunPath,
        /// Its depth.
        depth: u32,
        /// The model's error.
        source: ModelError,
        /// What it had done.
        partial: Box<PartialResult>,
    },
    /// The run's task panicked.
    #[error("{path} (depth {depth}): run panicked: {message}")]
    Panicked {
        /// The run.
        path: RunPath,
        /// Its depth.
        depth: u32,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// The run was cancelled.
    #[error("{path} (depth {depth}): run cancelled")]
    Cancelled {
        /// The run.
        path: RunPath,
        /// Its depth.
        depth: u32,
        /// What it had done.
        partial: Box<PartialResult>,
    },
    /// The run was stopped by steering after finishing its current step.
    #[error("{path} (depth {depth}): run stopped by steering")]
    Stopped {
        /// The run.
        path: RunPath,
        /// Its depth.
        depth: u32,
        /// What it had done.
        partial: Box<PartialResult>,
    },
    /// A spawn was refused by policy (e.g. a narrowed delegation policy).
    #[error("{path} (depth {depth}): spawn denied: {reason}")]
    SpawnDenied {
        /// Path the refused child would have had.
        path: RunPath,
        /// Depth it would have had.
        depth: u32,
        /// Why.
        reason: String,
    },
    /// The run could not start or continue (bad state, bad configuration).
    #[error("{path} (depth {depth}): {message}")]
    Invalid {
        /// The run.
        path: RunPath,
        /// Its depth.
        depth: u32,
        /// What is wrong.
        message: String,
    },
}

impl RunError {
    /// Path of the run the error belongs to.
    pub fn path(&self) -> &RunPath {
        match self {
            Self::SubAgentDepth { path, .. }
            | Self::BudgetExceeded { path, .. }
            | Self::Model { path, .. }
            | Self::Panicked { path, .. }
            | Self::Cancelled { path, .. }
            | Self::Stopped { path, .. }
            | Self::SpawnDenied { path, .. }
            | Self::Invalid { path, .. } => path,
        }
    }

    /// Depth of the run the error belongs to.
    pub fn depth(&self) -> u32 {
        match self {
            Self::SubAgentDepth { depth, .. }
            | Self::BudgetExceeded { depth, .. }
            | Self::Model { depth, .. }
            | Self::Panicked { depth, .. }
            | Self::Cancelled { depth, .. }
            | Self::Stopped { depth, .. }
            | Self::SpawnDenied { depth, .. }
            | Self::Invalid { depth, .. } => *depth,
        }
    }

    /// The best partial result, when the run got anywhere.
    pub fn partial(&self) -> Option<&PartialResult> {
        match self {
            Self::BudgetExceeded { partial, .. }
            | Self::Model { partial, .. }
            | Self::Cancelled { partial, .. }
            | Self::Stopped { partial, .. } => Some(partial),
            _ => None,
        }
    }

    /// The limit that stopped the run, if a limit did.
    pub fn limit(&self) -> Option<LimitKind> {
        match self {
            Self::SubAgentDepth { .. } => Some(LimitKind::Depth),
            Self::BudgetExceeded { limit, .. } => Some(*limit),
            _ => None,
        }
    }
}
