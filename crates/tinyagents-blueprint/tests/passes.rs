//! The compiler pipeline on whole blueprints: plans, stages, pruning,
//! estimates and renderings.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::examples_dir;
use tinyagents_blueprint::plan::{EdgeKind, PruneReason};
use tinyagents_blueprint::{CapabilityGrant, CompileOptions, Plan, PlanNodeKind, check_file, compile, parse_text};
use tinyagents_core::{Cost, Price, PriceTable};

fn compile_src(src: &str, opts: &CompileOptions) -> Plan {
    let bp = parse_text("t.ta", src).unwrap().blueprint;
    compile(&bp, opts).unwrap_or_else(|d| panic!("{d:?}"))
}

#[test]
fn every_example_checks_from_both_files() {
    for name in common::EXAMPLES {
        for ext in ["ta", "json"] {
            let checked = check_file(&examples_dir().join(format!("{name}.{ext}")), &CompileOptions::new())
                .unwrap_or_else(|r| panic!("{name}.{ext}:\n{}", r.render()));
            assert!(!checked.warnings.has_errors());
            assert!(checked.plan.agent_count() > 0);
        }
    }
}

#[test]
fn the_research_team_plan_has_three_stages_and_an_estimate() {
    let prices = PriceTable::new()
        .with("small", Price::per_mtok(1.0, 4.0))
        .with("large", Price::per_mtok(10.0, 40.0));
    let checked = check_file(
        &examples_dir().join("research_team.ta"),
        &CompileOptions::new().prices(prices),
    )
    .unwrap();
    let plan = &checked.plan;
    assert_eq!(plan.stages.len(), 3);
    let research = plan.node("research").unwrap();
    let PlanNodeKind::Map(m) = &research.kind else { panic!() };
    assert_eq!(m.expected_items, 3, "from the planner's maxItems");
    // planner: 400 + 100 tokens; 3 researchers × 2 turns × (1500 + 400); writer: 1000 + 300 (defaults).
    let tokens = 500 + 3 * 2 * 1_900 + 1_300;
    assert_eq!(plan.estimate.total_tokens(), tokens);
    let cost = Cost(400 * 1_000_000 + 100 * 4_000_000)
        + Cost(3 * 2 * (1_500 * 1_000_000 + 400 * 4_000_000))
        + Cost(1_000 * 10_000_000 + 300 * 40_000_000);
    assert_eq!(plan.estimate.cost, cost);
    assert_eq!(plan.estimate.agents, 1 + 3 + 1);
    assert_eq!(
        research.rationale.as_deref(),
        Some("One researcher per sub-question, at most three at a time.")
    );
}

#[test]
fn the_review_loop_plan_has_a_bounded_loop_and_prunes_the_impossible_branch() {
    let checked = check_file(&examples_dir().join("review_loop.ta"), &CompileOptions::new()).unwrap();
    let plan = &checked.plan;
    assert_eq!(plan.pruned.len(), 1);
    assert_eq!(
        (plan.pruned[0].name.as_str(), plan.pruned[0].reason),
        ("archive", PruneReason::Unreachable)
    );
    assert_eq!(plan.loops.len(), 1);
    let l = &plan.loops[0];
    assert_eq!(
        (plan.nodes[l.router].name.as_str(), plan.nodes[l.entry].name.as_str()),
        ("gate", "writer")
    );
    assert_eq!(l.max_iterations, 3);
    assert!(plan.edges.iter().any(|e| e.kind == EdgeKind::Back && e.to == l.entry));
    // The loop body is estimated at max_iterations runs.
    assert_eq!(plan.node("writer").unwrap().estimate.agents, 3);
    let codes: Vec<&str> = checked.warnings.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, vec!["blueprint::unreachable-route", "blueprint::pruned"]);
    assert!(
        checked.warnings.render().contains("when == \"reject\" -> archive"),
        "{}",
        checked.warnings.render()
    );
}

#[test]
fn nested_blueprints_compile_into_the_library_and_their_cost_rolls_up() {
    let checked = check_file(
        &examples_dir().join("recursive_decomposition.ta"),
        &CompileOptions::new(),
    )
    .unwrap();
    let plan = &checked.plan;
    assert_eq!(
        plan.subplans.keys().collect::<Vec<_>>(),
        vec!["solve_part", "solve_step"]
    );
    // splitter + summarizer + 2 parts × (planner + merger + 2 steps × solver)
    assert_eq!(plan.estimate.agents, 2 + 2 * (2 + 2));
    assert_eq!(plan.agent_count(), 5);
}

