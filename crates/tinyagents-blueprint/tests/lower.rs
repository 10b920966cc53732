//! Lowering: plans compiled into `tinyagents-graph` state graphs behave
//! like the interim executor (same result, same agents called, same usage),
//! with graph-native concurrency, fan-out, routing, subgraphs and rationale
//! events.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tinyagents_blueprint::{
    CompileOptions, ExecError, ExecOutput, Inputs, Plan, Toolbox, compile, execute, lower, run_lowered,
};
use tinyagents_core::{CollectingSink, EventKind, RunConfig, RunContext, SharedModel, Usage, tool_fn};
use tinyagents_providers::ScriptedModel;

fn toolbox(model: Arc<impl tinyagents_core::Model>) -> Toolbox {
    let shared: SharedModel = model;
    let web = tool_fn("web_search", "Searches the web", |_: serde_json::Value| async {
        Ok::<_, std::convert::Infallible>("no results")
    });
    Toolbox::new().default_model(shared).tool(web)
}

/// The agent's name without the executor's `#i` item suffix.
fn base(agent: &str) -> &str {
    agent.split('#').next().unwrap_or(agent)
}

/// A deterministic answer of every example's agents: a function of the
/// agent and its task only, so both runners see the same answers whatever
/// the order of the calls.
fn answer(agent: &str, task: &str) -> String {
    match base(agent) {
        "planner" if task.contains("Part: ") => {
            let part = task.rsplit("Part: ").next().unwrap_or_default().to_string();
            serde_json::json!([format!("{part}.s1"), format!("{part}.s2")]).to_string()
        }
        "planner" => r#"["q1", "q2", "q3"]"#.into(),
        "splitter" => r#"["p1", "p2"]"#.into(),
        "writer" if task.starts_with("Write a draft") => if task.contains("fix it") {
            "draft v2"
        } else {
            "draft v1"
        }
        .into(),
        "review" if task.contains("draft v2") => r#"{"verdict": "approve", "comments": "good"}"#.into(),
        "review" => r#"{"verdict": "revise", "comments": "fix it"}"#.into(),
        other => format!("{other}({task})"),
    }
}

fn answering() -> Arc<ScriptedModel> {
    by_agent(answer)
}

/// Calls as (agent without suffix, task), sorted.
fn calls(model: &ScriptedModel) -> Vec<(String, String)> {
    let mut c: Vec<(String, String)> = model
        .requests()
        .iter()
        .map(|r| (base(&r.agent).to_string(), task_of(r)))
        .collect();
    c.sort();
    c
}

struct Side {
    out: ExecOutput,
    calls: Vec<(String, String)>,
    root_usage: Usage,
}

async fn both(plan: &Plan, given: &Inputs) -> (Side, Side) {
    let m1 = answering();
    let r1 = RunContext::root("root", &RunConfig::new());
    let o1 = execute(plan, &r1, &toolbox(m1.clone()), given).await.unwrap();
    let m2 = answering();
    let r2 = RunContext::root("root", &RunConfig::new());
    let o2 = run_lowered(plan, &r2, &toolbox(m2.clone()), given).await.unwrap();
    (
        Side {
            out: o1,
            calls: calls(&m1),
            root_usage: r1.total_usage(),
        },
        Side {
            out: o2,
            calls: calls(&m2),
            root_usage: r2.total_usage(),
        },
    )
}

fn example_inputs(name: &str) -> Inputs {
    match name {
        "research_team" => inputs(&[("topic", "Why is the sky blue?".into())]),
        "review_loop" => inputs(&[("brief", "a haiku".into())]),
        _ => inputs(&[("task", "build it".into())]),
    }
}

#[tokio::test]
async fn every_example_gives_the_interim_executors_result_calls_and_usage() {
    for name in EXAMPLES {
        let plan = example(name);
        let (ex, lo) = both(&plan, &example_inputs(name)).await;
        assert_eq!(lo.out.value, ex.out.value, "{name}: result");
        assert_eq!(lo.calls, ex.calls, "{name}: agents called and their tasks");
        assert!(!lo.calls.is_empty(), "{name}");
        assert_eq!(lo.out.usage, ex.out.usage, "{name}: usage of the runs started");
        assert_eq!(lo.root_usage, ex.root_usage, "{name}: usage rolled up to the root");
        assert_eq!(lo.out.values, ex.out.values, "{name}: every node's value");
        assert_eq!(lo.out.skipped, ex.out.skipped, "{name}: skipped nodes");
        assert_eq!(
            lo.out.loop_iterations, ex.out.loop_iterations,
            "{name}: loop iterations"
        );
    }
}

