//! Replay: a recorded run re-run from its recorded model responses matches
//! the original tree, and a changed recording is reported as divergence.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::Arc;

use common::*;
use tinyagents_core::{ModelResponse, RunConfig, ToolCall, Usage, tool_fn};
use tinyagents_harness::{Agent, SubAgent};
use tinyagents_providers::ScriptedModel;
use tinyagents_trace::{
    DetailLevel, IoRecorder, ReplayOptions, TraceConfig, TraceError, TraceSink, TraceStore, replay_location,
    replay_trace,
};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Lookup {
    term: String,
}

/// root → 2 × analyst (each calls the plain `lookup` tool, then answers);
/// the analyst asked about "beta" gets a failing lookup and reports it.
fn team(rec: &Wrap) -> Agent {
    let lookup = tool_fn("lookup", "Looks a term up.", |a: Lookup| async move {
        if a.term == "beta" {
            Err(tinyagents_core::ToolError::failed("index offline"))
        } else {
            Ok(format!("definition of {}", a.term))
        }
    });
    let analyst =
        Agent::builder("analyst")
            .system("Analyse one term.")
            .shared_model(
                rec.model(
                    ScriptedModel::from_fn(|req| {
                        if after_tools(req) {
                            Ok(ModelResponse::text(format!("analysis: {}", last_text(req)))
                                .with_usage(Usage::call(60, 12)))
                        } else {
                            let term = last_text(req);
                            Ok(ScriptedModel::call("lookup", serde_json::json!({ "term": term }))
                                .with_usage(Usage::call(50, 5)))
                        }
                    })
                    .with_id("model-1"),
                ),
            )
            .tool(lookup)
            .build();
    let root = ScriptedModel::from_fn(|req| {
        if after_tools(req) {
            Ok(ModelResponse::text("report done").with_usage(Usage::call(200, 40)))
        } else {
            Ok(ModelResponse::tool_calls(vec![
                ToolCall::new("x1", "analyst", &serde_json::json!({"input": "alpha"})),
                ToolCall::new("x2", "analyst", &serde_json::json!({"input": "beta"})),
            ])
            .with_usage(Usage::call(100, 20)))
        }
    })
    .with_id("model-0");
    Agent::builder("lead")
        .system("Lead the analysis.")
        .shared_model(rec.model(root))
        .subagent(SubAgent::new(analyst))
        .build()
}

/// The team's run, recorded by a sink of `config` (closed after it).
async fn record_team(config: TraceConfig) -> tinyagents_harness::AgentOutput {
    let sink = TraceSink::new(config).unwrap();
    let wrap = Wrap(Some(sink.clone() as Arc<dyn IoRecorder>));
    let out = team(&wrap)
        .run_with(
            &RunConfig::new().sink(sink.clone()).prices(prices()),
            "analyse alpha and beta",
        )
        .await
        .unwrap();
    sink.close().unwrap();
    out
}

/// `report` replays the team's recorded run exactly: same answer, totals
/// and runs, every model call served from the recording.
fn assert_faithful(report: &tinyagents_trace::ReplayReport, out: &tinyagents_harness::AgentOutput) {
    assert!(report.is_faithful(), "{:#?}", report.lines());
    assert_eq!(report.outcome.as_deref(), Ok("report done"));
    assert_eq!(report.replayed.total_usage, out.total_usage);
    assert_eq!(report.replayed.total_cost, out.total_cost);
    assert_eq!(report.replayed.counts.runs, 3);
    // 2 root calls + 2 × 2 analyst calls.
    assert_eq!(report.served, 6);
}

