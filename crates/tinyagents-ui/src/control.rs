//! Steering hooks: the page's pause / resume / cancel buttons call a
//! [`ControlHandler`]. The debugger does not steer runs itself; whoever owns
//! the run (the CLI, once steering exists) plugs in a handler that goes
//! through the same policy checks as any other steering request. Without
//! one, [`NoSteering`] answers `501 steering not available`.

use tinyagents_core::RunId;

/// A steering request from the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    /// Pause the run at its next step boundary.
    Pause,
    /// Resume a paused run.
    Resume,
    /// Cancel the run.
    Cancel,
}

impl ControlAction {
    /// Parses `pause`, `resume`, `cancel`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            "cancel" => Some(Self::Cancel),
            _ => None,
        }
    }
}

/// Why a steering request was not carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No steering for this source (a recorded trace, or no handler): 501.
    #[error("steering not available")]
    NotAvailable,
    /// The handler does not know the run: 404.
    #[error("unknown run")]
    UnknownRun,
    /// A policy refused it: 403.
    #[error("denied: {0}")]
    Denied(String),
    /// It could not be done (the run already ended, …): 409.
    #[error("failed: {0}")]
    Failed(String),
}

/// Carries out steering requests (see the module docs).
pub trait ControlHandler: Send + Sync + 'static {
    /// Whether the page should enable its buttons.
    fn available(&self) -> bool {
        true
    }
    /// Applies `action` to `run`; the message is shown on the page.
    fn control(&self, run: RunId, action: ControlAction) -> Result<String, ControlError>;
}

/// The default handler: nothing can be steered.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSteering;

impl ControlHandler for NoSteering {
    fn available(&self) -> bool {
        false
    }
    fn control(&self, _: RunId, _: ControlAction) -> Result<String, ControlError> {
        Err(ControlError::NotAvailable)
    }
}
