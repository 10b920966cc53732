//! The `tinyagents` binary, run as a user runs it: exit codes, stdout,
//! stderr, JSON events. Every run uses `--no-delay`, so scripted models
//! answer at once and the suite stays fast.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use tinyagents_core::{Event, EventKind, LimitKind, RunId, Usage};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tinyagents"));
    cmd.env_remove("TINYAGENTS_NO_DELAY").env("NO_COLOR", "1");
    cmd
}

fn example(name: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/scripts");
    root.join(name).display().to_string()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

/// Runs with `script` on stdin (`--script -`).
fn run_stdin(script: &str, extra: &[&str]) -> Output {
    let mut child = bin()
        .args(["run", "--no-delay", "--script", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script written");
    child.wait_with_output().expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Events and the final result object of a `--json` run.
fn json_lines(o: &Output) -> (Vec<Event>, serde_json::Value) {
    let text = stdout(o);
    let mut lines: Vec<&str> = text.lines().collect();
    let last = lines.pop().expect("a result line");
    let result: serde_json::Value = serde_json::from_str(last).expect("result line is JSON");
    assert_eq!(result["type"], "result", "last line is the result: {last}");
    let events = lines
        .iter()
        .map(|l| serde_json::from_str::<Event>(l).unwrap_or_else(|e| panic!("not an event ({e}): {l}")))
        .collect();
    (events, result)
}

#[test]
fn every_example_script_exits_zero_with_its_final_answer() {
    let cases = [
        (None, "Rust suits agent runtimes: a sub-agent is one small task", 5),
        (
            Some("demo.json"),
            "Rust suits agent runtimes: a sub-agent is one small task",
            5,
        ),
        (Some("research.json"), "Report: bound agent trees by depth", 7),
        (
            Some("deep.json"),
            "Shipped: the feature went out through four levels",
            5,
        ),
        (Some("failing.json"), "Plan delivered without the detail pass", 2),
    ];
    for (script, answer, runs) in cases {
        let path = script.map(example);
        // Without a script: the demo team on scripted models.
        let mut args = vec!["run", "--no-delay", "--provider", "scripted"];
        if let Some(p) = &path {
            args.extend(["--script", p.as_str()]);
        }
        let out = run(&args);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{script:?}: {text}\n{}", stderr(&out));
        assert!(text.contains(&format!("answer:\n{answer}")), "{script:?}: {text}");
        assert!(text.contains(&format!("totals: runs {runs} |")), "{script:?}: {text}");
    }
}

#[test]
fn the_demo_delegates_to_three_sub_agents_one_of_which_delegates_again() {
    let (events, _) = json_lines(&run(&["run", "--no-delay", "--json", "--provider", "scripted"]));
    let started: Vec<(&str, u32)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RunStarted { name } => Some((&**name, e.depth)),
            _ => None,
        })
        .collect();
    assert_eq!(started.iter().filter(|(_, d)| *d == 1).count(), 3, "{started:?}");
    assert_eq!(started.iter().filter(|(_, d)| *d == 2).count(), 1, "{started:?}");
    assert_eq!(started.iter().map(|(_, d)| *d).max(), Some(2));
}

#[test]
fn json_output_is_event_lines_with_consistent_ids_and_rolled_up_totals() {
    for script in ["demo.json", "research.json", "deep.json", "failing.json"] {
        let out = run(&["run", "--no-delay", "--json", "--script", &example(script)]);
        assert_eq!(out.status.code(), Some(0), "{script}: {}", stderr(&out));
        let (events, result) = json_lines(&out);
        assert!(!events.is_empty());
        let root = events[0].run_id;
        assert!(matches!(events[0].kind, EventKind::RunStarted { .. }), "{script}");
        assert_eq!((events[0].depth, events[0].parent_run_id), (0, None), "{script}");

        // Output is the tree's total order: seq 0, 1, 2, ...
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, i as u64, "{script}: events in seq order");
            assert_eq!(e.root_run_id, root, "{script}");
        }

        // Every run's parent is announced by SubAgentStarted one level up.
        let mut depth_of: HashMap<RunId, u32> = HashMap::from([(root, 0)]);
        let mut parent_of: HashMap<RunId, RunId> = HashMap::new();
        for e in &events {
            if let EventKind::SubAgentStarted {
                child_run_id,
                child_depth,
                ..
            } = &e.kind
            {
                assert_eq!(*child_depth, e.depth + 1, "{script}");
                depth_of.insert(*child_run_id, *child_depth);
                parent_of.insert(*child_run_id, e.run_id);
            }
            let depth = depth_of.get(&e.run_id).copied();
            assert_eq!(
                depth,
                Some(e.depth),
                "{script}: event from an announced run at its depth"
            );
            assert_eq!(e.parent_run_id, parent_of.get(&e.run_id).copied(), "{script}");
        }

        let calls: Usage = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::ModelCallCompleted { usage, .. } => Some(*usage),
                _ => None,
            })
            .sum();
        let root_total = events
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::RunCompleted { total_usage, .. } if e.run_id == root => Some(*total_usage),
                _ => None,
            })
            .expect("root completed");
        assert_eq!(root_total, calls, "{script}: root total = sum of all model calls");
        assert!(calls.total_tokens() > 0);
        assert_eq!(result["ok"], true);
        assert_eq!(result["total_tokens"], calls.total_tokens());
        let runs = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::RunStarted { .. }))
            .count();
        assert_eq!(result["runs"], runs as u64, "{script}");
    }
}

