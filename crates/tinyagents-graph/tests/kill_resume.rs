//! Item 5, crash durability: the test re-executes itself as a child process
//! that runs a fan-out of sub-agent nodes against an SQLite file, kills it
//! with SIGKILL mid-fan-out, resumes from SQLite in this process and proves
//! by counting model calls that finished children were not re-run and that
//! no write was lost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tinyagents_core::{BoxFuture, EventKind, FnSink, Model, ModelError, ModelRequest, ModelResponse, RunConfig};
use tinyagents_graph::{
    CompiledGraph, GraphBuilder, Reducer, Resume, RunOptions, START, Send, SqliteCheckpointer, SubAgentNode, Update,
};
use tinyagents_harness::Agent;

const ENV: &str = "TINYAGENTS_KILL_RESUME_DB";
const N: usize = 300;
const KILL_AFTER: usize = 40;

/// A model that logs every call (to stdout in the child, to a list here).
struct LoggingModel {
    log: Option<Arc<Mutex<Vec<String>>>>,
}

impl Model for LoggingModel {
    fn id(&self) -> &str {
        "logging"
    }
    fn complete<'a>(&'a self, req: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let input = req.messages.last().and_then(|m| m.text()).unwrap_or("").to_string();
            match &self.log {
                Some(log) => log.lock().unwrap().push(input.clone()),
                None => {
                    {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "call {input}").unwrap();
                        out.flush().unwrap();
                    }
                    // Slow enough that the parent kills the child well
                    // before the fan-out could finish (~1.5 s in all).
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Ok(ModelResponse::text(format!("answer to {input}")))
        })
    }
}

fn graph(log: Option<Arc<Mutex<Vec<String>>>>) -> CompiledGraph {
    let agent = Agent::builder("worker").model(LoggingModel { log }).build();
    GraphBuilder::new("fanout")
        .channel("results", Reducer::Append)
        .subagent_node(
            "worker",
            SubAgentNode::new(agent).output(|out, _| Ok(Update::new().set("results", &*out.text))),
        )
        .conditional_edge(START, &["worker"], |_: Value| {
            (0..N)
                .map(|i| Send::new("worker", format!("job-{i}")))
                .collect::<Vec<_>>()
        })
        .compile()
        .unwrap()
}

/// The child process: runs the fan-out and prints `saved <task>` once a
/// task's writes are durable. Does nothing unless started by the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_entry() {
    let Ok(path) = std::env::var(ENV) else { return };
    let sink = FnSink::new(|e: tinyagents_core::Event| {
        if let EventKind::TaskWritesSaved { task_id, .. } = e.kind {
            let mut out = std::io::stdout().lock();
            writeln!(out, "saved job-{}", task_id.index).unwrap();
            out.flush().unwrap();
        }
    });
    let store = Arc::new(SqliteCheckpointer::open(&path).unwrap());
    let opts = RunOptions::new()
        .config(RunConfig::new().sink(sink))
        .checkpointer(store)
        .thread("t")
        .max_concurrency(4);
    let _ = graph(None).invoke(json!({}), &opts).await;
    // Never reached in the test: the parent kills us first.
    std::thread::sleep(Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_fanout_resumes_without_rerunning_finished_children() {
    if std::env::var(ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("run.sqlite");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_entry", "--nocapture", "--test-threads=1"])
        .env(ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut lines = Vec::new();
    let mut saved_seen = 0;
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        if line.contains("saved job-") {
            saved_seen += 1;
        }
        lines.push(line.trim().to_string());
        line.clear();
        if saved_seen >= KILL_AFTER {
            child.kill().unwrap(); // SIGKILL on Unix
            break;
        }
    }
    // Whatever the child printed before it died.
    while reader.read_line(&mut line).unwrap() > 0 {
        lines.push(line.trim().to_string());
        line.clear();
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, it did not finish");
    let mut child_calls: HashMap<String, usize> = HashMap::new();
    let mut saved: HashSet<String> = HashSet::new();
    // (libtest may print `test child_process_entry ... ` before the first line.)
    for l in &lines {
        if let Some(p) = l.find("call job-") {
            *child_calls.entry(l[p + 5..].to_string()).or_default() += 1;
        } else if let Some(p) = l.find("saved job-") {
            saved.insert(l[p + 6..].to_string());
        }
    }
    assert!(
        saved.len() >= KILL_AFTER && saved.len() < N,
        "killed mid-fan-out: {} saved",
        saved.len()
    );
    for job in &saved {
        assert_eq!(
            child_calls.get(job),
            Some(&1),
            "{job} was called once before it was saved"
        );
    }

    // Resume in this process from the SQLite file.
    let log = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::new(SqliteCheckpointer::open(&db).unwrap());
    let opts = RunOptions::new().checkpointer(store).thread("t").max_concurrency(16);
    let out = graph(Some(log.clone())).resume(Resume::none(), &opts).await.unwrap();
    let resumed: Vec<String> = log.lock().unwrap().clone();
    let resumed_set: HashSet<&String> = resumed.iter().collect();
    assert_eq!(resumed.len(), resumed_set.len(), "each unfinished child ran once");
    for job in &saved {
        assert!(!resumed_set.contains(job), "finished child {job} was re-run");
    }
    assert_eq!(
        resumed.len() + saved.len(),
        N,
        "every child ran to completion exactly once after its save"
    );
    // No write lost: every job's answer is in the state exactly once, in task order.
    let results: Vec<String> = out.state_as::<HashMap<String, Value>>().unwrap()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..N).map(|i| format!("answer to job-{i}")).collect();
    assert_eq!(results, expected);
}
