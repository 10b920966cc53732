//! Building the agents of a script, bottom-up.
//!
//! Sub-agents are built before the agents that delegate to them (the order
//! comes from [`Script::build_order`], which also rejects cycles), so each
//! agent is built once and shared by every parent that lists it: one
//! [`Agent`], one model, one queue of responses.

use std::collections::HashMap;

use tinyagents_core::RunConfig;
use tinyagents_harness::{Agent, SubAgent};

use crate::script::{Script, ScriptError};
use crate::source::ModelSource;

/// A built team: the root agent (its sub-agents hang below it as tools) and
/// the run configuration the script asks for.
#[derive(Debug, Clone)]
pub struct Team {
    /// The agent the run starts at.
    pub root: Agent,
    /// Root limits and prices from the script; the caller sets the sink.
    pub config: RunConfig,
}

impl Team {
    /// Validates `script` and builds its agents with models from `source`.
    ///
    /// ```
    /// use tinyagents_cli::script::Script;
    /// use tinyagents_cli::source::{ModelSource, ScriptOptions};
    /// use tinyagents_cli::team::Team;
    ///
    /// let script = Script::parse(Script::DEMO, "demo.json").unwrap();
    /// let team = Team::build(&script, &ModelSource::Script(ScriptOptions { delays: false })).unwrap();
    /// assert_eq!(team.root.name().as_ref(), "orchestrator");
    /// assert_eq!(team.root.tool_specs().len(), 3);
    /// ```
    pub fn build(script: &Script, source: &ModelSource) -> Result<Self, ScriptError> {
        script.validate()?;
        let mut built: HashMap<&str, Agent> = HashMap::with_capacity(script.agents.len());
        for name in script.build_order()? {
            let Some(spec) = script.agents.get(name) else { continue };
            let mut model = source.model_for(spec);
            if let Some(recorder) = crate::live_ui::recorder() {
                model = tinyagents_trace::TracedModel::shared(model, recorder);
            }
            let mut builder = Agent::builder(name).shared_model(model);
            if let Some(system) = &spec.system {
                builder = builder.system(system.as_str());
            }
            if let Some(description) = &spec.description {
                builder = builder.description(description.as_str());
            }
            if let Some(limits) = &spec.limits {
                builder = builder.limits(limits.0.clone());
            }
            for sub in &spec.subagents {
                if let Some(child) = built.get(sub.as_str()) {
                    builder = builder.subagent(SubAgent::new(child.clone()));
                }
            }
            built.insert(name, builder.build());
        }
        let root_name = script.root_name()?;
        let root = built.remove(root_name).ok_or_else(|| ScriptError::UnknownRoot {
            root: root_name.to_string(),
            known: script.agents.keys().cloned().collect(),
        })?;
        let config = RunConfig::new()
            .limits(script.run_limits())
            .prices(script.price_table());
        Ok(Self { root, config })
    }
}
