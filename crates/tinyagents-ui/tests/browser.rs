//! The debugger in real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver). Without Chromium these tests
//! print why and skip; `.ci/run` installs it so CI runs them.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::Arc;

use common::*;
use tinyagents_core::{Event, EventKind, ModelResponse, RunConfig, RunId, ToolCall, Usage};
use tinyagents_harness::{Agent, SubAgent};
use tinyagents_providers::ScriptedModel;
use tinyagents_trace::render::thousands;
use tinyagents_trace::{DetailLevel, IoRecorder, TraceConfig, TraceSink, TraceStore, load_tree};
use tinyagents_ui::{LiveHub, UiSource, loopback, serve};

const ROWS_JS: &str = "Array.from(document.querySelectorAll('#rows .row')).map(r => [r.querySelector('.name').textContent, Number(r.dataset.depth), r.className])";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_three_level_run_renders_with_the_right_names_depths_and_totals() {
    let dir = temp_dir("browser-recorded");
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
    let browser = browser_or_skip!("recorded");
    let loaded = TraceStore::new(&dir).load(&out.run.run_id.to_string()).unwrap();
    let reader = loaded.tree.summary();
    let ui = serve(UiSource::recorded(loaded), loopback(0), None).await.unwrap();
    browser.client.goto(&ui.url()).await.unwrap();
    browser.wait_for("first render", "document.body.dataset.ready").await;

    let rows: Vec<(String, u64, String)> = serde_json::from_value(browser.eval(ROWS_JS).await).unwrap();
    let shape: Vec<(&str, u64)> = rows.iter().map(|(n, d, _)| (n.as_str(), *d)).collect();
    assert_eq!(
        shape,
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
    // The failed run is highlighted, and only it.
    let failed: Vec<&(String, u64, String)> = rows.iter().filter(|r| r.2.contains("failed")).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, "fact-checker");
    // Roll-up totals match the reader to the token.
    let tokens = browser
        .eval("document.getElementById('total-tokens').textContent")
        .await;
    assert_eq!(tokens, thousands(reader.total_usage.total_tokens()));
    assert_eq!(reader.total_usage, out.total_usage);
    let io = browser.eval("document.getElementById('total-io').textContent").await;
    assert_eq!(
        io,
        format!(
            "({} in / {} out)",
            thousands(out.total_usage.input_tokens),
            thousands(out.total_usage.output_tokens)
        )
    );
    assert_eq!(
        browser.eval("document.getElementById('total-runs').textContent").await,
        "7"
    );
    assert_eq!(
        browser.eval("document.getElementById('total-cost').textContent").await,
        out.total_cost.to_string()
    );
    assert_eq!(
        browser.eval("document.getElementById('max-depth').textContent").await,
        "2"
    );

    // Collapsing a researcher hides its two fact-checkers.
    browser
        .eval("document.querySelectorAll('#rows .row')[1].querySelector('.toggle').click() || true")
        .await;
    let rows: Vec<(String, u64, String)> = serde_json::from_value(browser.eval(ROWS_JS).await).unwrap();
    assert_eq!(rows.len(), 5);
    let shot = browser.screenshot("recorded-three-level.png").await;
    assert!(std::fs::metadata(shot).unwrap().len() > 1000);
    browser.close().await;
    ui.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selecting_a_run_shows_its_transcript_and_events() {
    let dir = temp_dir("browser-select");
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
    let browser = browser_or_skip!("select");
    let loaded = TraceStore::new(&dir).load(&out.run.run_id.to_string()).unwrap();
    let ui = serve(UiSource::recorded(loaded), loopback(0), None).await.unwrap();
    browser.client.goto(&ui.url()).await.unwrap();
    browser.wait_for("first render", "document.body.dataset.ready").await;
    // Click the first fact-checker that completed.
    browser
        .eval("document.querySelector('#rows .row.completed[data-depth=\"2\"] .name').click() || true")
        .await;
    browser
        .wait_for(
            "transcript",
            "document.querySelectorAll('#transcript .msg').length >= 3",
        )
        .await;
    let msgs: Vec<(String, String)> = serde_json::from_value(
        browser
            .eval("Array.from(document.querySelectorAll('#transcript .msg')).map(m => [m.className, m.textContent])")
            .await,
    )
    .unwrap();
    assert!(
        msgs[0].0.contains("system") && msgs[0].1.contains("Check one fact."),
        "{msgs:?}"
    );
    assert!(msgs[1].0.contains("user") && msgs[1].1.contains("part "), "{msgs:?}");
    let part = msgs[1].1.trim_start_matches("user").to_string();
    assert!(
        msgs[2].0.contains("assistant") && msgs[2].1.contains(&format!("checked {part}")),
        "{msgs:?}"
    );
    assert_eq!(
        browser.eval("document.getElementById('d-name').textContent").await,
        "fact-checker"
    );
    let events = browser.eval("document.querySelectorAll('#events .ev').length").await;
    assert!(
        events.as_u64().unwrap() >= 4,
        "run_started, model call, run_completed, parent's view"
    );
    assert_eq!(
        browser
            .eval("document.querySelector('#rows .row.selected .name').textContent")
            .await,
        "fact-checker"
    );
    // The failed one shows its error.
    browser
        .eval("document.querySelector('#rows .row.failed .name').click() || true")
        .await;
    let err = browser
        .wait_for(
            "error box",
            "!document.getElementById('d-error').hidden && document.getElementById('d-error').textContent",
        )
        .await;
    assert!(
        err.as_str().unwrap().contains("upstream timeout while checking"),
        "{err}"
    );
    browser.screenshot("selected-run.png").await;
    browser.close().await;
    ui.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_appears_and_updates_while_it_runs() {
    let browser = browser_or_skip!("live");
    let hub = LiveHub::new();
    let ui = serve(UiSource::Live(hub.clone()), loopback(0), None).await.unwrap();
    browser.client.goto(&ui.url()).await.unwrap();
    browser.wait_for("first render", "document.body.dataset.ready").await;

    let (open, gate) = tokio::sync::watch::channel(false);
    let worker = Agent::builder("worker")
        .model(GatedModel {
            gate,
            response: ModelResponse::text("done").with_usage(Usage::call(11, 3)),
        })
        .build();
    let boss = Agent::builder("boss")
        .model(
            ScriptedModel::new([
                ModelResponse::tool_calls(
                    (0..3)
                        .map(|i| {
                            ToolCall::new(
                                format!("c{i}"),
                                "worker",
                                &serde_json::json!({"input": format!("job {i}")}),
                            )
                        })
                        .collect(),
                )
                .with_usage(Usage::call(20, 5)),
                ModelResponse::text("all done").with_usage(Usage::call(30, 2)),
            ])
            .with_id("model-root"),
        )
        .subagent(SubAgent::new(worker))
        .build();
    let config = RunConfig::new().sink(hub.clone()).prices(prices());
    let run = tokio::spawn(async move { boss.run_with(&config, "go").await });

    // The run appears, its children running, before any of them can finish.
    browser
        .wait_for(
            "three running workers",
            "Array.from(document.querySelectorAll('#rows .row.running')).filter(r => r.querySelector('.name').textContent === 'worker').length === 3",
        )
        .await;
    assert_eq!(
        browser.eval("document.getElementById('root-status').textContent").await,
        "running"
    );
    assert_eq!(
        browser.eval("document.getElementById('mode').textContent").await,
        "live"
    );
    browser.screenshot("live-running.png").await;

    open.send(true).unwrap();
    let out = run.await.unwrap().unwrap();
    let tokens = browser
        .wait_for_completed_root(&thousands(out.total_usage.total_tokens()))
        .await;
    assert_eq!(tokens, thousands(20 + 5 + 30 + 2 + 3 * (11 + 3)));
    let rows: Vec<(String, u64, String)> = serde_json::from_value(browser.eval(ROWS_JS).await).unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.2.contains("completed")), "{rows:?}");
    browser.screenshot("live-completed.png").await;
    browser.close().await;
    ui.shutdown().await;
}

