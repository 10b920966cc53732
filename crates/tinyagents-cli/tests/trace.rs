//! `tinyagents run --trace`, `trace list|show`, `ui` and `replay`, run as a
//! user runs them: the real binary, a temporary trace directory, loopback
//! HTTP for the debugger.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tinyagents"));
    cmd.env_remove("TINYAGENTS_NO_DELAY")
        .env_remove("TINYAGENTS_TRACE_DIR")
        .env("NO_COLOR", "1");
    cmd
}

fn research() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/scripts/research.json")
        .display()
        .to_string()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh, empty trace directory for one test.
fn trace_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ta-cli-trace-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Records the research script into `dir`; returns the run's stdout.
fn record(dir: &Path) -> String {
    record_with(dir, &[])
}

/// `tinyagents run` of the research script, no delays, no control server,
/// with `args` added.
fn run_research(args: &[&str]) -> Output {
    let script = research();
    let base = ["run", "--script", &script, "--no-delay", "--no-control"];
    run(&base.into_iter().chain(args.iter().copied()).collect::<Vec<_>>())
}

/// [`record`] with extra `run` options.
fn record_with(dir: &Path, extra: &[&str]) -> String {
    let out = run_research(&[["--trace", dir.to_str().unwrap()].as_slice(), extra].concat());
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("trace: "), "stderr: {}", stderr(&out));
    stdout(&out)
}

/// The "tokens N" figure of the run's totals line, digits only.
fn totals_tokens(run_stdout: &str) -> String {
    let line = run_stdout
        .lines()
        .find(|l| l.starts_with("totals:"))
        .expect("a totals line");
    let after = line.split("tokens ").nth(1).expect("tokens in the totals line");
    after.split_whitespace().next().unwrap().replace(',', "")
}