#[test]
fn the_failing_script_completes_and_reports_the_refused_sub_agent() {
    let out = run(&["run", "--no-delay", "--script", &example("failing.json")]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("refused  orchestrator/planner -> detailer: sub-agent depth 2 exceeds max_depth 1"),
        "{text}"
    );
    assert!(text.contains("| failures 1"), "{text}");

    let (events, result) = json_lines(&run(&[
        "run",
        "--no-delay",
        "--json",
        "--script",
        &example("failing.json"),
    ]));
    assert!(events.iter().any(|e| e.depth == 1
        && matches!(
            e.kind,
            EventKind::BudgetExceeded {
                limit: LimitKind::Depth
            }
        )));
    let failed_call = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ToolCallCompleted {
                tool,
                error: Some(error),
                ..
            } => Some((tool.to_string(), error.clone(), e.depth)),
            _ => None,
        })
        .expect("the planner's call to the detailer failed");
    assert_eq!(failed_call.0, "detailer");
    assert_eq!(failed_call.2, 1);
    assert!(failed_call.1.contains("exceeds max_depth 1"), "{}", failed_call.1);
    assert!(
        !events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::RunStarted { name } if &**name == "detailer")),
        "a refused sub-agent never starts"
    );
    assert_eq!(result["ok"], true);
    assert_eq!(result["failures"], 1);
}

#[test]
fn non_terminal_output_is_plain_lines_without_escape_codes() {
    let out = run(&["run", "--no-delay", "--script", &example("deep.json")]);
    let text = stdout(&out);
    assert!(
        !text.contains('\x1b'),
        "no ANSI escapes when stdout is a pipe: {text:?}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let starts = lines.iter().filter(|l| l.contains("] start ")).count();
    let dones = lines.iter().filter(|l| l.contains("] done ")).count();
    assert_eq!((starts, dones), (5, 5), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("start    ceo/vp/director/manager/engineer (depth 4)")),
        "{text}"
    );
}

#[test]
fn a_malformed_script_exits_2_naming_the_file_line_and_column() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("malformed-script.json");
    std::fs::write(&path, "{\n  \"agents\": {\n    \"a\": {\"respones\": []}\n  }\n}\n").expect("written");
    let out = run(&["run", "--script", &path.display().to_string()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("malformed-script.json:3:"), "{err}");
    assert!(err.contains("unknown field `respones`"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(stdout(&out).is_empty());

    let out = run_stdin("{\"agents\": ", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("<stdin>:1:"), "{}", stderr(&out));
}

#[test]
fn an_unknown_sub_agent_exits_2_naming_the_agent_and_the_name() {
    let script = r#"{"input": "x", "agents": {
        "boss": {"subagents": ["resercher"], "responses": [{"content": "x"}]},
        "researcher": {"responses": [{"content": "x"}]}
    }}"#;
    let out = run_stdin(script, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("agent \"boss\" lists unknown sub-agent \"resercher\""),
        "{err}"
    );
}

#[test]
fn a_delegation_cycle_exits_2_naming_the_loop() {
    let script = r#"{"input": "x", "root": "boss", "agents": {
        "boss": {"subagents": ["a"], "responses": [{"content": "x"}]},
        "a": {"subagents": ["b"], "responses": [{"content": "x"}]},
        "b": {"subagents": ["a"], "responses": [{"content": "x"}]}
    }}"#;
    let out = run_stdin(script, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("delegation cycle: a -> b -> a"), "{err}");
}

#[test]
fn a_scripted_call_to_something_not_a_sub_agent_exits_2() {
    let script = r#"{"input": "x", "agents": {
        "boss": {"responses": [{"tool_calls": [{"name": "ghost"}]}]}
    }}"#;
    let out = run_stdin(script, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("agent \"boss\", responses[0]: calls \"ghost\""), "{err}");
}

