//! The run tree the terminal draws, fed with the events of real runs (the
//! example scripts on the real harness) and with synthetic 10,000-run trees.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use tinyagents_cli::script::Script;
use tinyagents_cli::source::{ModelSource, ScriptOptions};
use tinyagents_cli::team::Team;
use tinyagents_cli::tree::render::{FrameStyle, frame};
use tinyagents_cli::tree::{Row, RunStatus, RunTree};
use tinyagents_core::{CollectingSink, Cost, Event, EventKind, LimitKind, RunId, Usage};

async fn events_of(script: &str) -> Vec<Event> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/scripts")
        .join(script);
    let text = std::fs::read_to_string(path).unwrap();
    let script = Script::load(&text, "script").unwrap();
    let team = Team::build(&script, &ModelSource::Script(ScriptOptions { delays: false })).unwrap();
    let sink = CollectingSink::new();
    let config = team.config.clone().sink(sink.clone());
    team.root
        .run_with(&config, script.input.clone().unwrap())
        .await
        .unwrap();
    let mut events = sink.events();
    events.sort_by_key(|e| e.seq);
    events
}

fn tree_of(events: &[Event]) -> RunTree {
    let mut tree = RunTree::new();
    for e in events {
        tree.apply(e);
    }
    tree
}

const STYLE: FrameStyle = FrameStyle {
    width: 100,
    height: 40,
    color: false,
    spinner: 0,
};

#[tokio::test]
async fn subtree_totals_match_what_every_run_reported_when_it_ended() {
    for script in ["demo.json", "research.json", "deep.json", "failing.json"] {
        let events = events_of(script).await;
        let tree = tree_of(&events);
        let totals = tree.subtree_totals();
        let mut completed = 0;
        for e in &events {
            if let EventKind::RunCompleted { total_usage, .. } = &e.kind {
                assert_eq!(totals[&e.run_id].0, *total_usage, "{script}: run {}", e.run_id);
                completed += 1;
            }
        }
        assert_eq!(completed, tree.len(), "{script}: every run completed");
        assert_eq!(tree.stats().running, 0);
        let calls: Usage = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::ModelCallCompleted { usage, .. } => Some(*usage),
                _ => None,
            })
            .sum();
        assert_eq!(tree.stats().usage, calls, "{script}");
        assert_eq!(
            totals[&tree.roots()[0]].0,
            calls,
            "{script}: the root row shows everything"
        );
    }
}

#[tokio::test]
async fn a_refused_sub_agent_is_a_failed_call_row_under_its_parent() {
    let tree = tree_of(&events_of("failing.json").await);
    assert_eq!(tree.len(), 2, "the detailer never ran");
    let rows = tree.rows();
    let Some(Row::FailedCall { run, index: 0 }) = rows.get(2) else {
        panic!("third row is the refused call: {rows:?}");
    };
    let planner = tree.get(*run).unwrap();
    assert_eq!(&*planner.name, "planner");
    assert_eq!(planner.status, RunStatus::Done);
    assert_eq!(planner.failed_call_count, 1);
    let call = &planner.failed_calls[0];
    assert_eq!(&*call.tool, "detailer");
    assert_eq!(call.refused, Some(LimitKind::Depth));
    assert!(
        call.reason.starts_with("sub-agent depth 2 exceeds max_depth 1"),
        "{}",
        call.reason
    );
    assert_eq!(tree.stats().failures(), 1);

    let lines = frame(&tree, 0, &STYLE, false);
    assert_eq!(lines.len(), 3);
    assert!(
        lines[1].contains("planner") && lines[1].contains("1 failed call"),
        "{lines:?}"
    );
    assert!(lines[2].trim_start().starts_with("✗ detailer"), "{lines:?}");
    assert!(lines[2].contains("refused"), "{lines:?}");
}

#[tokio::test]
async fn same_name_siblings_are_numbered_in_start_order() {
    let tree = tree_of(&events_of("research.json").await);
    let root = tree.get(tree.roots()[0]).unwrap();
    let labels: Vec<String> = root
        .children
        .iter()
        .map(|c| tree.get(*c).unwrap().label.to_string())
        .collect();
    assert_eq!(
        labels,
        [
            "researcher",
            "researcher#2",
            "researcher#3",
            "researcher#4",
            "researcher#5",
            "writer"
        ]
    );
    let lines = frame(&tree, 0, &STYLE, true);
    assert!(lines[0].starts_with("✓ lead"), "{lines:?}");
    assert!(lines[2].starts_with("  ✓ researcher#2"), "indented by depth: {lines:?}");
}

