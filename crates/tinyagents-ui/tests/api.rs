//! The debugger's HTTP API: tree, run details, steering hooks, errors.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use tinyagents_core::{RunConfig, RunId};
use tinyagents_trace::{DetailLevel, IoRecorder, TraceConfig, TraceSink, TraceStore};
use tinyagents_ui::{ControlAction, ControlError, ControlHandler, LiveHub, UiSource, loopback, serve};

/// The tree summary `s` the API served has the run's roll-up, to the token.
fn assert_totals_match(s: &serde_json::Value, out: &tinyagents_harness::AgentOutput) {
    assert_eq!(
        s["total_usage"]["input_tokens"].as_u64().unwrap(),
        out.total_usage.input_tokens
    );
    assert_eq!(
        s["total_usage"]["output_tokens"].as_u64().unwrap(),
        out.total_usage.output_tokens
    );
    assert_eq!(s["total_cost"].as_u64().unwrap(), out.total_cost.picodollars());
}

async fn recorded_three_level() -> (tinyagents_harness::AgentOutput, tinyagents_trace::LoadedTrace) {
    let dir = temp_dir("api");
    let sink = TraceSink::new(TraceConfig::new(&dir).detail(DetailLevel::ModelIo)).unwrap();
    let rec: Option<Arc<dyn IoRecorder>> = Some(sink.clone());
    let out = three_level(&rec)
        .run_with(
            &RunConfig::new().sink(sink.clone()).prices(prices()),
            "What changed in Rust 2024?",
        )
        .await
        .unwrap();
    sink.close().unwrap();
    let loaded = TraceStore::new(&dir).load(&out.run.run_id.to_string()).unwrap();
    (out, loaded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_endpoint_lists_every_run_in_preorder_with_totals_matching_the_reader() {
    let (out, loaded) = recorded_three_level().await;
    let reader_summary = loaded.tree.summary();
    let ui = serve(UiSource::recorded(loaded), loopback(0), None).await.unwrap();
    let base = ui.url();
    let (status, tree) = get_json(&base, "/api/tree").await;
    assert_eq!(status, 200);
    let rows = tree["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    let names: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| (r[2].as_str().unwrap(), r[3].as_u64().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("orchestrator", 0),
            ("researcher", 1),
            ("fact-checker", 2),
            ("fact-checker", 2),
            ("researcher", 1),
            ("fact-checker", 2),
            ("fact-checker", 2),
        ]
    );
    assert_eq!(rows[0][1], -1);
    assert_eq!(rows[2][1], 1, "parent index of a leaf is its researcher row");
    assert_eq!(rows.iter().filter(|r| r[4] == "failed").count(), 1);
    let s = &tree["summary"];
    assert_totals_match(s, &out);
    assert_eq!(*s, serde_json::to_value(&reader_summary).unwrap());
    let (status, sum) = get_json(&base, "/api/summary").await;
    assert_eq!(status, 200);
    assert_eq!(sum["mode"], "recorded");
    assert_eq!(sum["steering"], false);
    ui.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_endpoint_returns_the_transcript_and_events_and_404s_an_unknown_run() {
    let (out, loaded) = recorded_three_level().await;
    let ui = serve(UiSource::recorded(loaded), loopback(0), None).await.unwrap();
    let base = ui.url();
    let (status, run) = get_json(&base, &format!("/api/run/{}", out.run.run_id)).await;
    assert_eq!(status, 200);
    assert_eq!(run["node"]["name"], "orchestrator");
    let transcript = run["transcript"].as_array().unwrap();
    assert_eq!(transcript.len(), out.transcript.len());
    assert_eq!(transcript[1]["content"], "What changed in Rust 2024?");
    assert!(
        run["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["type"] == "run_completed")
    );

    let (status, body) = get_json(&base, &format!("/api/run/{}", RunId::new())).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("unknown run"));
    let (status, body) = get_json(&base, "/api/run/not-an-id").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("32 hex digits"));
    // Steering without a handler.
    let (status, body) = http("POST", &base, &format!("/api/run/{}/pause", out.run.run_id)).await;
    assert_eq!(status, 501);
    assert!(body.contains("steering not available"));
    let (status, _) = http("POST", &base, &format!("/api/run/{}/explode", out.run.run_id)).await;
    assert_eq!(status, 404);
    ui.shutdown().await;
}

struct Recorder(std::sync::Mutex<Vec<(RunId, ControlAction)>>);

impl ControlHandler for Recorder {
    fn control(&self, run: RunId, action: ControlAction) -> Result<String, ControlError> {
        self.0.lock().unwrap().push((run, action));
        if action == ControlAction::Cancel {
            return Err(ControlError::Denied("policy forbids cancelling the root".into()));
        }
        Ok(format!("{action:?} requested"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steering_buttons_go_through_the_pluggable_control_handler() {
    let (out, loaded) = recorded_three_level().await;
    let handler = Arc::new(Recorder(Default::default()));
    let ui = serve(UiSource::recorded(loaded), loopback(0), Some(handler.clone()))
        .await
        .unwrap();
    let base = ui.url();
    let id = out.run.run_id;
    let (status, body) = http("POST", &base, &format!("/api/run/{id}/pause")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Pause requested"));
    let (status, body) = http("POST", &base, &format!("/api/run/{id}/cancel")).await;
    assert_eq!(status, 403);
    assert!(body.contains("policy forbids"));
    let (status, _) = http("POST", &base, &format!("/api/run/{}/resume", RunId::new())).await;
    assert_eq!(status, 404, "unknown runs never reach the handler");
    assert_eq!(
        *handler.0.lock().unwrap(),
        [(id, ControlAction::Pause), (id, ControlAction::Cancel)]
    );
    let (_, sum) = get_json(&base, "/api/summary").await;
    assert_eq!(sum["steering"], true);
    ui.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_hub_tree_equals_the_recorded_tree_of_the_same_run() {
    let dir = temp_dir("live-vs-recorded");
    let sink = TraceSink::new(TraceConfig::new(&dir).detail(DetailLevel::ModelIo)).unwrap();
    let hub = LiveHub::new();
    let rec: Option<Arc<dyn IoRecorder>> = Some(Arc::new(tinyagents_trace::TeeRecorder(sink.clone(), hub.clone())));
    let sinks = Arc::new(tinyagents_core::TeeSink(sink.clone(), hub.clone()));
    let out = three_level(&rec)
        .run_with(&RunConfig::new().sink(sinks).prices(prices()), "q")
        .await
        .unwrap();
    sink.close().unwrap();
    let ui = serve(UiSource::Live(hub.clone()), loopback(0), None).await.unwrap();
    // The hub applies events on its own thread: wait for the root's end.
    for _ in 0..200 {
        if hub.tree().summary().status != tinyagents_trace::RunStatus::Running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (_, live) = get_json(&ui.url(), "/api/tree").await;
    let loaded = TraceStore::new(&dir).load(&out.run.run_id.to_string()).unwrap();
    let recorded = serve(UiSource::recorded(loaded), loopback(0), None).await.unwrap();
    let (_, rec_tree) = get_json(&recorded.url(), "/api/tree").await;
    assert_eq!(live["rows"], rec_tree["rows"]);
    assert_eq!(live["summary"]["total_usage"], rec_tree["summary"]["total_usage"]);
    let (_, sum) = get_json(&ui.url(), "/api/summary").await;
    assert_eq!(sum["mode"], "live");
    ui.shutdown().await;
    recorded.shutdown().await;
}

#[tokio::test]
async fn the_server_refuses_a_non_loopback_address() {
    let err = serve(
        UiSource::Live(LiveHub::new()),
        std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        None,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not a loopback address"));
}

/// Polls `/api/tree` until `pred` holds on its rows (10 s at most).
async fn wait_rows(base: &str, what: &str, pred: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
    for _ in 0..1000 {
        let (_, tree) = get_json(base, "/api/tree").await;
        if let Some(rows) = tree["rows"].as_array()
            && pred(rows)
        {
            return rows.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Steering records (phase, command, actor id) of one run, from `/api/run/{id}`.
async fn steering_of(base: &str, run: &str) -> Vec<(String, String, String)> {
    let (status, body) = get_json(base, &format!("/api/run/{run}")).await;
    assert_eq!(status, 200, "{body}");
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "steering")
        .map(|r| {
            (
                r["phase"].as_str().unwrap_or_default().to_string(),
                r["info"]["command"].as_str().unwrap_or_default().to_string(),
                r["info"]["actor"]["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cancel_posted_to_a_live_run_steer_it_through_the_hub() {
    use tinyagents_harness::steering::{SteeringHub, SteeringPolicy};
    let live = LiveHub::new();
    let steering = SteeringHub::new(SteeringPolicy::default());
    let ui = serve(
        UiSource::Live(live.clone()),
        loopback(0),
        Some(tinyagents_ui::HubControl::new(steering.clone())),
    )
    .await
    .unwrap();
    let base = ui.url();
    let (_, sum) = get_json(&base, "/api/summary").await;
    assert_eq!(sum["steering"], true);

    let (open, gate) = tokio::sync::watch::channel(false);
    let boss = gated_team(gate, 3);
    let config = RunConfig::new()
        .sink(live.clone())
        .prices(prices())
        .hooks(steering.clone());
    let run = tokio::spawn(async move { boss.run_with(&config, "go").await });

    let rows = wait_rows(&base, "three running workers", |rows| {
        rows.iter().filter(|r| r[2] == "worker" && r[4] == "running").count() == 3
    })
    .await;
    let root = rows[0][0].as_str().unwrap().to_string();
    let first_worker = rows[1][0].as_str().unwrap().to_string();

    // Pause the root: accepted now, applied at its next safe boundary
    // (after its workers answer, before its next model call).
    let (status, body) = http("POST", &base, &format!("/api/run/{root}/pause")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("pause accepted"), "{body}");
    // Cancel one worker: it stops at once, its siblings go on.
    let (status, body) = http("POST", &base, &format!("/api/run/{first_worker}/cancel")).await;
    assert_eq!(status, 200, "{body}");
    wait_rows(&base, "the cancelled worker failed", |rows| {
        rows.iter().any(|r| r[0] == first_worker.as_str() && r[4] == "failed")
    })
    .await;

    open.send(true).unwrap();
    let rows = wait_rows(&base, "the root paused at its boundary", |rows| rows[0][4] == "paused").await;
    // The cancelled worker failed, its two siblings completed (rows of
    // siblings started at once need not keep one order: match by id).
    let status_of = |id: &str| {
        rows.iter()
            .find(|r| r[0] == id)
            .map(|r| r[4].as_str().unwrap().to_string())
    };
    assert_eq!(status_of(&first_worker).as_deref(), Some("failed"));
    let mut others: Vec<&str> = rows
        .iter()
        .skip(1)
        .filter(|r| r[0] != first_worker.as_str())
        .map(|r| r[4].as_str().unwrap())
        .collect();
    others.sort_unstable();
    assert_eq!(others, ["completed", "completed"]);
    assert!(!run.is_finished(), "a paused root does not finish");
    let (_, detail) = get_json(&base, &format!("/api/run/{root}")).await;
    assert_eq!(detail["node"]["paused"], true);

    let (status, body) = http("POST", &base, &format!("/api/run/{root}/resume")).await;
    assert_eq!(status, 200, "{body}");
    let out = run.await.unwrap().unwrap();
    assert_eq!(&*out.text, "all done");
    assert_eq!(out.failures.len(), 1, "the cancelled child is the root's one failure");
    let rows = wait_rows(&base, "the root completed", |rows| rows[0][4] == "completed").await;
    assert_eq!(rows.len(), 4);

    // Every step went through the hub as a human actor and is in the events.
    let root_steering = steering_of(&base, &root).await;
    for phase in ["requested", "accepted", "delivered", "applied"] {
        for command in ["pause", "resume"] {
            assert!(
                root_steering
                    .iter()
                    .any(|(p, c, who)| p == phase && c == command && who == "web-debugger"),
                "{phase} {command} missing from {root_steering:?}"
            );
        }
    }
    let worker_steering = steering_of(&base, &first_worker).await;
    assert!(
        worker_steering.iter().any(|(p, c, _)| p == "accepted" && c == "cancel"),
        "{worker_steering:?}"
    );
    let (_, failed) = get_json(&base, &format!("/api/run/{first_worker}")).await;
    assert!(failed["node"]["error"].as_str().unwrap().contains("cancel"), "{failed}");

    // The run is over: the hub refuses, the page gets the reason (409).
    let (status, body) = http("POST", &base, &format!("/api/run/{root}/pause")).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("has finished"), "{body}");
    ui.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steering_request_the_policy_refuses_is_a_403_with_the_reason_and_a_rejected_event() {
    use tinyagents_core::{ActorKind, CommandKind};
    use tinyagents_harness::steering::{SteeringHub, SteeringPolicy};
    let live = LiveHub::new();
    let policy = SteeringPolicy::permissive("humans-may-not-cancel").forbid(ActorKind::Human, CommandKind::Cancel);
    let steering = SteeringHub::new(policy);
    let ui = serve(
        UiSource::Live(live.clone()),
        loopback(0),
        Some(tinyagents_ui::HubControl::new(steering.clone())),
    )
    .await
    .unwrap();
    let base = ui.url();
    let (open, gate) = tokio::sync::watch::channel(false);
    let boss = gated_team(gate, 1);
    let config = RunConfig::new().sink(live.clone()).hooks(steering.clone());
    let run = tokio::spawn(async move { boss.run_with(&config, "go").await });
    let rows = wait_rows(&base, "a running worker", |rows| {
        rows.iter().any(|r| r[2] == "worker" && r[4] == "running")
    })
    .await;
    let worker = rows[1][0].as_str().unwrap().to_string();
    let (status, body) = http("POST", &base, &format!("/api/run/{worker}/cancel")).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("humans-may-not-cancel") && body.contains("does not allow"),
        "{body}"
    );
    open.send(true).unwrap();
    let out = run.await.unwrap().unwrap();
    assert!(out.failures.is_empty(), "the refused cancel changed nothing");
    wait_rows(&base, "the root completed", |rows| rows[0][4] == "completed").await;
    let steering_events = steering_of(&base, &worker).await;
    assert!(
        steering_events.iter().any(|(p, c, _)| p == "rejected" && c == "cancel"),
        "{steering_events:?}"
    );
    ui.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buttons_steer_a_run_of_another_process_over_its_control_socket() {
    use tinyagents_harness::steering::{SteeringHub, SteeringPolicy, serve_control_socket};
    let live = LiveHub::new();
    let steering = SteeringHub::new(SteeringPolicy::default());
    let dir = temp_dir("socket");
    let path = dir.join("run.sock");
    let server = serve_control_socket(steering.clone(), &path).unwrap();
    // The page is served from a recorded snapshot elsewhere; here the live
    // hub only tells the test what happened.
    let ui = serve(
        UiSource::Live(live.clone()),
        loopback(0),
        Some(tinyagents_ui::SocketControl::new(&path)),
    )
    .await
    .unwrap();
    let base = ui.url();
    let (open, gate) = tokio::sync::watch::channel(false);
    let boss = gated_team(gate, 2);
    let config = RunConfig::new().sink(live.clone()).hooks(steering.clone());
    let run = tokio::spawn(async move { boss.run_with(&config, "go").await });
    let rows = wait_rows(&base, "two running workers", |rows| {
        rows.iter().filter(|r| r[2] == "worker" && r[4] == "running").count() == 2
    })
    .await;
    let worker = rows[1][0].as_str().unwrap().to_string();
    let (status, body) = http("POST", &base, &format!("/api/run/{worker}/cancel")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cancel accepted"), "{body}");
    open.send(true).unwrap();
    let out = run.await.unwrap().unwrap();
    assert_eq!(out.failures.len(), 1, "the cancelled worker");
    // The hub takes events through a queue: wait until it has the root's end
    // (queued after the steering events) before reading them.
    wait_rows(&base, "the root completed", |rows| rows[0][4] == "completed").await;
    let steering_events = steering_of(&base, &worker).await;
    assert!(
        steering_events
            .iter()
            .any(|(p, c, who)| p == "accepted" && c == "cancel" && who == "web-debugger"),
        "{steering_events:?}"
    );
    // Finished: the hub refuses (409, with its reason).
    let (status, body) = http("POST", &base, &format!("/api/run/{worker}/pause")).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("has finished"), "{body}");
    // The socket gone: a clear error, not a hang.
    drop(server);
    let root = rows[0][0].as_str().unwrap().to_string();
    let (status, body) = http("POST", &base, &format!("/api/run/{root}/pause")).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("cannot reach the run's control socket"), "{body}");
    ui.shutdown().await;
}

/// Reads the server-sent events of `/api/updates` until `n` `version`
/// events came; returns their versions.
async fn sse_versions(base: &str, n: usize) -> Vec<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut s = tokio::net::TcpStream::connect(&host).await.unwrap();
    let req = format!("GET /api/updates HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let versions: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|v| v.trim().parse().ok())
            .collect();
        if versions.len() >= n {
            return versions;
        }
        let k = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an update within 10 s")
            .unwrap();
        assert!(k > 0, "the update stream closed: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..k]));
    }
}

/// Runs the gated team into `sink` while the debugger follows the trace at
/// `location(root)`: the page sees the workers running before the run
/// ends, gets pushed updates, and ends with the recorded totals.
async fn follow_a_trace_being_written(sink: Arc<TraceSink>, store: TraceStore) {
    let FollowedRun { open, run, root, ui } = follow_gated_team(sink.clone(), &store).await;
    let base = ui.url();
    let (_, sum) = get_json(&base, "/api/summary").await;
    assert_eq!(sum["mode"], "live");
    let rows = wait_rows(&base, "three running workers, read from the trace", |rows| {
        rows.iter().filter(|r| r[2] == "worker" && r[4] == "running").count() == 3
    })
    .await;
    assert_eq!(rows[0][0], root.to_string());
    assert_eq!(rows[0][4], "running");
    assert!(!run.is_finished(), "the workers wait for the gate");
    // Updates are pushed while the run proceeds.
    let updates = tokio::spawn({
        let base = base.clone();
        async move { sse_versions(&base, 1).await }
    });
    open.send(true).unwrap();
    let out = run.await.unwrap().unwrap();
    let versions = updates.await.unwrap();
    assert!(versions[0] > 0, "{versions:?}");
    let rows = wait_rows(&base, "the root completed, read from the trace", |rows| {
        rows[0][4] == "completed"
    })
    .await;
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r[4] == "completed"), "{rows:?}");
    let (_, tree) = get_json(&base, "/api/tree").await;
    let s = &tree["summary"];
    assert_totals_match(s, &out);
    // The followed tree equals the tree loaded from the finished trace.
    sink.close().unwrap();
    let loaded = store.load_root(root).unwrap();
    assert_eq!(*s, serde_json::to_value(loaded.tree.summary()).unwrap());
    let (_, sum) = get_json(&base, "/api/summary").await;
    assert_eq!(sum["damage"], serde_json::json!([]));
    ui.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debugger_follows_a_trace_file_while_its_run_writes_it() {
    let dir = temp_dir("follow-file");
    let sink = TraceSink::new(TraceConfig::new(&dir).flush_interval(std::time::Duration::from_millis(20))).unwrap();
    follow_a_trace_being_written(sink, TraceStore::new(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debugger_follows_a_sqlite_trace_while_its_run_writes_it() {
    let db = temp_dir("follow-db").join("traces.db");
    let sink = TraceSink::new(TraceConfig::sqlite(&db).flush_interval(std::time::Duration::from_millis(20))).unwrap();
    follow_a_trace_being_written(sink, TraceStore::sqlite(&db)).await;
}