/// Writes a synthetic trace of `n` workers under one root (lifecycle level).
fn synthetic_trace(dir: &std::path::Path, n: u64) -> std::path::PathBuf {
    let root = RunId::new();
    let path = dir.join(format!("{root}.jsonl.zst"));
    let f = std::fs::File::create(&path).unwrap();
    let mut enc = zstd::stream::write::Encoder::new(std::io::BufWriter::new(f), 3).unwrap();
    let header = serde_json::json!({"type":"trace_header","format":"tinyagents-trace","version":1,"root_run_id":root,"detail":"lifecycle","created_us":1});
    writeln!(enc, "{header}").unwrap();
    let mut seq = 0u64;
    let mut line = |run, parent, depth, t: u64, kind| {
        let e = Event {
            root_run_id: root,
            parent_run_id: parent,
            run_id: run,
            depth,
            seq,
            timestamp_us: 1_700_000_000_000_000 + t,
            kind,
        };
        seq += 1;
        writeln!(enc, "{}", serde_json::to_string(&e).unwrap()).unwrap();
    };
    line(root, None, 0, 0, EventKind::RunStarted { name: "fleet".into() });
    let per = 100u64;
    let mut total = Usage::default();
    for g in 0..n / per {
        let gid = RunId::new();
        line(
            gid,
            Some(root),
            1,
            g * 10,
            EventKind::RunStarted {
                name: format!("group-{g}").into(),
            },
        );
        let mut gsum = Usage::default();
        for k in 0..per - 1 {
            let id = RunId::new();
            let u = Usage::call(10 + k, 2);
            gsum += u;
            line(
                id,
                Some(gid),
                2,
                g * 10 + k,
                EventKind::RunStarted {
                    name: format!("worker-{g}-{k}").into(),
                },
            );
            line(
                id,
                Some(gid),
                2,
                g * 10 + k + 50,
                EventKind::RunCompleted {
                    usage: u,
                    total_usage: u,
                    total_cost: Default::default(),
                    failures: 0,
                },
            );
        }
        total += gsum;
        line(
            gid,
            Some(root),
            1,
            g * 10 + 200,
            EventKind::RunCompleted {
                usage: Usage::default(),
                total_usage: gsum,
                total_cost: Default::default(),
                failures: 0,
            },
        );
    }
    line(
        root,
        None,
        0,
        n * 10 + 500,
        EventKind::RunCompleted {
            usage: Usage::default(),
            total_usage: total,
            total_cost: Default::default(),
            failures: 0,
        },
    );
    enc.finish().unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_run_trace_renders_virtualized_and_reports_first_render_time() {
    let dir = temp_dir("browser-100k");
    let path = synthetic_trace(&dir, 100_000);
    let loaded = load_tree(&path).unwrap();
    assert_eq!(loaded.tree.len(), 100_001);
    let reader_tokens = loaded.tree.summary().total_usage.total_tokens();
    let browser = browser_or_skip!("100k");
    let ui = serve(UiSource::recorded(loaded), loopback(0), None).await.unwrap();
    browser.client.goto(&ui.url()).await.unwrap();
    browser.wait_for("first render", "document.body.dataset.ready").await;
    let ms = browser.eval("window.__ta.firstRenderMs").await.as_f64().unwrap();
    let report =
        format!("first render of a 100,001-run trace in headless Chromium: {ms:.0} ms after navigation start\n");
    eprint!("{report}");
    std::fs::write(artifacts_dir().join("first-render-100k.txt"), &report).unwrap();
    assert_eq!(
        browser.eval("document.getElementById('total-runs').textContent").await,
        "100,001"
    );
    assert_eq!(
        browser
            .eval("document.getElementById('total-tokens').textContent")
            .await,
        thousands(reader_tokens)
    );
    // Virtualized: only a screenful of rows exists in the DOM.
    let in_dom = browser
        .eval("document.querySelectorAll('#rows .row').length")
        .await
        .as_u64()
        .unwrap();
    assert!(in_dom < 200, "{in_dom} rows in the DOM");
    // Scrolling to the end renders the last run.
    browser
        .eval("(document.getElementById('viewport').scrollTop = 1e9) && true")
        .await;
    let last = browser
        .wait_for(
            "last row",
            "Array.from(document.querySelectorAll('#rows .row .name')).map(e => e.textContent).find(t => t === 'worker-999-98')",
        )
        .await;
    assert_eq!(last, "worker-999-98");
    browser.screenshot("trace-100k.png").await;
    browser.close().await;
    ui.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_then_resume_buttons_steer_a_live_run_and_the_page_shows_its_status_change() {
    use tinyagents_harness::steering::{SteeringHub, SteeringPolicy};
    let browser = browser_or_skip!("steer");
    let live = LiveHub::new();
    let steering = SteeringHub::new(SteeringPolicy::default());
    let ui = serve(
        UiSource::Live(live.clone()),
        loopback(0),
        Some(tinyagents_ui::HubControl::new(steering.clone())),
    )
    .await
    .unwrap();
    browser.client.goto(&ui.url()).await.unwrap();
    browser.wait_for("first render", "document.body.dataset.ready").await;

    let (open, gate) = tokio::sync::watch::channel(false);
    let boss = gated_team(gate, 2);
    let config = RunConfig::new().sink(live.clone()).prices(prices()).hooks(steering);
    let run = tokio::spawn(async move { boss.run_with(&config, "go").await });
    browser
        .wait_for(
            "two running workers",
            "Array.from(document.querySelectorAll('#rows .row.running')).filter(r => r.querySelector('.name').textContent === 'worker').length === 2",
        )
        .await;
    // Select the root and press Pause.
    browser
        .eval("document.querySelector('#rows .row[data-depth=\"0\"] .name').click() || true")
        .await;
    browser
        .wait_for(
            "root selected",
            "document.getElementById('d-name').textContent === 'boss'",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#steer button[data-action=\"pause\"]').disabled")
            .await,
        false
    );
    browser
        .eval("document.querySelector('#steer button[data-action=\"pause\"]').click() || true")
        .await;
    let msg = browser
        .wait_for(
            "pause accepted",
            "document.getElementById('steer-msg').textContent.includes('accepted') && document.getElementById('steer-msg').textContent",
        )
        .await;
    assert!(msg.as_str().unwrap().starts_with("pause accepted"), "{msg}");
    // The workers answer; the root takes the pause at its next boundary.
    open.send(true).unwrap();
    browser
        .wait_for(
            "the root row shows paused",
            "document.querySelector('#rows .row[data-depth=\"0\"]').classList.contains('paused') && document.querySelector('#rows .row[data-depth=\"0\"] .c-status').textContent === 'paused'",
        )
        .await;
    browser
        .wait_for(
            "the detail shows paused",
            "document.querySelector('#d-fields td[data-field=\"status\"]').textContent.includes('paused')",
        )
        .await;
    assert!(!run.is_finished(), "a paused root does not finish");
    // Live refreshes of the selected run keep the steering answer on screen.
    let kept = browser.eval("document.getElementById('steer-msg').textContent").await;
    assert!(kept.as_str().unwrap().starts_with("pause accepted"), "{kept}");
    browser.screenshot("steer-paused.png").await;
    // Resume: the run goes on and completes.
    browser
        .eval("document.querySelector('#steer button[data-action=\"resume\"]').click() || true")
        .await;
    browser
        .wait_for(
            "resume accepted",
            "document.getElementById('steer-msg').textContent.startsWith('resume accepted')",
        )
        .await;
    let out = run.await.unwrap().unwrap();
    assert_eq!(&*out.text, "all done");
    browser
        .wait_for(
            "the root completes",
            "document.getElementById('root-status').textContent === 'completed' && document.querySelector('#rows .row[data-depth=\"0\"] .c-status').textContent === 'completed'",
        )
        .await;
    // Steering a finished run is refused, and the page says why.
    browser
        .eval("document.querySelector('#steer button[data-action=\"pause\"]').click() || true")
        .await;
    let refused = browser
        .wait_for(
            "the refusal",
            "document.getElementById('steer-msg').className === 'rejected' && document.getElementById('steer-msg').textContent",
        )
        .await;
    assert!(refused.as_str().unwrap().contains("has finished"), "{refused}");
    browser.screenshot("steer-resumed.png").await;
    browser.close().await;
    ui.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_opened_on_a_trace_still_being_written_updates_until_the_run_ends() {
    let browser = browser_or_skip!("follow");
    let dir = temp_dir("browser-follow");
    let sink = TraceSink::new(TraceConfig::new(&dir).flush_interval(std::time::Duration::from_millis(20))).unwrap();
    // What `tinyagents ui` serves for a trace whose run has not ended.
    let FollowedRun { open, run, ui, .. } = follow_gated_team(sink.clone(), &TraceStore::new(&dir)).await;
    browser.client.goto(&ui.url()).await.unwrap();
    browser.wait_for("first render", "document.body.dataset.ready").await;
    browser
        .wait_for(
            "three running workers, read from the trace file",
            "Array.from(document.querySelectorAll('#rows .row.running')).filter(r => r.querySelector('.name').textContent === 'worker').length === 3",
        )
        .await;
    assert_eq!(
        browser.eval("document.getElementById('mode').textContent").await,
        "live"
    );
    browser.screenshot("follow-running.png").await;
    open.send(true).unwrap();
    let out = run.await.unwrap().unwrap();
    sink.close().unwrap();
    let tokens = browser
        .wait_for_completed_root(&thousands(out.total_usage.total_tokens()))
        .await;
    assert_eq!(tokens, thousands(out.total_usage.total_tokens()));
    browser.screenshot("follow-completed.png").await;
    browser.close().await;
    ui.shutdown().await;
}