#[tokio::test]
async fn dead_agents_get_no_model_request() {
    let plan = plan_of(
        r#"blueprint t { output writer
           agent researcher { task "facts" }
           agent idle { task "nobody reads me" }
           agent writer { task "write from {{deps.researcher}}" } }"#,
    );
    assert_eq!(plan.pruned[0].name, "idle");
    let model = answering();
    let root = RunContext::root("root", &RunConfig::new());
    let out = run_lowered(&plan, &root, &toolbox(model.clone()), &Inputs::new())
        .await
        .unwrap();
    assert_eq!(out.text, "writer(write from researcher(facts))");
    let called = agents_called(&model);
    assert_eq!(called, vec!["researcher", "writer"]);
    assert!(!called.iter().any(|a| a == "idle"));
}

#[tokio::test(start_paused = true)]
async fn independent_agents_overlap_on_both_runners() {
    let plan = plan_of(
        r#"blueprint t { output c
           agent a { task "a" } agent b { task "b" } agent c { task "{{deps.a}} {{deps.b}}" } }"#,
    );
    assert_eq!(plan.stages, vec![vec![0, 1], vec![2]]);
    for runner in Runner::BOTH {
        let gauge = Gauge::new(by_agent(|agent, _| agent.to_string()), Duration::from_millis(50));
        let root = RunContext::root("root", &RunConfig::new());
        let out = runner
            .run(&plan, &root, &toolbox(gauge.clone()), &Inputs::new())
            .await
            .unwrap();
        assert_eq!(out.text, "c", "{runner:?}");
        assert_eq!(gauge.max(), 2, "{runner:?}: a and b were in flight at the same time");
    }
}

#[tokio::test(start_paused = true)]
async fn a_map_fans_out_under_its_cap_and_keeps_item_order_on_both_runners() {
    let src = |cap: u32| {
        format!(
            r#"blueprint t {{ input xs: list output m
               map m over inputs.xs {{ concurrency {cap} agent w {{ task "{{{{item}}}}" }} }} }}"#
        )
    };
    for runner in Runner::BOTH {
        for (cap, expect) in [(1, 1), (2, 2), (3, 3), (10, 4)] {
            let plan = plan_of(&src(cap));
            let gauge = Gauge::new(by_agent(|_, task| task.to_uppercase()), Duration::from_millis(20));
            let root = RunContext::root("root", &RunConfig::new());
            let xs = serde_json::json!(["a", "b", "c", "d"]);
            let out = runner
                .run(&plan, &root, &toolbox(gauge.clone()), &inputs(&[("xs", xs)]))
                .await
                .unwrap();
            assert_eq!(
                out.value,
                serde_json::json!(["A", "B", "C", "D"]),
                "{runner:?}: results keep item order"
            );
            assert_eq!(gauge.max(), expect, "{runner:?}: cap {cap}");
            assert_eq!(gauge.inner.request_count(), 4, "{runner:?}");
        }
    }
}

#[tokio::test]
async fn an_empty_map_yields_an_empty_list_without_any_call() {
    let plan = plan_of(
        r#"blueprint t { input xs: list output r
           map m over inputs.xs { agent w { task "{{item}}" } }
           reduce r from m { agent sum { task "sum {{items}}" } } }"#,
    );
    let model = answering();
    let root = RunContext::root("root", &RunConfig::new());
    let out = run_lowered(
        &plan,
        &root,
        &toolbox(model.clone()),
        &inputs(&[("xs", serde_json::json!([]))]),
    )
    .await
    .unwrap();
    assert_eq!(out.text, "sum(sum [])");
    assert_eq!(agents_called(&model), vec!["sum"]);
}

