//! Runtime spawning: the `spawn_agents` tool and the live registry.

pub mod registry;

pub use registry::{RegId, RegNode, SpawnRegistry, SpawnStatus};