#[test]
fn a_failed_root_exits_1_with_the_run_path_and_depth() {
    // The boss has no response left after its sub-agent answers.
    let script = r#"{"input": "x", "agents": {
        "boss": {"subagents": ["helper"], "responses": [
            {"tool_calls": [{"name": "helper", "arguments": {"input": "help"}}], "usage": {"input_tokens": 10}}
        ]},
        "helper": {"responses": [{"content": "helped", "usage": {"input_tokens": 5}}]}
    }}"#;
    let out = run_stdin(script, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error: boss (depth 0): model call failed"), "{err}");
    assert!(err.contains("no response left"), "{err}");
    let text = stdout(&out);
    assert!(text.contains("failed   boss (depth 0)"), "{text}");
    assert!(text.contains("totals: runs 2 (1 failed)"), "{text}");

    let (events, result) = json_lines(&run_stdin(script, &["--json"]));
    assert_eq!(result["ok"], false);
    assert_eq!(result["path"], "boss");
    assert_eq!(result["depth"], 0);
    assert!(
        events
            .iter()
            .any(|e| e.depth == 0 && matches!(e.kind, EventKind::RunFailed { .. }))
    );
}

#[test]
fn a_sub_agent_invoked_twice_consumes_its_responses_in_order() {
    let script = r#"{"input": "x", "agents": {
        "boss": {"subagents": ["helper"], "responses": [
            {"tool_calls": [{"name": "helper", "arguments": {"input": "one"}}]},
            {"tool_calls": [{"name": "helper", "arguments": {"input": "two"}}]},
            {"content": "done"}
        ]},
        "helper": {"responses": [
            {"content": "first", "usage": {"input_tokens": 11}},
            {"content": "second", "usage": {"input_tokens": 22}}
        ]}
    }}"#;
    let (events, result) = json_lines(&run_stdin(script, &["--json"]));
    let helper_calls: Vec<u64> = events
        .iter()
        .filter(|e| e.depth == 1)
        .filter_map(|e| match &e.kind {
            EventKind::ModelCallCompleted { usage, .. } => Some(usage.input_tokens),
            _ => None,
        })
        .collect();
    assert_eq!(helper_calls, vec![11, 22]);
    assert_eq!(result["answer"], "done");
}

#[test]
fn cycling_responses_repeat_errors_included_and_a_drained_queue_fails_the_sub_agent() {
    let script = |cycle: bool, responses: &str| {
        format!(
            r#"{{"input": "x", "agents": {{
                "boss": {{"subagents": ["helper"], "responses": [
                    {{"tool_calls": [
                        {{"name": "helper", "arguments": {{"input": "a"}}}},
                        {{"name": "helper", "arguments": {{"input": "b"}}}},
                        {{"name": "helper", "arguments": {{"input": "c"}}}}
                    ]}},
                    {{"content": "done"}}
                ]}},
                "helper": {{"cycle": {cycle}, "responses": {responses}}}
            }}}}"#
        )
    };
    let one = r#"[{"content": "same"}]"#;
    let (_, result) = json_lines(&run_stdin(&script(true, one), &["--json"]));
    assert_eq!(
        (result["ok"].as_bool(), result["failures"].as_u64()),
        (Some(true), Some(0))
    );
    // A cycle may contain failures: error, reply, error.
    let flaky = r#"[{"error": "overloaded"}, {"content": "ok"}]"#;
    let (_, result) = json_lines(&run_stdin(&script(true, flaky), &["--json"]));
    assert_eq!(
        (result["ok"].as_bool(), result["failures"].as_u64()),
        (Some(true), Some(2))
    );
    let (_, result) = json_lines(&run_stdin(&script(false, one), &["--json"]));
    assert_eq!(result["ok"], true, "the boss still answers");
    assert_eq!(result["failures"], 2, "two helper runs found no response");
    assert_eq!(result["failed_runs"], 2);
}

#[test]
fn input_comes_from_the_command_line_when_the_script_has_none() {
    let script = r#"{"agents": {"solo": {"responses": [{"content": "ok"}]}}}"#;
    let out = run_stdin(script, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no \"input\""), "{}", stderr(&out));
    let out = run_stdin(script, &["a task"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("answer:\nok"));
}

#[test]
fn the_no_delay_environment_variable_is_accepted() {
    let out = bin()
        .env("TINYAGENTS_NO_DELAY", "1")
        .args(["run", "--script", &example("deep.json")])
        .output()
        .expect("binary runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn help_documents_the_script_format_and_exit_codes() {
    let out = run(&["run", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for needle in [
        "SCRIPT FORMAT",
        "\"agents\"",
        "\"subagents\"",
        "\"responses\"",
        "\"tool_calls\"",
        "\"delay_ms\"",
        "\"cycle\"",
        "\"limits\"",
        "\"prices\"",
        "EXIT STATUS",
        "--no-delay",
        "--json",
    ] {
        assert!(text.contains(needle), "help lacks {needle}: {text}");
    }
    let out = run(&["run", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}
