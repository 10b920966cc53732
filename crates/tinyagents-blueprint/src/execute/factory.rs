//! [`AgentFactory`]: from an agent description to a runnable `Agent`.

use std::collections::HashMap;
use std::sync::Arc;

use tinyagents_core::{RunLimits, SharedModel, SharedTool};
use tinyagents_harness::Agent;

use crate::plan::{AgentPlan, Plan};

/// What the executor asks a factory to build.
#[derive(Clone)]
pub struct BuildRequest<'a> {
    /// The agent description, compiled.
    pub agent: &'a AgentPlan,
    /// The run name to give it (its name, or `name#i` for a map item).
    pub name: &'a str,
    /// The limits it must ask for (its budget, at the depth it runs at).
    pub limits: RunLimits,
    /// Tools made for this agent by the runtime (e.g. `spawn_agents`, whose
    /// grant is the agent's own tools); they take precedence over the
    /// factory's tools of the same name.
    pub extra_tools: &'a [SharedTool],
}

impl std::fmt::Debug for BuildRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildRequest")
            .field("agent", &self.agent.name)
            .field("name", &self.name)
            .field("limits", &self.limits)
            .field(
                "extra_tools",
                &self
                    .extra_tools
                    .iter()
                    .map(|t| t.spec().name.clone())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why a factory could not build an agent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FactoryError {
    /// No model with that id.
    #[error("no model `{model}` is available (agent `{agent}`)")]
    UnknownModel {
        /// The agent.
        agent: String,
        /// The model id.
        model: String,
    },
    /// No tool with that name.
    #[error("no tool `{tool}` is available (agent `{agent}`)")]
    UnknownTool {
        /// The agent.
        agent: String,
        /// The tool.
        tool: String,
    },
}

/// Maps agent descriptions to agents: picks the model by id and hands over
/// the requested tools (already checked against the grant).
pub trait AgentFactory: Send + Sync {
    /// Builds the agent for `req`.
    fn build(&self, req: &BuildRequest<'_>) -> Result<Agent, FactoryError>;

    /// A compiled plan registered under `name`, for `subgraph` nodes that
    /// use a named graph (declared with `CompileOptions::graph`). None by
    /// default.
    fn named_plan(&self, name: &str) -> Option<Arc<Plan>> {
        let _ = name;
        None
    }
}

#[derive(Clone)]
struct ToolboxInner {
    models: HashMap<String, SharedModel>,
    default_model: Option<SharedModel>,
    tools: HashMap<String, SharedTool>,
    graphs: HashMap<String, Arc<Plan>>,
}

/// The standard factory: models by id, tools by name.
///
/// Cheap to clone. Tools that depend on the agent being built (like
/// `spawn_agents`) come in the request's `extra_tools`.
#[derive(Clone)]
pub struct Toolbox(Arc<ToolboxInner>);

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut models: Vec<&String> = self.0.models.keys().collect();
        models.sort();
        let mut tools: Vec<&String> = self.0.tools.keys().collect();
        tools.sort();
        f.debug_struct("Toolbox")
            .field("models", &models)
            .field("tools", &tools)
            .finish_non_exhaustive()
    }
}

impl Default for Toolbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Toolbox {
    /// An empty toolbox.
    pub fn new() -> Self {
        Self(Arc::new(ToolboxInner {
            models: HashMap::new(),
            default_model: None,
            tools: HashMap::new(),
            graphs: HashMap::new(),
        }))
    }

    fn inner_mut(&mut self) -> &mut ToolboxInner {
        Arc::make_mut(&mut self.0)
    }

    /// Registers a model under `id`.
    #[must_use]
    pub fn model(mut self, id: impl Into<String>, model: SharedModel) -> Self {
        self.inner_mut().models.insert(id.into(), model);
        self
    }

    /// The model for ids that are not registered.
    #[must_use]
    pub fn default_model(mut self, model: SharedModel) -> Self {
        self.inner_mut().default_model = Some(model);
        self
    }

    /// Registers a tool under its spec name.
    #[must_use]
    pub fn tool(mut self, tool: SharedTool) -> Self {
        let name = tool.spec().name.to_string();
        self.inner_mut().tools.insert(name, tool);
        self
    }

    /// Registers a compiled plan as the graph named `name`.
    #[must_use]
    pub fn graph(mut self, name: impl Into<String>, plan: Arc<Plan>) -> Self {
        self.inner_mut().graphs.insert(name.into(), plan);
        self
    }

    /// The registered tool names.
    pub fn tool_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.tools.keys().cloned().collect();
        v.sort();
        v
    }
}

impl AgentFactory for Toolbox {
    fn named_plan(&self, name: &str) -> Option<Arc<Plan>> {
        self.0.graphs.get(name).cloned()
    }

    fn build(&self, req: &BuildRequest<'_>) -> Result<Agent, FactoryError> {
        let a = req.agent;
        let model = self
            .0
            .models
            .get(&a.model)
            .or(self.0.default_model.as_ref())
            .cloned()
            .ok_or_else(|| FactoryError::UnknownModel {
                agent: a.name.clone(),
                model: a.model.clone(),
            })?;
        let mut b = Agent::builder(req.name).shared_model(model).limits(req.limits.clone());
        if let Some(role) = &a.role {
            b = b.system(role.clone());
        }
        if let Some(r) = &a.rationale {
            b = b.description(r.clone());
        }
        if let Some(schema) = a.response_format() {
            b = b.response_format(schema);
        }
        for t in &a.tools {
            let tool = req
                .extra_tools
                .iter()
                .find(|x| x.spec().name.as_ref() == t)
                .or_else(|| self.0.tools.get(t))
                .cloned()
                .ok_or_else(|| FactoryError::UnknownTool {
                    agent: a.name.clone(),
                    tool: t.clone(),
                })?;
            b = b.tool(tool);
        }
        Ok(b.build())
    }
}