#[tokio::test]
async fn rows_are_indented_by_depth_and_cut_to_the_frame() {
    let tree = tree_of(&events_of("deep.json").await);
    let lines = frame(&tree, 0, &STYLE, false);
    let names = ["ceo", "vp", "director", "manager", "engineer"];
    for (depth, (line, name)) in lines.iter().zip(names).enumerate() {
        assert!(line.starts_with(&format!("{}✓ {name}", "  ".repeat(depth))), "{line}");
        assert!(line.contains(&format!(" d{depth} ")), "{line}");
    }
    let small = FrameStyle {
        width: 30,
        height: 4,
        ..STYLE
    };
    let lines = frame(&tree, 0, &small, true);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.iter().all(|l| l.chars().count() <= 30), "{lines:?}");
    assert!(lines[2].starts_with("… 3 more rows"), "{lines:?}");
}

fn synthetic(run: RunId, parent: Option<RunId>, depth: u32, seq: u64, kind: EventKind) -> Event {
    Event {
        root_run_id: RunId::from_u128(1),
        parent_run_id: parent,
        run_id: run,
        depth,
        seq,
        timestamp_us: seq,
        kind,
    }
}

fn spawn(tree: &mut RunTree, seq: &mut u64, parent: RunId, parent_depth: u32, child: RunId) {
    let mut next = || {
        *seq += 1;
        *seq
    };
    tree.apply(&synthetic(
        parent,
        None,
        parent_depth,
        next(),
        EventKind::SubAgentStarted {
            name: "worker".into(),
            child_run_id: child,
            child_depth: parent_depth + 1,
        },
    ));
    tree.apply(&synthetic(
        child,
        Some(parent),
        parent_depth + 1,
        next(),
        EventKind::RunStarted { name: "worker".into() },
    ));
    tree.apply(&synthetic(
        child,
        Some(parent),
        parent_depth + 1,
        next(),
        EventKind::ModelCallCompleted {
            model: "m".into(),
            turn: 0,
            usage: Usage::call(2, 1),
            cost: Cost(5),
            tool_calls: 0,
        },
    ));
}

#[test]
fn ten_thousand_runs_wide_or_deep_fold_in_and_draw_a_bounded_frame() {
    // Wide: one root with 10,000 running children.
    let root = RunId::from_u128(1);
    let mut tree = RunTree::new();
    let mut seq = 0;
    tree.apply(&synthetic(
        root,
        None,
        0,
        0,
        EventKind::RunStarted { name: "root".into() },
    ));
    for i in 0..10_000u128 {
        spawn(&mut tree, &mut seq, root, 0, RunId::from_u128(100 + i));
    }
    assert_eq!(tree.len(), 10_001);
    assert_eq!(tree.stats().running, 10_001);
    assert_eq!(tree.subtree_totals()[&root].0.total_tokens(), 30_000);
    let lines = frame(&tree, seq, &STYLE, true);
    assert_eq!(lines.len(), STYLE.height);
    assert!(lines[0].contains("30,000 tok"), "{}", lines[0]);
    assert!(lines[1].contains("worker "), "{}", lines[1]);
    assert!(lines[2].contains("worker#2"), "{}", lines[2]);
    assert_eq!(lines[38], "… 9,963 more rows (9,963 running)");

    // Deep: a chain of 10,000 (no recursion anywhere: no stack overflow).
    let mut tree = RunTree::new();
    let mut seq = 0;
    tree.apply(&synthetic(
        root,
        None,
        0,
        0,
        EventKind::RunStarted { name: "root".into() },
    ));
    let mut parent = root;
    for depth in 0..10_000u32 {
        let child = RunId::from_u128(100 + u128::from(depth));
        spawn(&mut tree, &mut seq, parent, depth, child);
        parent = child;
    }
    assert_eq!(tree.preorder().len(), 10_001);
    assert_eq!(tree.subtree_totals()[&root].0.total_tokens(), 30_000);
    let lines = frame(&tree, seq, &STYLE, true);
    assert_eq!(lines.len(), STYLE.height);
    assert!(
        lines.iter().all(|l| l.chars().count() <= STYLE.width),
        "indentation is capped"
    );
    assert!(
        tree.get(parent).unwrap().path.to_string().contains("more)"),
        "long paths are elided"
    );
}

/// Events of a built-in graph example run under a root context, in seq order.
async fn graph_events(name: &str) -> Vec<Event> {
    let example = tinyagents_cli::graphs::build(name).unwrap().unwrap();
    let sink = CollectingSink::new();
    let config = tinyagents_core::RunConfig::new().sink(sink.clone());
    let ctx = tinyagents_core::RunContext::root("root", &config);
    ctx.emit(EventKind::RunStarted { name: "root".into() });
    let opts = tinyagents_graph::RunOptions::new().sink(ctx.sink().clone());
    example.graph.invoke_in(&ctx, example.input, &opts).await.unwrap();
    let mut events = sink.events();
    events.sort_by_key(|e| e.seq);
    events
}