#[tokio::test]
async fn the_router_picks_the_branch_and_loops_back_within_its_bound() {
    let plan = example("review_loop");
    let model = answering();
    let root = RunContext::root("root", &RunConfig::new());
    let out = run_lowered(&plan, &root, &toolbox(model.clone()), &example_inputs("review_loop"))
        .await
        .unwrap();
    assert_eq!(
        agents_called(&model),
        vec!["writer", "review", "writer", "review", "publish"]
    );
    assert_eq!(out.loop_iterations, 1);
    assert_eq!(out.text, "publish(Format this draft for publication: draft v2)");

    // Never approved: the bound stops the loop and the output never runs.
    let model = by_agent(|agent, _| match agent {
        "writer" => "draft".into(),
        "review" => r#"{"verdict": "revise", "comments": "again"}"#.into(),
        other => panic!("unexpected agent {other}"),
    });
    let root = RunContext::root("root", &RunConfig::new());
    let err = run_lowered(&plan, &root, &toolbox(model.clone()), &example_inputs("review_loop"))
        .await
        .unwrap_err();
    assert_eq!(agents_called(&model).iter().filter(|a| *a == "writer").count(), 4);
    match err {
        ExecError::NoOutput { node, partial } => {
            assert_eq!(node, "publish");
            assert_eq!(partial["writer"], "draft");
        }
        other => panic!("expected NoOutput, got {other:?}"),
    }
}

fn rationales(sink: &CollectingSink) -> Vec<(String, String, String, String)> {
    sink.events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::NodeRationale {
                node_id,
                namespace,
                kind,
                rationale,
                ..
            } => Some((
                node_id.as_str().to_string(),
                namespace.to_string(),
                kind.to_string(),
                rationale.to_string(),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn every_compiled_node_with_a_rationale_shows_it_in_the_events() {
    let plan = example("research_team");
    let sink = CollectingSink::new();
    let root = RunContext::root("root", &RunConfig::new().sink(sink.clone()));
    run_lowered(&plan, &root, &toolbox(answering()), &example_inputs("research_team"))
        .await
        .unwrap();
    let seen = rationales(&sink);
    for node in &plan.nodes {
        let want = node
            .rationale
            .clone()
            .or_else(|| node.agent().and_then(|a| a.rationale.clone()))
            .unwrap();
        assert!(
            seen.iter()
                .any(|(n, _, k, r)| *n == node.name && k == node.kind_name() && *r == want),
            "{}: {seen:?}",
            node.name
        );
    }
    // The events come from the graph run, one level below the root.
    assert!(
        sink.events()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::NodeRationale { .. }))
            .all(|e| e.depth == 1)
    );
}

#[tokio::test]
async fn a_nested_blueprint_runs_as_a_subgraph_with_its_namespace() {
    let plan = example("recursive_decomposition");
    let sink = CollectingSink::new();
    let root = RunContext::root("root", &RunConfig::new().sink(sink.clone()));
    let model = answering();
    let out = run_lowered(
        &plan,
        &root,
        &toolbox(model.clone()),
        &example_inputs("recursive_decomposition"),
    )
    .await
    .unwrap();
    for step in ["p1.s1", "p1.s2", "p2.s1", "p2.s2"] {
        assert!(out.text.contains(&format!("Solve this step: {step}")), "{}", out.text);
    }
    let seen = rationales(&sink);
    let ns_of = |node: &str| -> Vec<String> {
        seen.iter()
            .filter(|(n, ..)| n == node)
            .map(|(_, ns, ..)| ns.clone())
            .collect()
    };
    assert_eq!(
        ns_of("splitter"),
        vec![String::new()],
        "the root graph has no namespace"
    );
    let planners = ns_of("planner");
    assert_eq!(planners.len(), 2, "one per part: {planners:?}");
    assert!(planners.iter().all(|ns| ns.starts_with("parts:") && !ns.contains('|')));
    let solvers = ns_of("solver");
    assert_eq!(solvers.len(), 4, "{solvers:?}");
    assert!(
        solvers
            .iter()
            .all(|ns| ns.starts_with("parts:") && ns.split('|').nth(1).is_some_and(|s| s.starts_with("steps:"))),
        "{solvers:?}"
    );
    // Each level runs one level deeper in the run tree: the root graph run
    // (1), the splitter (2), a part's graph (2) and its planner (3), a
    // step's graph (3) and its solver (4).
    let depth_of = |agent: &str| {
        let mut d: Vec<u32> = model
            .requests()
            .iter()
            .filter(|r| &*r.agent == agent)
            .map(|r| r.depth)
            .collect();
        d.dedup();
        d
    };
    assert_eq!(depth_of("splitter"), vec![2]);
    assert_eq!(depth_of("planner"), vec![3]);
    assert_eq!(depth_of("solver"), vec![4]);
    assert_eq!(root.total_usage().requests, model.request_count());
}

#[tokio::test]
async fn a_missing_input_fails_before_any_model_call() {
    let plan = example("research_team");
    let model = answering();
    let root = RunContext::root("root", &RunConfig::new());
    let err = run_lowered(&plan, &root, &toolbox(model.clone()), &Inputs::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExecError::MissingInput { ref name } if name == "topic"),
        "{err:?}"
    );
    assert_eq!(model.request_count(), 0);
}

