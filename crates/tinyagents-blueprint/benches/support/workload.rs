//! The workloads of the benchmarks, shared by `benches/compile.rs` and
//! `examples/cpu_cost.rs`.
#![allow(dead_code)]

use std::sync::Arc;

use tinyagents_blueprint::{AgentSpec, Blueprint, InputSpec, JoinSpec, Node, Toolbox, ValueType};
use tinyagents_core::{ModelResponse, Usage};
use tinyagents_providers::ScriptedModel;

/// `layers` × `width` agents, each reading two agents of the layer above,
/// all of the last layer joined.
pub fn layered_blueprint(layers: usize, width: usize) -> Blueprint {
    let mut nodes = Vec::with_capacity(layers * width + 1);
    for l in 0..layers {
        for w in 0..width {
            let task = if l == 0 {
                format!("Research part {w} of {{{{inputs.topic}}}}.")
            } else {
                let a = format!("a{}_{}", l - 1, w);
                let b = format!("a{}_{}", l - 1, (w + 1) % width);
                format!("Combine {{{{deps.{a}}}}} with {{{{deps.{b}}}}}.")
            };
            nodes.push(Node::Agent(AgentSpec {
                name: format!("a{l}_{w}"),
                role: Some("You are one of many workers.".into()),
                task,
                tools: vec!["web_search".into()],
                rationale: Some("benchmark".into()),
                ..AgentSpec::default()
            }));
        }
    }
    nodes.push(Node::Join(JoinSpec {
        name: "all".into(),
        of: (0..width).map(|w| format!("a{}_{w}", layers - 1)).collect(),
        rationale: None,
    }));
    Blueprint {
        name: "big".into(),
        model: Some("m".into()),
        inputs: vec![InputSpec {
            name: "topic".into(),
            ty: ValueType::Text,
            description: None,
        }],
        output: Some("all".into()),
        nodes,
        ..Blueprint::default()
    }
}

/// The `spawn_agents` arguments of a one-agent fragment.
pub const ONE_AGENT_FRAGMENT: &str = r#"{"blueprint": {"name": "f", "nodes": [{"kind": "agent", "name": "helper",
    "role": "You help.", "task": "Check {{inputs.claim}}", "tools": ["web_search"],
    "rationale": "an independent check"}], "inputs": [{"name": "claim"}]},
    "inputs": {"claim": "the sky is blue"}}"#;

/// A factory for running the layered blueprint: a scripted model that
/// answers every request at once (so a run measures the runtime, not a
/// model) and a `web_search` tool nobody calls.
pub fn instant_factory() -> Toolbox {
    let model = Arc::new(ScriptedModel::from_fn(|_| {
        Ok(ModelResponse::text("ok").with_usage(Usage::call(10, 5)))
    }));
    let web = tinyagents_core::tool_fn("web_search", "Searches the web", |_: serde_json::Value| async {
        Ok::<_, std::convert::Infallible>("no results")
    });
    Toolbox::new().default_model(model).tool(web)
}