#[tokio::test]
async fn a_running_graph_shows_its_step_and_running_tasks() {
    let events = graph_events("research_fanout").await;
    // Tasks start and end as the workers run them: stop where the most
    // researcher tasks are in flight, counted from the events themselves.
    let is_research = |node_id: &tinyagents_core::NodeId| node_id.0.as_ref() == "research";
    let (mut in_flight, mut most, mut cut) = (0usize, 0usize, 0usize);
    for (i, e) in events.iter().enumerate() {
        match &e.kind {
            EventKind::GraphTaskStarted { node_id, .. } if is_research(node_id) => in_flight += 1,
            EventKind::GraphTaskCompleted { node_id, .. } if is_research(node_id) => in_flight -= 1,
            _ => continue,
        }
        if in_flight > most {
            (most, cut) = (in_flight, i);
        }
    }
    assert!(most >= 1, "a researcher task ran");
    let tree = tree_of(&events[..=cut]);
    let lines = frame(&tree, events[cut].timestamp_us, &STYLE, true);
    let graph_row = lines
        .iter()
        .find(|l| l.contains("research_fanout") && l.contains("graph step"))
        .unwrap();
    assert!(graph_row.contains("research"), "{graph_row}");
    let graph = tree.get(events[cut].run_id).unwrap();
    let info = graph.graph.as_ref().unwrap();
    assert_eq!(info.graph_id.as_ref(), "research_fanout");
    assert_eq!(info.running.len(), most, "the tree counts the tasks in flight");
    if most > 1 {
        assert!(graph_row.contains(&format!("research ({most} tasks)")), "{graph_row}");
    }
    // With slower researchers all three are in flight at once: the same
    // events without the completions that came before the third start.
    let third_start = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(&e.kind, EventKind::GraphTaskStarted { node_id, .. } if is_research(node_id)))
        .nth(2)
        .map(|(i, _)| i)
        .unwrap();
    let overlapped: Vec<Event> = events[..=third_start]
        .iter()
        .filter(|e| !matches!(&e.kind, EventKind::GraphTaskCompleted { node_id, .. } if is_research(node_id)))
        .cloned()
        .collect();
    let tree = tree_of(&overlapped);
    let lines = frame(&tree, events[third_start].timestamp_us, &STYLE, true);
    let graph_row = lines.iter().find(|l| l.contains("graph step")).unwrap();
    assert!(graph_row.contains("research (3 tasks)"), "{graph_row}");
    let third = cut;
    // Once done, the graph run counts its steps (plan, fan-out, write) and tasks.
    let done = tree_of(&events);
    let info = done.get(events[third].run_id).unwrap();
    let info = info.graph.as_ref().unwrap();
    assert_eq!((info.steps_done, info.tasks_done, info.tasks_failed), (3, 5, 0));
    assert!(info.running.is_empty());
}

#[test]
fn a_streaming_run_shows_its_newest_words_until_its_call_completes() {
    let root = RunId::from_u128(1);
    let mut tree = RunTree::new();
    tree.apply(&synthetic(
        root,
        None,
        0,
        1,
        EventKind::RunStarted { name: "writer".into() },
    ));
    tree.apply(&synthetic(
        root,
        None,
        0,
        2,
        EventKind::ModelCallStarted {
            model: "m".into(),
            turn: 0,
        },
    ));
    let words: Vec<String> = (0..40).map(|i| format!("word{i}")).collect();
    for (i, w) in words.iter().enumerate() {
        let delta = tinyagents_core::ModelDelta::Text {
            text: format!("{w}\n ").into(),
        };
        tree.apply(&synthetic(
            root,
            None,
            0,
            3 + i as u64,
            EventKind::ModelDelta { turn: 0, delta },
        ));
    }
    let node = tree.get(root).unwrap();
    // Whitespace collapsed, only the tail kept.
    assert!(node.streamed.ends_with("word38 word39 "), "{:?}", node.streamed);
    assert!(!node.streamed.contains("word0 "), "{:?}", node.streamed);
    assert!(node.streamed.chars().count() <= tinyagents_cli::tree::STREAM_TAIL);
    let style = FrameStyle { width: 200, ..STYLE };
    let lines = frame(&tree, 100, &style, false);
    let row = lines.iter().find(|l| l.contains("writer")).unwrap();
    assert!(row.contains("› ") && row.contains("word39"), "{row}");

    // A new call starts from nothing.
    tree.apply(&synthetic(
        root,
        None,
        0,
        100,
        EventKind::ModelCallStarted {
            model: "m".into(),
            turn: 1,
        },
    ));
    assert!(tree.get(root).unwrap().streamed.is_empty());
    let lines = frame(&tree, 100, &style, false);
    assert!(lines.iter().any(|l| l.contains("thinking (turn 2)")), "{lines:?}");
}