#[tokio::test]
async fn a_failing_agent_reports_its_node_and_its_run_path() {
    let plan = plan_of(r#"blueprint t { output b agent a { task "a" } agent b { task "{{deps.a}}" } }"#);
    let model = Arc::new(ScriptedModel::from_fn(|req| match &*req.agent {
        "a" => Err(tinyagents_core::ModelError::Server {
            status: 503,
            message: "boom".into(),
        }),
        _ => Ok(tinyagents_core::ModelResponse::text("never")),
    }));
    let root = RunContext::root("root", &RunConfig::new());
    let err = run_lowered(&plan, &root, &toolbox(model.clone()), &Inputs::new())
        .await
        .unwrap_err();
    match &err {
        ExecError::Run { node, source, .. } => {
            assert_eq!(node, "a");
            assert!(source.to_string().contains("boom"), "{source}");
        }
        other => panic!("expected a run error, got {other:?}"),
    }
    assert_eq!(agents_called(&model), vec!["a"], "b never ran");
}

#[tokio::test]
async fn a_recursive_blueprint_stops_at_its_max_depth_like_the_executor() {
    let plan = plan_of(
        r#"blueprint t { input q output r
           subgraph r uses deep { with q = "{{inputs.q}}" }
           blueprint deep { recursion { max_depth 3 } input q
             agent a { task "{{inputs.q}}" }
             subgraph again uses deep { with q = "{{deps.a}}" } } }"#,
    );
    let given = inputs(&[("q", "go".into())]);
    let m1 = answering();
    let e1 = execute(
        &plan,
        &RunContext::root("root", &RunConfig::new()),
        &toolbox(m1.clone()),
        &given,
    )
    .await
    .unwrap_err();
    let m2 = answering();
    let e2 = run_lowered(
        &plan,
        &RunContext::root("root", &RunConfig::new()),
        &toolbox(m2.clone()),
        &given,
    )
    .await
    .unwrap_err();
    assert!(e1.to_string().contains("max_depth of 3"), "{e1}");
    assert!(e2.to_string().contains("max_depth of 3"), "{e2}");
    assert_eq!(calls(&m2), calls(&m1), "the same levels ran");
    assert_eq!(m2.request_count(), 3, "one agent per level, three levels");
}

#[tokio::test]
async fn an_agents_budget_becomes_its_node_policy() {
    let plan = plan_of(
        r#"blueprint t { output b
           agent a { task "a" budget { tokens 5 } }
           agent b { task "{{deps.a}}" } }"#,
    );
    let model = answering(); // every call reports 15 tokens
    let root = RunContext::root("root", &RunConfig::new());
    let err = run_lowered(&plan, &root, &toolbox(model.clone()), &Inputs::new())
        .await
        .unwrap_err();
    match &err {
        ExecError::Run { node, source, .. } => {
            assert_eq!(node, "a");
            assert!(source.to_string().contains("token"), "{source}");
        }
        other => panic!("expected the budget to stop `a`, got {other:?}"),
    }
    let ex = execute(
        &plan,
        &RunContext::root("root", &RunConfig::new()),
        &toolbox(answering()),
        &Inputs::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(ex, ExecError::Run { ref node, .. } if node == "a"), "{ex:?}");
    assert_eq!(agents_called(&model), vec!["a"]);
}