#[test]
fn a_recursive_blueprint_is_estimated_down_to_its_max_depth() {
    let src = r#"blueprint t { model "m" recursion { max_depth 3 } input q
        agent a { task "{{inputs.q}}" }
        subgraph again uses t { with q = "{{deps.a}}" } }"#;
    let plan = compile_src(src, &CompileOptions::new());
    assert_eq!(plan.estimate.agents, 3, "one agent per level, three levels");
}

#[test]
fn the_mermaid_and_dot_renderings_show_each_parallel_stage() {
    let plan = compile_src(
        r#"blueprint t { model "m" output d
           agent a { task "x" rationale "because" } agent b { task "y" }
           agent d { task "{{deps.a}} {{deps.b}}" } }"#,
        &CompileOptions::new(),
    );
    let mermaid = plan.to_mermaid();
    assert!(mermaid.starts_with("flowchart TD"));
    assert!(
        mermaid.contains("subgraph stage0[\"stage 0\"]\n    n0[") && mermaid.contains("\n    n1["),
        "{mermaid}"
    );
    assert!(
        mermaid.contains("subgraph stage1") && mermaid.contains("n0 --> n2"),
        "{mermaid}"
    );
    assert!(mermaid.contains("why: because"));
    let dot = plan.to_dot();
    assert!(
        dot.contains("subgraph cluster_stage0") && dot.contains("n1 -> n2;"),
        "{dot}"
    );
}

#[test]
fn the_grant_applies_to_the_whole_tree() {
    let path = examples_dir().join("research_team.json");
    let err = check_file(&path, &CompileOptions::new().grant(CapabilityGrant::none())).unwrap_err();
    assert_eq!(err.error_count(), 1);
    assert!(err.diagnostics[0].message.contains("`web_search`"));
    assert_eq!(err.diagnostics[0].path.to_string(), "$.nodes[1].each.tools[0]");
    let ok = check_file(
        &path,
        &CompileOptions::new().grant(CapabilityGrant::tools(["web_search"])),
    );
    assert!(ok.is_ok());
}

#[test]
fn an_agent_without_any_model_is_reported_with_a_fix() {
    let bp = parse_text("t.ta", r#"blueprint t { agent a { task "x" } }"#)
        .unwrap()
        .blueprint;
    let err = compile(&bp, &CompileOptions::new()).unwrap_err();
    assert_eq!(err[0].code, "blueprint::no-model");
    assert!(compile(&bp, &CompileOptions::new().default_model("m")).is_ok());
}

#[test]
fn budgets_map_onto_run_limits_relative_to_the_depth() {
    let plan = compile_src(
        r#"blueprint t { model "m" agent a { task "x"
           budget { tokens 500 cost_usd 0.25 turns 3 depth 2 descendants 7 timeout_ms 1500 } } }"#,
        &CompileOptions::new(),
    );
    let l = plan.nodes[0].agent().unwrap().limits(4);
    assert_eq!(l.max_tokens, Some(500));
    assert_eq!(l.max_cost, Some(Cost::from_usd(0.25)));
    assert_eq!(l.max_turns, Some(3));
    assert_eq!(l.max_depth, 6);
    assert_eq!(l.max_descendants, Some(7));
    assert_eq!(l.timeout, Some(std::time::Duration::from_millis(1500)));
}

mod random_dags {
    use proptest::prelude::*;
    use tinyagents_blueprint::{CompileOptions, compile};

    use crate::common::dag::dag;

    proptest! {
        #![proptest_config(crate::common::proptest_config(256))]
        #[test]
        fn stages_partition_the_live_nodes_in_dependency_order(bp in dag()) {
            let plan = compile(&bp, &CompileOptions::new()).unwrap();
            prop_assert_eq!(plan.nodes.len() + plan.pruned.len(), bp.nodes.len());
            let mut seen: Vec<usize> = plan.stages.iter().flatten().copied().collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..plan.nodes.len()).collect::<Vec<_>>());
            for n in &plan.nodes {
                for &d in &n.deps {
                    prop_assert!(plan.nodes[d].stage < n.stage, "{} before {}", plan.nodes[d].name, n.name);
                }
                // Nodes share a stage only when neither depends on the other.
                if n.stage > 0 {
                    prop_assert!(n.deps.iter().any(|&d| plan.nodes[d].stage == n.stage - 1), "stage is the level");
                }
            }
            // A node is live exactly when the output (or, without one, a sink) needs it.
            if let Some(out) = &bp.output {
                prop_assert!(plan.node(out).is_some());
                prop_assert_eq!(plan.output.len(), 1);
            }
        }
    }
}
