//! Steering hooks: the page's pause / resume / cancel buttons call a
//! [`ControlHandler`]. The debugger does not steer runs itself; whoever owns
//! the run plugs in a handler that goes through the same policy checks as
//! any other steering request:
//!
//! * [`HubControl`]: the run is in this process; requests go to its
//!   [`SteeringHub`] (what `tinyagents run --ui` uses).
//! * [`SocketControl`]: the run is in another process; requests go over its
//!   control socket (what `tinyagents ui` uses for a trace whose run is
//!   still live).
//!
//! Both send [`Actor::Human`] requests targeting the selected run
//! ([`SteeringTarget::ParentRun`]), exactly like `tinyagents steer`. A
//! refusal by the policy is [`ControlError::Denied`] (403); a request that
//! cannot be carried out (the run finished) is [`ControlError::Failed`]
//! (409); both carry the hub's reason, which the page shows. Without a
//! handler, [`NoSteering`] answers `501 steering not available`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tinyagents_core::{Actor, RunHooks, RunId, SteeringCommand, SteeringRequest, SteeringTarget};
use tinyagents_harness::steering::{ControlRequest, ControlResponse, SteeringHub};

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
    /// The steering command it sends.
    pub fn command(self) -> SteeringCommand {
        match self {
            Self::Pause => SteeringCommand::Pause,
            Self::Resume => SteeringCommand::Resume,
            Self::Cancel => SteeringCommand::Cancel,
        }
    }

    /// Past tense, for messages.
    fn done(self) -> &'static str {
        match self {
            Self::Pause => "pause accepted: the run pauses at its next safe boundary",
            Self::Resume => "resume accepted",
            Self::Cancel => "cancel accepted: the run (and its children) stop now",
        }
    }

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

/// The human actor the page steers as.
fn page_actor(id: &str) -> Actor {
    Actor::Human { id: id.into() }
}

/// Steers runs of this process through their [`SteeringHub`] (see the
/// module docs).
///
/// The hub may be bound late ([`HubControl::late`] then
/// [`HubControl::bind`]): a server started before the run has no hub yet,
/// and answers `409` until it has one.
pub struct HubControl {
    hooks: OnceLock<Arc<dyn RunHooks>>,
    actor_id: Arc<str>,
}

impl std::fmt::Debug for HubControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubControl")
            .field("bound", &self.hooks.get().is_some())
            .field("actor_id", &self.actor_id)
            .finish()
    }
}

impl HubControl {
    /// A handler steering through `hub`.
    pub fn new(hub: Arc<SteeringHub>) -> Arc<Self> {
        let c = Self::late();
        c.bind(hub);
        c
    }

    /// A handler whose hub is bound later with [`bind`](Self::bind).
    pub fn late() -> Arc<Self> {
        Arc::new(Self {
            hooks: OnceLock::new(),
            actor_id: "web-debugger".into(),
        })
    }

    /// Binds the run's control-plane hooks (a [`SteeringHub`], as installed
    /// with [`RunConfig::hooks`](tinyagents_core::RunConfig::hooks)). The
    /// first binding wins; hooks of another kind leave steering refused.
    pub fn bind(&self, hooks: Arc<dyn RunHooks>) {
        let _ = self.hooks.set(hooks);
    }

    fn hub(&self) -> Option<&SteeringHub> {
        self.hooks.get()?.as_any().downcast_ref::<SteeringHub>()
    }
}

impl ControlHandler for HubControl {
    fn control(&self, run: RunId, action: ControlAction) -> Result<String, ControlError> {
        let Some(hub) = self.hub() else {
            return Err(ControlError::Failed(
                "the run has no steering hub (yet): nothing to steer".into(),
            ));
        };
        let actor = page_actor(&self.actor_id);
        let kind = action.command().kind();
        let request = SteeringRequest::new(
            actor.clone(),
            SteeringTarget::ParentRun { run_id: run },
            action.command(),
        );
        match hub.steer(request) {
            Ok(ack) => Ok(format!("{} (correlation id {})", action.done(), ack.correlation_id)),
            Err(rejected) => Err(classify(
                !hub.allowed(&actor, kind),
                &rejected.policy_id,
                rejected.reason,
            )),
        }
    }
}

/// A rejection as an error: refused by the policy (403) or not possible,
/// e.g. the run finished (409).
fn classify(refused_by_policy: bool, policy: &str, reason: String) -> ControlError {
    if refused_by_policy {
        ControlError::Denied(format!("policy {policy:?}: {reason}"))
    } else {
        ControlError::Failed(reason)
    }
}

/// Steers a run of another process over its control socket (see the
/// module docs): one JSON-lines round trip per request, blocking (the
/// server calls handlers off its async workers).
#[derive(Clone, Debug)]
pub struct SocketControl {
    path: PathBuf,
    actor_id: String,
}

impl SocketControl {
    /// A handler for the control socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            path: path.into(),
            actor_id: "web-debugger".into(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn round_trip(&self, request: &ControlRequest) -> Result<ControlResponse, String> {
        let fail = |e: &dyn std::fmt::Display| format!("control socket {}: {e}", self.path.display());
        let mut stream = std::os::unix::net::UnixStream::connect(&self.path).map_err(|e| {
            format!(
                "cannot reach the run's control socket {} (has the run ended?): {e}",
                self.path.display()
            )
        })?;
        let timeout = Some(Duration::from_secs(10));
        stream.set_read_timeout(timeout).map_err(|e| fail(&e))?;
        stream.set_write_timeout(timeout).map_err(|e| fail(&e))?;
        let mut line = serde_json::to_string(request).map_err(|e| fail(&e))?;
        line.push('\n');
        stream.write_all(line.as_bytes()).map_err(|e| fail(&e))?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).map_err(|e| fail(&e))?;
        serde_json::from_str(&answer).map_err(|e| fail(&e))
    }
}

impl ControlHandler for SocketControl {
    fn control(&self, run: RunId, action: ControlAction) -> Result<String, ControlError> {
        let request = ControlRequest::Steer {
            target: SteeringTarget::ParentRun { run_id: run },
            command: action.command(),
            human: Some(self.actor_id.clone()),
        };
        match self.round_trip(&request).map_err(ControlError::Failed)? {
            ControlResponse::Accepted { ack } => {
                Ok(format!("{} (correlation id {})", action.done(), ack.correlation_id))
            }
            ControlResponse::Rejected { policy_id, reason, .. } => {
                // The socket does not say which check refused it; the
                // policy's allowlist check names itself.
                let by_policy = reason.contains("does not allow");
                Err(classify(by_policy, &policy_id, reason))
            }
            ControlResponse::Error { message } => Err(ControlError::Failed(message)),
            ControlResponse::Status { .. } => {
                Err(ControlError::Failed("unexpected answer from the control socket".into()))
            }
        }
    }
}