async fn recorded(detail: DetailLevel) -> (std::path::PathBuf, tinyagents_harness::AgentOutput) {
    let dir = temp_dir("replay");
    let out = record_team(TraceConfig::new(&dir).detail(detail)).await;
    (TraceStore::new(&dir).trace_path(out.run.run_id), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_run_reproduces_the_recorded_tree_totals_and_answer() {
    let (path, out) = recorded(DetailLevel::ModelIo).await;
    let report = replay_trace(&path, &ReplayOptions { prices: Some(prices()) })
        .await
        .unwrap();
    assert_faithful(&report, &out);
    assert!(report.lines()[0].contains("no divergence"));
}

/// Rewrites a trace, applying `edit` to every line.
fn rewrite(path: &std::path::Path, edit: impl Fn(&str) -> String) {
    let lines = raw_lines(path);
    let f = std::fs::File::create(path).unwrap();
    let mut enc = zstd::stream::write::Encoder::new(f, 3).unwrap();
    for l in lines {
        writeln!(enc, "{}", edit(&l)).unwrap();
    }
    enc.finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_recorded_response_is_reported_as_divergence_with_the_run_path() {
    let (path, _) = recorded(DetailLevel::ModelIo).await;
    // The analyst of "alpha" now answers differently: the lead's next prompt
    // no longer matches anything recorded.
    rewrite(&path, |l| {
        if l.contains("\"agent\":\"analyst\"") {
            l.replace("analysis: definition of alpha", "analysis: something else")
        } else {
            l.to_string()
        }
    });
    let report = replay_trace(&path, &ReplayOptions::default()).await.unwrap();
    assert!(!report.is_faithful());
    assert_eq!(report.misses.len(), 1, "{:?}", report.misses);
    assert!(
        report.misses[0].starts_with("lead (depth 0) turn 1"),
        "{:?}",
        report.misses
    );
    assert!(report.outcome.as_ref().unwrap_err().contains("replay diverged"));
    assert!(
        report
            .divergences
            .iter()
            .any(|d| d.path == "lead" && d.what == "status completed → failed"),
        "{:#?}",
        report.divergences
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_usage_shows_up_in_the_run_and_its_ancestors_totals() {
    let (path, _) = recorded(DetailLevel::ModelIo).await;
    rewrite(&path, |l| {
        if l.contains("\"type\":\"model_io\"") && l.contains("analysis: definition of alpha") {
            l.replace("\"output_tokens\":12", "\"output_tokens\":13")
        } else {
            l.to_string()
        }
    });
    let report = replay_trace(&path, &ReplayOptions::default()).await.unwrap();
    assert!(report.misses.is_empty());
    let paths: Vec<(&str, &str)> = report
        .divergences
        .iter()
        .map(|d| (d.path.as_str(), d.what.as_str()))
        .collect();
    assert!(paths.contains(&("lead", "total tokens 614 → 615")), "{paths:#?}");
    assert!(
        paths
            .iter()
            .any(|(p, w)| *p == "lead/analyst" && w.starts_with("own tokens")),
        "{paths:#?}"
    );
}

#[tokio::test]
async fn a_lifecycle_trace_cannot_be_replayed_and_says_why() {
    let (path, _) = recorded(DetailLevel::Lifecycle).await;
    let err = replay_trace(&path, &ReplayOptions::default()).await.unwrap_err();
    assert!(matches!(err, TraceError::Replay(_)));
    assert!(err.to_string().contains("needs model I/O"), "{err}");
}

/// The same team recorded into a SQLite trace database.
async fn recorded_in_db() -> (std::path::PathBuf, tinyagents_harness::AgentOutput) {
    let db = temp_dir("replay-db").join("traces.db");
    let out = record_team(TraceConfig::sqlite(&db).detail(DetailLevel::ModelIo)).await;
    (db, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_recorded_in_sqlite_replays_faithfully_and_a_changed_row_is_reported_as_divergence() {
    let (db, out) = recorded_in_db().await;
    let store = TraceStore::sqlite(&db);
    let location = store.location(store.resolve(&out.run.run_id.to_string()).unwrap());
    let report = replay_location(&location, &ReplayOptions { prices: Some(prices()) })
        .await
        .unwrap();
    assert_faithful(&report, &out);

    // The analyst of "alpha" now answered with more tokens in the database.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let changed = conn
        .execute(
            "UPDATE trace_lines SET line = replace(line, '\"output_tokens\":12', '\"output_tokens\":13') \
             WHERE line LIKE '%\"type\":\"model_io\"%' AND line LIKE '%analysis: definition of alpha%'",
            [],
        )
        .unwrap();
    assert!(changed >= 1);
    drop(conn);
    let report = replay_location(&location, &ReplayOptions::default()).await.unwrap();
    assert!(!report.is_faithful());
    let paths: Vec<(&str, &str)> = report
        .divergences
        .iter()
        .map(|d| (d.path.as_str(), d.what.as_str()))
        .collect();
    assert!(paths.contains(&("lead", "total tokens 614 → 615")), "{paths:#?}");
    assert!(report.lines()[0].contains("divergence(s)"), "{:?}", report.lines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_location_reads_a_trace_file_the_same_way_as_replay_trace() {
    let (path, out) = recorded(DetailLevel::ModelIo).await;
    let dir = path.parent().unwrap().to_path_buf();
    let store = TraceStore::new(&dir);
    let location = store.location(out.run.run_id);
    let report = replay_location(&location, &ReplayOptions::default()).await.unwrap();
    assert!(report.is_faithful(), "{:#?}", report.lines());
    assert_eq!(report.replayed.total_usage, out.total_usage);
}