fn listed(dir: &Path) -> Vec<serde_json::Value> {
    let out = run(&["trace", "list", "--json", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    serde_json::from_str::<Vec<serde_json::Value>>(&stdout(&out)).expect("a JSON array")
}

#[test]
fn traced_run_is_listed_with_the_totals_of_the_run() {
    let dir = trace_dir("list");
    let run_out = record(&dir);
    let entries = listed(&dir);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let m = &entries[0]["manifest"];
    assert_eq!(m["status"], "completed");
    assert_eq!(m["name"], "lead");
    assert_eq!(m["agents"], 7);
    let tokens = m["usage"]["input_tokens"].as_u64().unwrap() + m["usage"]["output_tokens"].as_u64().unwrap();
    assert_eq!(tokens.to_string(), totals_tokens(&run_out));
    let table = run(&["trace", "list", "--dir", dir.to_str().unwrap()]);
    assert!(stdout(&table).contains("completed"), "{}", stdout(&table));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trace_show_prints_the_tree_with_agent_names_and_the_runs_total_tokens() {
    let dir = trace_dir("show");
    let run_out = record(&dir);
    let root = listed(&dir)[0]["manifest"]["root_run_id"].as_str().unwrap().to_string();
    // A unique prefix of the id is enough.
    let out = run(&["trace", "show", &root[..12], "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    for name in ["lead", "researcher", "writer"] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let tokens = totals_tokens(&run_out);
    let root_line = text.lines().find(|l| l.contains("lead") && l.contains("tok")).unwrap();
    assert!(
        root_line.replace(',', "").contains(&format!("{tokens} tok")),
        "root line {root_line:?} lacks {tokens} tokens"
    );
    let json = run(&["trace", "show", &root, "--json", "--dir", dir.to_str().unwrap()]);
    assert_eq!(json.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("JSON tree");
    assert!(value.to_string().contains("researcher"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_run_exits_2_with_a_clear_message() {
    let dir = trace_dir("unknown");
    record(&dir);
    let out = run(&["trace", "show", "ffffffffdeadbeef", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown run ffffffffdeadbeef"),
        "{}",
        stderr(&out)
    );
    let ui = run(&["ui", "ffffffffdeadbeef", "--dir", dir.to_str().unwrap(), "--port", "0"]);
    assert_eq!(ui.status.code(), Some(2));
    let replay = run(&["replay", "ffffffffdeadbeef", "--dir", dir.to_str().unwrap()]);
    assert_eq!(replay.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_of_a_lifecycle_trace_says_model_io_is_needed() {
    let dir = trace_dir("replay");
    record(&dir);
    let root = listed(&dir)[0]["manifest"]["root_run_id"].as_str().unwrap().to_string();
    let out = run(&["replay", &root, "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("model I/O"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_of_a_model_io_trace_is_faithful() {
    let dir = trace_dir("replay-io");
    record_with(&dir, &["--trace-detail", "model_io"]);
    let root = listed(&dir)[0]["manifest"]["root_run_id"].as_str().unwrap().to_string();
    let out = run(&["replay", &root, "--dir", dir.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {} stderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("7 runs") && text.contains("no divergence"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_reads_a_model_io_run_from_a_sqlite_trace_database() {
    let dir = trace_dir("replay-db");
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("runs.sqlite");
    let db_arg = db.to_str().unwrap();
    let out = run_research(&["--trace-detail", "model_io", "--trace-db", db_arg]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let list = run(&["trace", "list", "--json", "--db", db_arg]);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    let root = entries[0]["manifest"]["root_run_id"].as_str().unwrap().to_string();
    let out = run(&["replay", &root[..12], "--db", db_arg]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {} stderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("7 runs") && text.contains("no divergence"), "{text}");
    // An unknown run in the database: a usage error, not a crash.
    let out = run(&["replay", "ffffffffdeadbeef", "--db", db_arg]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kills the child when dropped (a failing assertion must not leak it).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connects");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Starts `tinyagents ui ROOT --dir DIR` on a free port; the child (killed
/// when dropped) and the address it serves on.
fn serve_ui(root: &str, dir: &std::path::Path) -> (Killed, String) {
    let child = bin()
        .args(["ui", root, "--port", "0", "--dir", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ui starts");
    let mut child = Killed(child);
    let mut url = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let addr = url
        .trim()
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("not a URL: {url:?}"))
        .to_string();
    (child, addr)
}

#[test]
fn ui_serves_the_recorded_trace_with_the_runs_totals() {
    let dir = trace_dir("ui");
    let run_out = record(&dir);
    let root = listed(&dir)[0]["manifest"]["root_run_id"].as_str().unwrap().to_string();
    let (child, addr) = serve_ui(&root, &dir);
    let summary = get_json(&addr, "/api/summary");
    let usage = &summary["summary"]["total_usage"];
    let tokens = usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap();
    assert_eq!(tokens.to_string(), totals_tokens(&run_out), "{summary}");
    let page = http_get(&addr, "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The JSON body of a `GET` (the body may be chunked: the object inside it).
fn get_json(addr: &str, path: &str) -> serde_json::Value {
    let response = http_get(addr, path);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(&body[body.find('{').unwrap()..=body.rfind('}').unwrap()]).expect("JSON")
}

#[test]
fn trace_list_in_another_process_tells_a_live_writer_from_a_gone_one() {
    use tinyagents_core::{EventKind, RunConfig, RunContext};
    use tinyagents_trace::{TraceConfig, TraceSink};
    let dir = trace_dir("interrupted");
    // This test process writes; `tinyagents trace list` reads from its own.
    let sink = TraceSink::new(TraceConfig::new(&dir)).unwrap();
    let root = RunContext::root("boss", &RunConfig::new().sink(sink.clone()));
    root.emit(EventKind::RunStarted { name: "boss".into() });
    sink.flush().unwrap();
    let status = || listed(&dir)[0]["manifest"]["status"].as_str().unwrap().to_string();
    assert_eq!(status(), "running", "the sink still holds the trace");
    // The writer goes away before the root ends, as when its process dies:
    // the system drops its lock with its file.
    sink.close().unwrap();
    assert_eq!(status(), "interrupted");
    let table = stdout(&run(&["trace", "list", "--dir", dir.to_str().unwrap()]));
    assert!(table.contains("interrupted"), "{table}");
    drop(root);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ui_on_a_trace_still_being_written_follows_it_until_the_run_ends() {
    use tinyagents_core::{EventKind, RunConfig, RunContext, RunLimits, Usage};
    use tinyagents_trace::{TraceConfig, TraceSink};
    let dir = trace_dir("ui-follow");
    // This test process writes the trace; the `ui` process follows it.
    let sink = TraceSink::new(TraceConfig::new(&dir)).unwrap();
    let root = RunContext::root("boss", &RunConfig::new().sink(sink.clone()));
    root.emit(EventKind::RunStarted { name: "boss".into() });
    let worker = root
        .spawn_child("worker", &RunLimits::new(), tinyagents_core::ChildEvents::Parent)
        .unwrap();
    worker.emit(EventKind::RunStarted { name: "worker".into() });
    sink.flush().unwrap();
    let (child, addr) = serve_ui(&root.run_id().to_string(), &dir);
    assert_eq!(get_json(&addr, "/api/summary")["mode"], "live");
    let statuses = |addr: &str| -> Vec<(String, String)> {
        get_json(addr, "/api/tree")["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[2].as_str().unwrap().to_string(), r[4].as_str().unwrap().to_string()))
            .collect()
    };
    let wait = |what: &str, want: &[(&str, &str)]| {
        for _ in 0..500 {
            let got = statuses(&addr);
            if got
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .eq(want.iter().copied())
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}: {:?}", statuses(&addr));
    };
    wait("both runs running", &[("boss", "running"), ("worker", "running")]);
    // The run goes on: the page sees what is flushed next.
    worker.emit(EventKind::RunCompleted {
        usage: Usage::call(7, 3),
        total_usage: Usage::call(7, 3),
        total_cost: Default::default(),
        failures: 0,
    });
    sink.flush().unwrap();
    wait("the worker completed", &[("boss", "running"), ("worker", "completed")]);
    root.emit(EventKind::RunCompleted {
        usage: Usage::call(5, 1),
        total_usage: Usage::call(12, 4),
        total_cost: Default::default(),
        failures: 0,
    });
    sink.close().unwrap();
    wait("the root completed", &[("boss", "completed"), ("worker", "completed")]);
    let usage = &get_json(&addr, "/api/summary")["summary"]["total_usage"];
    assert_eq!(
        (usage["input_tokens"].as_u64(), usage["output_tokens"].as_u64()),
        (Some(12), Some(4))
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_lists_the_trace_commands_and_run_trace() {
    let top = stdout(&run(&["--help"]));
    for command in ["trace", "ui", "replay"] {
        assert!(
            top.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} missing:\n{top}"
        );
    }
    let run_help = stdout(&run(&["run", "--help"]));
    assert!(run_help.contains("--trace [<DIR>]"), "{run_help}");
    let trace_help = stdout(&run(&["trace", "--help"]));
    assert!(
        trace_help.contains("list") && trace_help.contains("show"),
        "{trace_help}"
    );
}

#[test]
fn a_run_recorded_into_a_sqlite_database_is_listed_shown_and_served_like_a_trace_file() {
    let dir = trace_dir("sqlite");
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("runs.sqlite");
    let db_arg = db.to_str().unwrap();
    let out = run_research(&["--trace-db", db_arg]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("(SQLite, root "), "{}", stderr(&out));
    let run_tokens = totals_tokens(&stdout(&out));

    let list = run(&["trace", "list", "--json", "--db", db_arg]);
    assert_eq!(list.status.code(), Some(0), "stderr: {}", stderr(&list));
    let entries: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(entries.len(), 1);
    let m = &entries[0]["manifest"];
    assert_eq!(
        (m["status"].as_str(), m["agents"].as_u64()),
        (Some("completed"), Some(7))
    );
    let tokens = m["usage"]["input_tokens"].as_u64().unwrap() + m["usage"]["output_tokens"].as_u64().unwrap();
    assert_eq!(tokens.to_string(), run_tokens);
    let root = m["root_run_id"].as_str().unwrap().to_string();

    // `show` prints the same tree from the database as from a trace file
    // of the same script.
    let files = dir.join("files");
    record(&files);
    let file_root = listed(&files)[0]["manifest"]["root_run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let from_db = run(&["trace", "show", &root[..10], "--db", db_arg]);
    assert_eq!(from_db.status.code(), Some(0), "stderr: {}", stderr(&from_db));
    let from_file = run(&["trace", "show", &file_root, "--dir", files.to_str().unwrap()]);
    let shape = |text: &str| -> Vec<String> {
        // Names, statuses and tokens; ids, times and latencies differ between runs.
        text.lines()
            .skip(1)
            .map(|l| {
                l.split_whitespace()
                    .filter(|w| !w.ends_with("ms") && !w.ends_with('s') && !w.contains(':') && !w.starts_with('['))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    };
    // Parallel researchers take the script's shared replies in whatever
    // order they run: compare the runs as a multiset.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sorted(shape(&stdout(&from_db))), sorted(shape(&stdout(&from_file))));
    assert!(stdout(&from_db).contains("researcher"));

    // The debugger reads it too.
    let child = bin()
        .args(["ui", &root, "--port", "0", "--db", db_arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ui starts");
    let mut child = Killed(child);
    let mut url = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let addr = url
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let response = http_get(&addr, &format!("/api/run/{root}"));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("run_completed"), "{response}");
    drop(child);

    // A corrupt database is a clear error.
    let bad = dir.join("bad.sqlite");
    std::fs::write(&bad, vec![0x42u8; 4096]).unwrap();
    let out = run(&["trace", "list", "--db", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a usable SQLite database"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "run",
        "--script",
        &research(),
        "--no-delay",
        "--trace-db",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a usable SQLite database"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trace_prune_removes_the_oldest_traces_and_prints_each_one_and_dry_run_removes_nothing() {
    let dir = trace_dir("prune");
    for _ in 0..3 {
        record(&dir);
    }
    let before = listed(&dir);
    assert_eq!(before.len(), 3);
    let oldest = before[0]["manifest"]["root_run_id"].as_str().unwrap().to_string();
    let d = dir.to_str().unwrap();

    // No rule: refused.
    let out = run(&["trace", "prune", "--dir", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--older-than"), "{}", stderr(&out));
    let out = run(&["trace", "prune", "--older-than", "7 parsecs", "--dir", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown unit"), "{}", stderr(&out));

    // Nothing is a week old.
    let out = run(&["trace", "prune", "--older-than", "7d", "--dir", d]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("pruned 0 trace(s)"), "{}", stdout(&out));

    // One byte less than all three take: the oldest goes, and says so.
    let out = run(&[
        "trace",
        "prune",
        "--max-traces",
        "99",
        "--dry-run",
        "--json",
        "--dir",
        d,
    ]);
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plan["dry_run"], true);
    let total = plan["report"]["bytes_kept"].as_u64().unwrap();
    let size = format!("{}", total - 1);
    let out = run(&["trace", "prune", "--max-size", &size, "--dry-run", "--dir", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("would prune {oldest}")) && text.contains("max_total_bytes"),
        "{text}"
    );
    assert_eq!(listed(&dir).len(), 3, "a dry run removes nothing");
    let out = run(&["trace", "prune", "--max-size", &size, "--dir", d]);
    let text = stdout(&out);
    assert!(text.contains(&format!("pruned {oldest} lead")), "{text}");
    assert!(text.contains("pruned 1 trace(s)"), "{text}");
    assert_eq!(listed(&dir).len(), 2);

    // Everything older than a second (after waiting one), as JSON.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = run(&["trace", "prune", "--older-than", "1s", "--json", "--dir", d]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["report"]["removed"].as_array().unwrap().len(), 2);
    assert!(
        report["report"]["removed"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["reason"] == "max_age")
    );
    assert!(listed(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
