//! Blueprint commands run as a user runs them: `check`, `fmt`, `schema`,
//! `graph FILE` and `run FILE`, on every file of `examples/blueprints/`.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tinyagents"));
    cmd.env("NO_COLOR", "1").env("TINYAGENTS_NO_DELAY", "1");
    cmd
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/blueprints")
}

/// Every example blueprint (`.ta` and `.json`), sorted.
fn examples() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .expect("examples/blueprints exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ta" || x == "json"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 6, "the examples are there: {files:?}");
    files
}

fn bad(name: &str) -> String {
    dir().join("bad").join(name).display().to_string()
}

#[test]
fn check_accepts_every_example_with_a_summary() {
    for file in examples() {
        let out = run(&["check", &file]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.starts_with("ok: ") && text.contains("stage(s)") && text.contains("estimate:"),
            "{text}"
        );
    }
}

#[test]
fn check_refuses_a_tool_the_parent_lacks_naming_it() {
    let out = run(&["check", &bad("grant_shell.ta")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("blueprint::capability"), "{err}");
    assert!(err.contains("`shell`"), "names the tool: {err}");
    assert!(err.contains("grant_shell.ta:11"), "points at the source line: {err}");
    assert!(stdout(&out).is_empty());
    // Granting it on the command line makes the same file pass.
    let ok = run(&["check", "--tools", "web_search,shell", &bad("grant_shell.ta")]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
}

#[test]
fn check_reports_parse_errors_with_exit_1() {
    let tmp = std::env::temp_dir().join(format!("ta-bad-{}.ta", std::process::id()));
    std::fs::write(&tmp, "blueprint x {\n  agent a { task 42 }\n}\n").unwrap();
    let out = run(&["check", tmp.to_str().unwrap()]);
    let _ = std::fs::remove_file(&tmp);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("blueprint::"), "{}", stderr(&out));
}

#[test]
fn fmt_of_fmt_is_the_identity_on_every_example() {
    let tmp = std::env::temp_dir().join(format!("ta-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for file in examples() {
        let once = run(&["fmt", &file]);
        assert_eq!(once.status.code(), Some(0), "{file}: {}", stderr(&once));
        let name = PathBuf::from(&file).file_name().unwrap().to_owned();
        let copy = tmp.join(name);
        std::fs::write(&copy, stdout(&once)).unwrap();
        let twice = run(&["fmt", copy.to_str().unwrap()]);
        assert_eq!(stdout(&twice), stdout(&once), "{file}");
        let check = run(&["fmt", "--check", copy.to_str().unwrap()]);
        assert_eq!(check.status.code(), Some(0), "canonical output passes --check: {file}");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn fmt_check_fails_on_a_non_canonical_file_and_write_fixes_it() {
    let tmp = std::env::temp_dir().join(format!("ta-fmtw-{}.ta", std::process::id()));
    std::fs::copy(dir().join("review_loop.ta"), &tmp).unwrap();
    let path = tmp.to_str().unwrap();
    assert_eq!(
        run(&["fmt", "--check", path]).status.code(),
        Some(1),
        "comments are not canonical"
    );
    assert_eq!(run(&["fmt", "--write", path]).status.code(), Some(0));
    assert_eq!(run(&["fmt", "--check", path]).status.code(), Some(0));
    let _ = std::fs::remove_file(&tmp);
}

#[test]
fn schema_is_json_naming_the_top_level_fields() {
    let out = run(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    let props = schema["properties"].as_object().expect("top-level properties");
    for field in ["name", "nodes", "output", "inputs"] {
        assert!(
            props.contains_key(field),
            "{field} in {:?}",
            props.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn graph_draws_one_box_per_stage() {
    for file in examples() {
        let checked = stdout(&run(&["check", &file]));
        let stages: usize = checked
            .split(", ")
            .find_map(|part| part.strip_suffix(" stage(s)"))
            .and_then(|n| n.parse().ok())
            .expect("the summary gives the stage count");
        let mermaid = run(&["graph", &file]);
        assert_eq!(mermaid.status.code(), Some(0), "{file}");
        let text = stdout(&mermaid);
        assert!(text.starts_with("flowchart TD"), "{text}");
        assert_eq!(text.matches("  subgraph stage").count(), stages, "{file}:\n{text}");
        let dot = stdout(&run(&["graph", "--dot", &file]));
        assert!(dot.starts_with("digraph"), "{dot}");
        assert_eq!(dot.matches("subgraph cluster").count(), stages, "{file}:\n{dot}");
    }
}

#[test]
fn graph_of_a_bad_blueprint_fails_with_the_diagnostic() {
    let out = run(&["graph", &bad("grant_shell.ta")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`shell`"));
}