#[test]
fn lowering_names_an_agent_the_factory_cannot_build() {
    let plan = plan_of(r#"blueprint t { output a agent a { task "x" } }"#);
    let report = lower(&plan, &Toolbox::new(), 1).unwrap_err();
    assert!(report.render_plain().contains("node `a`"), "{}", report.render_plain());
}

#[test]
fn the_lowered_graph_has_a_node_per_plan_node_and_the_scheduler() {
    let plan = example("research_team");
    let graph = lower(&plan, &toolbox(answering()), 1).unwrap();
    let names = graph.node_names();
    for n in &plan.nodes {
        assert!(names.contains(&n.name.as_str()), "{names:?}");
    }
    assert!(names.contains(&"__plan"));
    assert!(graph.channel_names().contains(&"__items.research"));
}

#[tokio::test]
async fn spawn_agents_inside_a_lowered_graph_splices_the_fragment_as_a_subgraph_of_the_task() {
    use tinyagents_blueprint::spawn::{SpawnRegistry, SpawnStatus, Spawning};
    use tinyagents_core::{Message, ModelResponse};

    let fragment = serde_json::json!({"blueprint": {"name": "team", "inputs": [{"name": "q"}], "output": "writer", "nodes": [
        {"kind": "agent", "name": "researcher", "task": "Research {{inputs.q}}", "rationale": "needs facts"},
        {"kind": "agent", "name": "writer", "task": "Write up: {{deps.researcher}}", "rationale": "one voice"}
    ]}, "inputs": {"q": "tides"}});
    let model = Arc::new(ScriptedModel::from_fn(move |req| {
        let r = match (&*req.agent, req.messages.last()) {
            ("boss", Some(Message::Tool { content, .. })) => ModelResponse::text(format!("final: {content}")),
            ("boss", _) => ScriptedModel::call("spawn_agents", fragment.clone()),
            (other, _) => ModelResponse::text(format!("{other}({})", task_of(req))),
        };
        Ok(r.with_usage(Usage::call(10, 5)))
    }));
    let plan = plan_of(r#"blueprint t { output boss agent boss { task "explain tides" tools [spawn_agents] } }"#);
    let shared: SharedModel = model.clone();
    let spawning = Spawning::new(
        Arc::new(Toolbox::new().default_model(shared)),
        SpawnRegistry::new(),
        CompileOptions::new().default_model("m"),
    );
    let sink = CollectingSink::new();
    let root = RunContext::root("root", &RunConfig::new().sink(sink.clone()));
    let out = run_lowered(&plan, &root, &spawning, &Inputs::new()).await.unwrap();
    assert_eq!(out.text, "final: writer(Write up: researcher(Research tides))");

    // The fragment ran as a graph under the boss's task: its namespace
    // continues the task's.
    let seen = rationales(&sink);
    for node in ["researcher", "writer"] {
        let ns: Vec<&String> = seen.iter().filter(|(n, ..)| n == node).map(|(_, ns, ..)| ns).collect();
        assert_eq!(ns.len(), 1, "{node}: {seen:?}");
        assert!(ns[0].starts_with("boss:") && ns[0].contains("|tool:"), "{node}: {ns:?}");
    }
    // Root (0) → graph (1) → boss (2) → spawned graph (3) → workers (4).
    assert!(
        model
            .requests()
            .iter()
            .filter(|r| &*r.agent != "boss")
            .all(|r| r.depth == 4)
    );
    assert_eq!(root.total_usage().requests, 4, "boss twice, two workers: all rolled up");
    // The live DAG has the spliced nodes, finished.
    let nodes = spawning.registry().snapshot();
    for name in ["researcher", "writer"] {
        let n = nodes.iter().find(|n| &*n.name == name).unwrap();
        assert_eq!(n.status, SpawnStatus::Done, "{name}");
    }
}

mod random_dags {
    use super::*;
    use proptest::prelude::*;

    use crate::common::dag as dag_strategy;

    proptest! {
        #![proptest_config(crate::common::proptest_config(48))]

        #[test]
        fn the_lowered_graph_matches_the_interim_executor(bp in dag_strategy::dag()) {
            let plan = compile(&bp, &CompileOptions::new()).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (ex, lo) = rt.block_on(both(&plan, &Inputs::new()));
            prop_assert_eq!(&lo.out.value, &ex.out.value);
            prop_assert_eq!(&lo.calls, &ex.calls);
            prop_assert_eq!(lo.out.usage, ex.out.usage);
            prop_assert_eq!(lo.root_usage, ex.root_usage);
        }
    }
}
