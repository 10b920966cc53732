//! Bottom-up build order of the delegation graph, and cycle reporting.
//!
//! Kahn's algorithm over "agent depends on its sub-agents": an agent is ready
//! once all its sub-agents are. It is iterative, so a script chaining
//! thousands of agents cannot overflow the stack. Agents left over sit on or
//! behind a cycle; following left-over sub-agent links from any of them must
//! revisit a name, and the names between the two visits are the loop.

use std::collections::{BTreeMap, VecDeque};

use super::{Script, ScriptError};

pub(super) fn bottom_up(script: &Script) -> Result<Vec<&str>, ScriptError> {
    let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, agent) in &script.agents {
        waiting.insert(name, agent.subagents.len());
        for sub in &agent.subagents {
            parents.entry(sub.as_str()).or_default().push(name);
        }
    }
    let mut ready: VecDeque<&str> = waiting.iter().filter(|(_, n)| **n == 0).map(|(k, _)| *k).collect();
    let mut order = Vec::with_capacity(script.agents.len());
    while let Some(name) = ready.pop_front() {
        order.push(name);
        for parent in parents.get(name).into_iter().flatten() {
            if let Some(n) = waiting.get_mut(parent) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    ready.push_back(parent);
                }
            }
        }
    }
    if order.len() == script.agents.len() {
        return Ok(order);
    }
    Err(ScriptError::Cycle {
        cycle: find_cycle(script, &waiting),
    })
}

fn find_cycle(script: &Script, waiting: &BTreeMap<&str, usize>) -> Vec<String> {
    let left = |name: &str| waiting.get(name).is_some_and(|n| *n > 0);
    let Some(mut at) = waiting.iter().find(|(_, n)| **n > 0).map(|(k, _)| *k) else {
        return Vec::new();
    };
    let mut path: Vec<&str> = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    loop {
        if let Some(&first) = seen.get(at) {
            let mut cycle: Vec<String> = path
                .get(first..)
                .unwrap_or_default()
                .iter()
                .map(|s| s.to_string())
                .collect();
            cycle.push(at.to_string());
            return cycle;
        }
        seen.insert(at, path.len());
        path.push(at);
        let next = script
            .agents
            .get(at)
            .and_then(|a| a.subagents.iter().find(|s| left(s)).map(String::as_str));
        match next {
            Some(n) => at = n,
            None => return path.iter().map(|s| s.to_string()).collect(),
        }
    }
}
