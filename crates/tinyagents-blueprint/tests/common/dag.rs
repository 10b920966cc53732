//! A random-DAG blueprint strategy shared by the passes and execute tests.
#![allow(dead_code)]

use proptest::prelude::*;
use tinyagents_blueprint::{AgentSpec, Blueprint, Node};

/// A random DAG of agents: node `i` reads a random subset of earlier nodes.
pub fn dag() -> impl Strategy<Value = Blueprint> {
    (2usize..25)
        .prop_flat_map(|n| {
            (
                Just(n),
                prop::collection::vec(prop::collection::vec(any::<bool>(), n), n),
                prop::option::of(0..n),
            )
        })
        .prop_map(|(n, reads, output)| {
            let nodes = (0..n)
                .map(|i| {
                    let deps: String = (0..i)
                        .filter(|&j| reads[i][j])
                        .map(|j| format!(" {{{{deps.a{j}}}}}"))
                        .collect();
                    Node::Agent(AgentSpec {
                        name: format!("a{i}"),
                        task: format!("work{deps}"),
                        ..AgentSpec::default()
                    })
                })
                .collect();
            Blueprint {
                name: "dag".into(),
                model: Some("m".into()),
                output: output.map(|o| format!("a{o}")),
                nodes,
                ..Blueprint::default()
            }
        })
}
