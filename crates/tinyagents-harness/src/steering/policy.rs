//! Who may steer what.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tinyagents_core::{ActorKind, CommandKind};

/// Per-actor allowlists of command kinds, with an id that every steering
/// event names.
///
/// One rule holds whatever the allowlists say: an [`Actor::Parent`] may only
/// steer runs in its own subtree, never unrelated runs.
///
/// [`Actor::Parent`]: tinyagents_core::Actor::Parent
#[derive(Clone, Debug)]
pub struct SteeringPolicy {
    id: Arc<str>,
    allow: HashMap<ActorKind, HashSet<CommandKind>>,
}

impl SteeringPolicy {
    /// Every actor kind may send every command kind (parents still only to
    /// their descendants).
    pub fn permissive(id: impl Into<Arc<str>>) -> Self {
        let all: HashSet<CommandKind> = CommandKind::ALL.into_iter().collect();
        let allow = [
            ActorKind::Parent,
            ActorKind::Human,
            ActorKind::Supervisor,
            ActorKind::Middleware,
            ActorKind::Test,
        ]
        .into_iter()
        .map(|k| (k, all.clone()))
        .collect();
        Self { id: id.into(), allow }
    }

    /// Nobody may send anything until allowed.
    pub fn deny_all(id: impl Into<Arc<str>>) -> Self {
        Self {
            id: id.into(),
            allow: HashMap::new(),
        }
    }

    /// Allows `actor` to send `kinds`.
    #[must_use]
    pub fn allow(mut self, actor: ActorKind, kinds: impl IntoIterator<Item = CommandKind>) -> Self {
        self.allow.entry(actor).or_default().extend(kinds);
        self
    }

    /// Forbids `actor` to send `kind`.
    #[must_use]
    pub fn forbid(mut self, actor: ActorKind, kind: CommandKind) -> Self {
        if let Some(set) = self.allow.get_mut(&actor) {
            set.remove(&kind);
        }
        self
    }

    /// The policy's id.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// Checks the allowlist; `Err` carries the reason.
    pub fn check(&self, actor: ActorKind, kind: CommandKind) -> Result<(), String> {
        if self.allow.get(&actor).is_some_and(|s| s.contains(&kind)) {
            Ok(())
        } else {
            Err(format!(
                "policy {:?} does not allow {actor:?} actors to send {kind:?}",
                &*self.id
            ))
        }
    }
}

impl Default for SteeringPolicy {
    /// Humans, supervisors, middleware and tests may send everything;
    /// parents may steer their descendants with everything.
    fn default() -> Self {
        Self::permissive("default")
    }
}
