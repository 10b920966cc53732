//! The trace store: round trips, detail levels, redaction, sampling,
//! retention and damaged files.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use common::*;
use tinyagents_core::{CollectingSink, Event, EventKind, EventSink, Message, RunConfig, RunContext, RunId, TeeSink};
use tinyagents_trace::{
    DetailLevel, IoRecorder, Record, Redactor, RenderOptions, Retention, RunStatus, RunTree, Sampling, TraceConfig,
    TraceError, TraceSink, TraceStatus, TraceStore, keeps, read_trace, render_tree, transcript_of,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn tree_from_the_stored_trace_equals_the_tree_observed_live_and_totals_match_the_roll_up() {
    let dir = temp_dir("roundtrip");
    let sink = TraceSink::new(TraceConfig::new(&dir)).unwrap();
    let live = CollectingSink::new();
    let config = RunConfig::new()
        .sink(Arc::new(TeeSink(sink.clone(), live.clone())))
        .prices(prices());
    let agent = tree(0, 3, 3, Arc::new(AtomicU64::new(0)), &Wrap::none());
    let out = rt().block_on(agent.run_with(&config, "go")).unwrap();
    let report = sink.close().unwrap();
    assert_eq!(report.roots.len(), 1);
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let store = TraceStore::new(&dir);
    let loaded = store.load(&out.run.run_id.to_string()).unwrap();
    assert!(loaded.damage.is_empty(), "{:?}", loaded.damage);
    // The live observer saw every event; the trace kept the lifecycle.
    let seen: Vec<Event> = live
        .events()
        .into_iter()
        .filter(|e| keeps(DetailLevel::Lifecycle, &e.kind))
        .collect();
    let live_tree = RunTree::from_events(&seen);
    let opts = RenderOptions::full();
    assert_eq!(render_tree(&loaded.tree, &opts), render_tree(&live_tree, &opts));
    // Every run, field by field; only the count of records applied differs
    // (the trace leaves out the parents' repeated view of each child).
    let (mut stored, mut seen_json) = (loaded.tree.to_json(), live_tree.to_json());
    assert_eq!(stored["runs"], seen_json["runs"]);
    stored["summary"]["records"] = 0.into();
    seen_json["summary"]["records"] = 0.into();
    assert_eq!(stored, seen_json);

    // 1 + 3 + 9 + 27 runs, three levels below the root.
    let s = loaded.tree.summary();
    assert_eq!(s.counts.runs, 40);
    assert_eq!(s.counts.completed, 40);
    assert_eq!(s.counts.max_depth, 3);
    assert_eq!(s.total_usage, out.total_usage);
    assert_eq!(s.total_cost, out.total_cost);
    assert_eq!(s.status, RunStatus::Completed);

    // Every level's node sums its children exactly.
    let totals = loaded.tree.subtree_totals();
    for (i, n) in loaded.tree.nodes().iter().enumerate() {
        let kids: tinyagents_core::Usage = n.children.iter().map(|&c| totals[c].0).sum();
        assert_eq!(totals[i].0, n.usage + kids, "run {}", n.name);
    }

    // The manifest says the same as the tree.
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    let m = &listed[0].manifest;
    assert!(!listed[0].rebuilt);
    assert_eq!(m.status, TraceStatus::Completed);
    assert_eq!(m.agents, 40);
    assert_eq!(m.max_depth, 3);
    assert_eq!(m.usage, out.total_usage);
    assert_eq!(m.cost, out.total_cost);
    assert_eq!(m.name, "level0");
    assert!(m.bytes > 0);
}

#[test]
fn lifecycle_level_keeps_runs_and_drops_model_calls_and_deltas() {
    let dir = temp_dir("levels");
    let sink = TraceSink::new(TraceConfig::new(&dir)).unwrap();
    let root = RunContext::root("r", &RunConfig::new().sink(sink.clone()));
    root.emit(EventKind::RunStarted { name: "r".into() });
    root.emit(EventKind::ModelCallStarted {
        model: "m".into(),
        turn: 0,
    });
    root.emit(EventKind::ModelDelta {
        turn: 0,
        delta: tinyagents_core::ModelDelta::Text { text: "hi".into() },
    });
    root.emit(EventKind::ToolCallStarted {
        call_id: "c".into(),
        tool: "t".into(),
    });
    root.emit(EventKind::ToolCallCompleted {
        call_id: "c".into(),
        tool: "t".into(),
        error: Some("boom".into()),
    });
    root.emit(EventKind::RunCompleted {
        usage: Default::default(),
        total_usage: Default::default(),
        total_cost: Default::default(),
        failures: 1,
    });
    sink.close().unwrap();
    let kinds = record_kinds(&TraceStore::new(&dir).trace_path(root.run_id()));
    // A failed tool call is a failure: kept even at lifecycle level.
    assert_eq!(kinds, ["run_started", "tool_call_completed", "run_completed"]);
    let loaded = TraceStore::new(&dir).load(&root.run_id().to_string()).unwrap();
    let n = loaded.tree.root().unwrap();
    assert_eq!(n.failures, 1);
    assert_eq!(n.error.as_deref(), Some("tool t: boom"));
}

#[test]
fn model_io_level_records_transcripts_that_equal_the_runs_own() {
    let dir = temp_dir("modelio");
    let sink = TraceSink::new(TraceConfig::new(&dir).detail(DetailLevel::ModelIo)).unwrap();
    let wrap = Wrap(Some(sink.clone() as Arc<dyn IoRecorder>));
    let agent = tree(0, 2, 2, Arc::new(AtomicU64::new(0)), &wrap);
    let out = rt()
        .block_on(agent.run_with(&RunConfig::new().sink(sink.clone()).prices(prices()), "start"))
        .unwrap();
    sink.close().unwrap();
    let contents = read_trace(TraceStore::new(&dir).trace_path(out.run.run_id)).unwrap();
    assert!(contents.damage.is_empty());
    let ios: Vec<&tinyagents_trace::ModelIoRecord> = contents
        .records
        .iter()
        .filter_map(|r| match r {
            Record::ModelIo(m) if m.run_id == out.run.run_id => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(ios.len(), 2, "root made two model calls");
    assert_eq!(transcript_of(&ios), out.transcript.to_vec());
    // Model and tool call events are kept at this level.
    let model_calls = contents
        .records
        .iter()
        .filter(|r| {
            matches!(
                r,
                Record::Event(Event {
                    kind: EventKind::ModelCallCompleted { .. },
                    ..
                })
            )
        })
        .count();
    // 1 root × 2 calls + 2 children × 2 calls + 4 leaves × 1 call.
    assert_eq!(model_calls, 2 + 4 + 4);
    let loaded = TraceStore::new(&dir).load(&out.run.run_id.to_string()).unwrap();
    assert_eq!(loaded.tree.root().unwrap().model_calls, 2);
    assert_eq!(loaded.tree.root().unwrap().model.as_deref(), Some("model-0"));
}

#[test]
fn redaction_hook_removes_secrets_from_prompts_errors_and_replies_before_they_reach_disk() {
    let dir = temp_dir("redact");
    let secret = "sk-live-123456";
    let sink = TraceSink::new(
        TraceConfig::new(&dir)
            .detail(DetailLevel::ModelIo)
            .redactor(Redactor::secrets([secret])),
    )
    .unwrap();
    let wrap = Wrap(Some(sink.clone() as Arc<dyn IoRecorder>));
    let agent = tree(0, 1, 1, Arc::new(AtomicU64::new(0)), &wrap);
    let out = rt()
        .block_on(agent.run_with(&RunConfig::new().sink(sink.clone()), format!("use key {secret} please")))
        .unwrap();
    let root = RunContext::root("failing", &RunConfig::new().sink(sink.clone()));
    root.emit(EventKind::RunStarted { name: "failing".into() });
    root.emit(EventKind::RunFailed {
        error: format!("auth failed for {secret}"),
        total_usage: Default::default(),
        total_cost: Default::default(),
    });
    sink.close().unwrap();
    let store = TraceStore::new(&dir);
    for id in [out.run.run_id, root.run_id()] {
        let all = raw_lines(&store.trace_path(id)).join("\n");
        assert!(!all.contains(secret), "secret leaked into {id}");
        assert!(all.contains("[REDACTED]"));
    }
    let listed = store.list().unwrap();
    let failed = listed.iter().find(|e| e.manifest.root_run_id == root.run_id()).unwrap();
    assert_eq!(failed.manifest.error.as_deref(), Some("auth failed for [REDACTED]"));
}

#[test]
fn sampling_keeps_every_nth_child_counts_all_and_never_drops_a_failure() {
    let dir = temp_dir("sampling");
    let sink = TraceSink::new(TraceConfig::new(&dir).sampling(Sampling::new(10, 50))).unwrap();
    let agent = fan_out(200, &[77], &Wrap::none());
    let out = rt()
        .block_on(agent.run_with(&RunConfig::new().sink(sink.clone()), "go"))
        .unwrap();
    assert_eq!(out.failures.len(), 1);
    let report = sink.close().unwrap();
    let m = &report.roots[0];
    assert_eq!(m.agents, 201);
    assert_eq!(m.failed_runs, 1);
    // Children 0..10 kept, then 10, 60, 110, 160 → 14 kept of 200.
    assert_eq!(m.sampled_out_runs, 200 - 14);

    let path = TraceStore::new(&dir).trace_path(out.run.run_id);
    let starts = record_kinds(&path).iter().filter(|k| *k == "run_started").count();
    // Root + 14 sampled-in workers + the failed one written after all.
    assert_eq!(starts, 1 + 14 + 1);

    let loaded = TraceStore::new(&dir).load(&out.run.run_id.to_string()).unwrap();
    let s = loaded.tree.summary();
    assert_eq!(s.counts.runs, 201, "sampled-out runs still appear, summarized");
    assert_eq!(s.counts.failed, 1);
    assert_eq!(s.total_usage, out.total_usage);
    let failed = loaded
        .tree
        .nodes()
        .iter()
        .find(|n| n.status == RunStatus::Failed)
        .unwrap();
    assert!(!failed.summarized, "the failure's own lifecycle was kept");
    assert!(failed.error.as_deref().unwrap().contains("worker failed on task 77"));
    let summarized = loaded.tree.nodes().iter().filter(|n| n.summarized).count();
    assert_eq!(summarized, 200 - 14 - 1);
}

fn write_raw_trace(path: &std::path::Path, lines: &[String]) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = zstd::stream::write::Encoder::new(f, 3).unwrap();
    for l in lines {
        enc.write_all(l.as_bytes()).unwrap();
        enc.write_all(b"\n").unwrap();
    }
    enc.finish().unwrap();
}

fn header(root: RunId, version: u32) -> String {
    serde_json::json!({
        "type": "trace_header", "format": "tinyagents-trace", "version": version,
        "root_run_id": root, "detail": "lifecycle", "created_us": 1
    })
    .to_string()
}

fn event_line(root: RunId, run: RunId, parent: Option<RunId>, depth: u32, seq: u64, kind: EventKind) -> String {
    serde_json::to_string(&Event {
        root_run_id: root,
        parent_run_id: parent,
        run_id: run,
        depth,
        seq,
        timestamp_us: 1_000_000 + seq * 1000,
        kind,
    })
    .unwrap()
}

/// Records a root `boss` with `batches` batches of `per_batch` finished
/// workers, flushing after each batch, then ends the root and closes the sink.
/// Returns the root and the trace file's length after each flush.
fn record_workers_in_flushed_batches(dir: &std::path::Path, batches: usize, per_batch: usize) -> (RunId, Vec<usize>) {
    let sink = TraceSink::new(TraceConfig::new(dir)).unwrap();
    let root = RunContext::root("boss", &RunConfig::new().sink(sink.clone()));
    let path = TraceStore::new(dir).trace_path(root.run_id());
    root.emit(EventKind::RunStarted { name: "boss".into() });
    let mut flushed_lengths = Vec::new();
    for _batch in 0..batches {
        for _ in 0..per_batch {
            let w = root
                .spawn_child(
                    "worker",
                    &tinyagents_core::RunLimits::new(),
                    tinyagents_core::ChildEvents::Parent,
                )
                .unwrap();
            w.emit(EventKind::RunStarted { name: "worker".into() });
            w.emit(run_completed());
        }
        sink.flush().unwrap();
        flushed_lengths.push(std::fs::metadata(&path).unwrap().len() as usize);
    }
    root.emit(run_completed());
    sink.close().unwrap();
    (root.run_id(), flushed_lengths)
}

#[test]
fn a_truncated_trace_yields_its_readable_prefix_and_a_truncation_error() {
    let dir = temp_dir("truncated");
    // Ten flushed batches of ten workers: a crash loses at most the last.
    let (root, _) = record_workers_in_flushed_batches(&dir, 10, 10);
    let store = TraceStore::new(&dir);
    let path = store.trace_path(root);
    let full = std::fs::read(&path).unwrap();
    // A cut between two zstd frames leaves a well-formed file (see
    // `a_trace_cut_between_two_batches_reads_as_a_run_that_never_ended`):
    // cut inside one, as a torn write or a partial copy does. Where the 70 %
    // mark falls depends on how the writer batched, so step off a boundary.
    let mut cut = full.len() * 7 / 10;
    if full[cut..].starts_with(&ZSTD_MAGIC) {
        cut -= 1;
    }
    std::fs::write(&path, &full[..cut]).unwrap();
    std::fs::remove_file(dir.join(format!("{root}.meta.json"))).unwrap();

    let loaded = store.load(&root.to_string()).unwrap();
    assert_eq!(loaded.damage.len(), 1, "{:?}", loaded.damage);
    assert!(
        matches!(loaded.damage[0], TraceError::Truncated { .. }),
        "{}",
        loaded.damage[0]
    );
    assert!(loaded.damage[0].to_string().contains("truncated"));
    let s = loaded.tree.summary();
    assert!(
        s.counts.runs > 10 && s.counts.runs < 101,
        "prefix has {} runs",
        s.counts.runs
    );
    assert_eq!(
        s.counts.completed,
        s.counts.runs - 1,
        "every worker read has its end; the root has not"
    );
    assert_eq!(loaded.tree.root().unwrap().name.as_ref(), "boss");
    // `trace list` rebuilds the summary and says the trace is damaged.
    let listed = store.list().unwrap();
    assert!(listed[0].rebuilt);
    assert_eq!(
        listed[0].manifest.status,
        TraceStatus::Interrupted,
        "its root never ended and no sink writes it"
    );
    assert!(listed[0].damage[0].contains("truncated"));
    // Cut before the first flushed block: a truncation, not "not a trace".
    std::fs::write(&path, &full[..8]).unwrap();
    let err = store.load(&root.to_string()).unwrap_err();
    assert!(matches!(err, TraceError::Truncated { after_lines: 0, .. }), "{err}");
}

/// The first four bytes of every zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

#[test]
fn a_trace_cut_between_two_batches_reads_as_a_run_that_never_ended() {
    let dir = temp_dir("cut_between_frames");
    let (root, flushed_lengths) = record_workers_in_flushed_batches(&dir, 4, 5);
    let store = TraceStore::new(&dir);
    let path = store.trace_path(root);
    let full = std::fs::read(&path).unwrap();
    // A crash after the second flush: the file ends where a frame does.
    let cut = flushed_lengths[1];
    assert!(full[cut..].starts_with(&ZSTD_MAGIC), "a flush ends a frame");
    std::fs::write(&path, &full[..cut]).unwrap();
    std::fs::remove_file(dir.join(format!("{root}.meta.json"))).unwrap();

    // Nothing is damaged: every byte is a whole frame. What was flushed is all
    // there, and the root shows as not ended rather than as finished.
    let loaded = store.load(&root.to_string()).unwrap();
    assert!(loaded.damage.is_empty(), "{:?}", loaded.damage);
    let s = loaded.tree.summary();
    assert_eq!(s.counts.runs, 11, "the root and the ten workers flushed before the cut");
    assert_eq!(s.counts.completed, 10);
    let listed = store.list().unwrap();
    assert!(listed[0].rebuilt);
    assert_eq!(listed[0].manifest.status, TraceStatus::Interrupted);
    assert_eq!(listed[0].manifest.status.as_str(), "interrupted");
    // Unlike a running trace, an interrupted one is pruned like any other.
    let report = store
        .prune(&Retention {
            max_age: Some(Duration::ZERO),
            ..Retention::default()
        })
        .unwrap();
    assert_eq!(report.removed.len(), 1, "{report:?}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_corrupt_line_is_reported_and_the_lines_after_it_are_still_read() {
    let dir = temp_dir("corrupt");
    let root = RunId::new();
    let child = RunId::new();
    let lines = vec![
        header(root, 1),
        event_line(root, root, None, 0, 0, EventKind::RunStarted { name: "root".into() }),
        "{\"this is\": not json".to_string(),
        event_line(
            root,
            child,
            Some(root),
            1,
            2,
            EventKind::RunStarted { name: "kid".into() },
        ),
    ];
    let path = dir.join(format!("{root}.jsonl.zst"));
    write_raw_trace(&path, &lines);
    let loaded = TraceStore::new(&dir).load(&root.to_string()).unwrap();
    assert_eq!(loaded.damage.len(), 1);
    match &loaded.damage[0] {
        TraceError::CorruptLine { line, .. } => assert_eq!(*line, 3),
        other => panic!("expected a corrupt line, got {other}"),
    }
    assert_eq!(loaded.tree.len(), 2);
    assert_eq!(loaded.tree.get(child).unwrap().name.as_ref(), "kid");
}

#[test]
fn a_trace_from_a_newer_format_version_is_refused_with_a_clear_error() {
    let dir = temp_dir("newer");
    let root = RunId::new();
    let path = dir.join(format!("{root}.jsonl.zst"));
    write_raw_trace(&path, &[header(root, 99)]);
    let err = TraceStore::new(&dir).load(&root.to_string()).unwrap_err();
    assert!(
        matches!(
            err,
            TraceError::NewerFormat {
                found: 99,
                supported: tinyagents_trace::FORMAT_VERSION,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("newer than this build reads"));
    // Not a trace at all.
    let other = RunId::new();
    std::fs::write(dir.join(format!("{other}.jsonl.zst")), b"plain text").unwrap();
    let err = TraceStore::new(&dir).load(&other.to_string()).unwrap_err();
    assert!(matches!(err, TraceError::NotATrace { .. }), "{err}");
}

#[test]
fn an_unknown_or_ambiguous_run_id_is_a_clear_error() {
    let dir = temp_dir("unknown");
    let store = TraceStore::new(&dir);
    let err = store.load(&RunId::new().to_string()).unwrap_err();
    assert!(matches!(err, TraceError::UnknownRun { .. }), "{err}");
    assert!(err.to_string().contains("trace list"));
    // Two traces from this process share their first 16 hex digits.
    let a = RunId::new();
    let b = RunId::new();
    write_raw_trace(&dir.join(format!("{a}.jsonl.zst")), &[header(a, 1)]);
    write_raw_trace(&dir.join(format!("{b}.jsonl.zst")), &[header(b, 1)]);
    let prefix = &a.to_string()[..16];
    assert!(matches!(
        store.load(prefix).unwrap_err(),
        TraceError::AmbiguousRun { .. }
    ));
    // The short id `trace show` prints resolves.
    assert_eq!(store.resolve(&a.short()).unwrap(), a);
}

#[test]
fn events_of_unknown_kinds_are_carried_through_with_their_rationale() {
    let dir = temp_dir("unknown-kind");
    let root = RunId::new();
    let lines = vec![
        header(root, 1),
        event_line(root, root, None, 0, 0, EventKind::RunStarted { name: "planner".into() }),
        serde_json::json!({
            "root_run_id": root, "parent_run_id": null, "run_id": root, "depth": 0, "seq": 1,
            "timestamp_us": 1_000_500, "type": "graph_superstep", "step": 3,
            "rationale": "split the work by chapter"
        })
        .to_string(),
    ];
    write_raw_trace(&dir.join(format!("{root}.jsonl.zst")), &lines);
    let contents = read_trace(TraceStore::new(&dir).trace_path(root)).unwrap();
    assert!(contents.damage.is_empty());
    match &contents.records[1] {
        Record::Other(o) => {
            assert_eq!(o.kind, "graph_superstep");
            assert_eq!(o.raw["step"], 3);
        }
        other => panic!("expected an unknown record, got {other:?}"),
    }
    let tree = RunTree::from_records(&contents.records);
    let n = tree.root().unwrap();
    assert_eq!(n.other_events, 1);
    assert_eq!(n.rationale.as_deref(), Some("split the work by chapter"));
    let lines = render_tree(&tree, &RenderOptions::full());
    assert!(
        lines.iter().any(|l| l.contains("— split the work by chapter")),
        "{lines:?}"
    );
}

#[test]
fn a_trace_read_while_its_root_ends_is_never_taken_for_interrupted() {
    let dir = temp_dir("ending_while_read");
    let sink = TraceSink::new(TraceConfig::new(&dir)).unwrap();
    for _round in 0..20 {
        let root = RunContext::root("boss", &RunConfig::new().sink(sink.clone()));
        root.emit(EventKind::RunStarted { name: "boss".into() });
        sink.flush().unwrap();
        let id = root.run_id();
        // Reads the entry over and over while the writer ends the root.
        let reader = std::thread::spawn({
            let dir = dir.clone();
            move || {
                let store = TraceStore::new(&dir);
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                loop {
                    match store.entry(id).unwrap().manifest.status {
                        TraceStatus::Running => assert!(std::time::Instant::now() < deadline, "never ended"),
                        TraceStatus::Completed => return,
                        other => panic!("a run that is ending was listed {other:?}"),
                    }
                }
            }
        });
        std::thread::sleep(Duration::from_millis(1));
        root.emit(run_completed());
        reader.join().unwrap();
    }
    sink.close().unwrap();
}

#[test]
fn retention_prunes_oldest_first_by_count_size_and_age_and_reports_every_removal() {
    let dir = temp_dir("retention");
    let sink = TraceSink::new(TraceConfig::new(&dir)).unwrap();
    let ids: Vec<RunId> = (0..5)
        .map(|i| {
            let id = finished_root(&sink, &format!("run{i}"));
            std::thread::sleep(Duration::from_millis(2));
            id
        })
        .collect();
    // A run still going is never pruned.
    let running = RunContext::root("still-going", &RunConfig::new().sink(sink.clone()));
    running.emit(EventKind::RunStarted {
        name: "still-going".into(),
    });
    sink.flush().unwrap();
    let store = TraceStore::new(&dir);
    assert_eq!(store.list().unwrap().len(), 6);

    let report = store
        .prune(&Retention {
            max_traces: Some(3),
            ..Retention::default()
        })
        .unwrap();
    let removed: Vec<RunId> = report.removed.iter().map(|p| p.root_run_id).collect();
    // The running trace counts toward the three kept; the two oldest go... and the third.
    assert_eq!(removed, ids[..3].to_vec());
    assert!(report.removed.iter().all(|p| p.reason == "max_traces" && p.bytes > 0));
    assert_eq!(report.kept, 3);
    assert!(report.lines().last().unwrap().contains("pruned 3 trace(s)"));
    assert!(!store.trace_path(ids[0]).exists());

    let one = store
        .list()
        .unwrap()
        .iter()
        .map(|e| std::fs::metadata(&e.path).unwrap().len())
        .max()
        .unwrap();
    let report = store
        .prune(&Retention {
            max_total_bytes: Some(one * 3 + 2048),
            ..Retention::default()
        })
        .unwrap();
    assert!(report.removed.len() <= 1);
    let report = store
        .prune(&Retention {
            max_age: Some(Duration::ZERO),
            ..Retention::default()
        })
        .unwrap();
    assert!(report.removed.iter().all(|p| p.reason == "max_age"));
    let left = store.list().unwrap();
    assert_eq!(left.len(), 1, "only the running trace is left");
    assert_eq!(left[0].manifest.root_run_id, running.run_id());
    assert_eq!(left[0].manifest.status, TraceStatus::Running);
    sink.close().unwrap();
}

#[test]
fn ten_thousand_agents_render_in_a_few_lines_with_counts_progress_and_every_failure_visible() {
    let root = RunId::new();
    let mut events = Vec::new();
    let mut seq = 0;
    let mut ev = |run, parent, depth, kind| {
        seq += 1;
        events.push(Event {
            root_run_id: root,
            parent_run_id: parent,
            run_id: run,
            depth,
            seq,
            timestamp_us: 1_000_000 + seq,
            kind,
        });
    };
    let done = |u| EventKind::RunCompleted {
        usage: tinyagents_core::Usage::call(u, 1),
        total_usage: tinyagents_core::Usage::call(u, 1),
        total_cost: Default::default(),
        failures: 0,
    };
    ev(root, None, 0, EventKind::RunStarted { name: "root".into() });
    for i in 0..10_000u64 {
        let id = RunId::new();
        ev(id, Some(root), 1, EventKind::RunStarted { name: "worker".into() });
        match i {
            4_321 => ev(
                id,
                Some(root),
                1,
                EventKind::RunFailed {
                    error: "rate limited".into(),
                    total_usage: Default::default(),
                    total_cost: Default::default(),
                },
            ),
            i if i >= 9_000 => {}
            _ => ev(id, Some(root), 1, done(10)),
        }
    }
    let tree = RunTree::from_events(&events);
    let lines = render_tree(&tree, &RenderOptions::default());
    assert!(lines.len() <= 30, "{} lines", lines.len());
    assert!(
        lines[0].contains("10,001 runs (8,999 done, 1 failed, 1,001 running)"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("89% (9,000/10,001 finished)"), "{}", lines[1]);
    assert!(lines.iter().any(|l| l.contains("ERROR: rate limited")));
    assert!(
        lines.iter().any(|l| l.contains("more children (9,975 runs")),
        "{lines:#?}"
    );
    // Colour only when asked.
    assert!(!lines.iter().any(|l| l.contains('\x1b')));
    let colored = render_tree(
        &tree,
        &RenderOptions {
            color: true,
            ..RenderOptions::default()
        },
    );
    assert!(
        colored
            .iter()
            .any(|l| l.starts_with("  \x1b[31m") || l.contains("\x1b[31m"))
    );
}

#[test]
fn a_ten_thousand_deep_chain_renders_without_recursion_and_stops_indenting() {
    let root = RunId::new();
    let mut events = Vec::new();
    let mut parent = None;
    let mut run = root;
    for d in 0..10_000u32 {
        events.push(Event {
            root_run_id: root,
            parent_run_id: parent,
            run_id: run,
            depth: d,
            seq: u64::from(d),
            timestamp_us: 1,
            kind: EventKind::RunStarted {
                name: format!("a{d}").into(),
            },
        });
        parent = Some(run);
        run = RunId::new();
    }
    let tree = RunTree::from_events(&events);
    let lines = render_tree(&tree, &RenderOptions::default());
    assert_eq!(lines.len(), 2 + 10_000);
    assert!(
        lines.last().unwrap().contains("·9999 ▶ a9999"),
        "{}",
        lines.last().unwrap()
    );
    let json = serde_json::to_string(&tree.to_json()).unwrap();
    assert!(json.len() > 10_000);
}

#[test]
fn a_finished_subtree_collapses_to_one_line() {
    let dir = temp_dir("collapse");
    let sink = TraceSink::new(TraceConfig::new(&dir)).unwrap();
    let agent = tree(0, 2, 6, Arc::new(AtomicU64::new(0)), &Wrap::none());
    let out = rt()
        .block_on(agent.run_with(&RunConfig::new().sink(sink.clone()), "go"))
        .unwrap();
    sink.close().unwrap();
    let loaded = TraceStore::new(&dir).load(&out.run.run_id.to_string()).unwrap();
    let lines = render_tree(
        &loaded.tree,
        &RenderOptions {
            collapse_finished_over: 5,
            ..RenderOptions::default()
        },
    );
    // Header + root + 6 collapsed children (each has 6 leaves: 7 runs > 5).
    assert_eq!(lines.len(), 2 + 1 + 6, "{lines:#?}");
    assert!(lines[3].contains("(+6 runs below, collapsed)"));
    let msg = Message::user("x");
    assert_eq!(msg.role(), "user");
}

#[test]
fn the_compact_event_writer_produces_lines_the_reader_reads_back_identically() {
    use tinyagents_core::{Cost, LimitKind, ModelDelta, Usage};
    let root = RunId::new();
    let kinds = vec![
        EventKind::RunStarted { name: "plain".into() },
        EventKind::RunStarted {
            name: "quote \" backslash \\ newline \n tab \t ünïcode ✓".into(),
        },
        EventKind::RunCompleted {
            usage: Usage::call(3, 4),
            total_usage: Usage {
                input_tokens: 10,
                output_tokens: 0,
                cached_input_tokens: 7,
                requests: 2,
                ..Usage::default()
            },
            total_cost: Cost(123_456_789),
            failures: 2,
        },
        EventKind::RunCompleted {
            usage: Usage::default(),
            total_usage: Usage::default(),
            total_cost: Cost::ZERO,
            failures: 0,
        },
        EventKind::RunFailed {
            error: "bad \"thing\"\n".into(),
            total_usage: Usage::call(1, 1),
            total_cost: Cost(9),
        },
        EventKind::SubAgentStarted {
            name: "kid".into(),
            child_run_id: RunId::new(),
            child_depth: 3,
        },
        EventKind::SubAgentCompleted {
            name: "kid".into(),
            child_run_id: RunId::from_u128(u128::MAX),
            child_depth: 3,
            ok: false,
            usage: Usage::call(5, 6),
            cost: Cost(u64::MAX),
        },
        EventKind::ModelDelta {
            turn: 1,
            delta: ModelDelta::Text { text: "x".into() },
        },
        EventKind::BudgetExceeded {
            limit: LimitKind::Depth,
        },
        EventKind::ToolCallCompleted {
            call_id: "c".into(),
            tool: "t".into(),
            error: None,
        },
    ];
    let t0 = 1_700_000_000_000_000;
    let header = tinyagents_trace::TraceHeader::new(root, tinyagents_trace::DetailLevel::Lifecycle, t0);
    let mut writer = tinyagents_trace::format::LineCursor::of(&header);
    let mut reader = tinyagents_trace::reader::LineReader::new(&header);
    let mut v1_bytes = 0;
    let mut v2_bytes = 0;
    let (mut whole, mut deltas) = (0, 0);
    // Round after round, so whole (`s`) and delta (`ds`) lines both come,
    // with full-form lines between them.
    let n = kinds.len();
    for (i, kind) in kinds.into_iter().cycle().take(n * 8).enumerate() {
        let e = Event {
            root_run_id: root,
            // Parents of this process (compact ids), of another (full ids) and none.
            parent_run_id: match i % 3 {
                0 => None,
                1 => Some(RunId::from_u128(0)),
                _ => Some(RunId::new()),
            },
            run_id: if i % 4 == 3 { RunId::from_u128(7) } else { RunId::new() },
            depth: i as u32,
            // Up, down and across the wrap.
            seq: if i % 5 == 0 { i as u64 } else { u64::MAX - i as u64 },
            // Before and after the header's time.
            timestamp_us: if i % 2 == 0 {
                t0 + i as u64
            } else {
                t0 - 1_000 * i as u64
            },
            kind,
        };
        let mut line = Vec::new();
        tinyagents_trace::format::write_event_line(&mut line, &e, &mut writer).unwrap();
        let text = String::from_utf8_lossy(&line).to_string();
        if text.contains("\"ds\":") {
            deltas += 1;
        } else {
            whole += 1;
        }
        let back = reader.parse(&line).unwrap_or_else(|err| panic!("{err}: {text}"));
        assert_eq!(back, tinyagents_trace::Record::Event(e.clone()), "{text}");
        // The full form (version 1, and redacted lines) is read in a compact trace too.
        let full = serde_json::to_vec(&e).unwrap();
        assert_eq!(reader.parse(&full).unwrap(), tinyagents_trace::Record::Event(e.clone()));
        v1_bytes += full.len();
        v2_bytes += line.len();
    }
    assert!(
        whole >= 2 && deltas > whole,
        "{whole} whole lines, {deltas} delta lines"
    );
    assert!(v2_bytes * 2 < v1_bytes, "compact {v2_bytes} B vs full {v1_bytes} B");
}

#[test]
fn a_corrupt_delta_line_is_reported_and_the_tree_after_it_stays_exact() {
    let root = RunId::new();
    let t0 = 1_700_000_000_000_000;
    let header = tinyagents_trace::TraceHeader::new(root, tinyagents_trace::DetailLevel::Lifecycle, t0);
    let mut writer = tinyagents_trace::format::LineCursor::of(&header);
    let events: Vec<Event> = (0..200u64)
        .map(|i| Event {
            root_run_id: root,
            parent_run_id: Some(root),
            run_id: RunId::new(),
            depth: 1,
            seq: i,
            timestamp_us: t0 + 3 * i,
            kind: EventKind::RunStarted {
                name: format!("w{i}").into(),
            },
        })
        .collect();
    let lines: Vec<Vec<u8>> = events
        .iter()
        .map(|e| {
            let mut l = Vec::new();
            tinyagents_trace::format::write_event_line(&mut l, e, &mut writer).unwrap();
            l
        })
        .collect();
    // Lines 0, 64, 128 and 192 are whole; line 70 is lost.
    assert!(String::from_utf8_lossy(&lines[64]).contains("\"s\":64"));
    assert!(String::from_utf8_lossy(&lines[70]).contains("\"ds\":1"));
    let mut reader = tinyagents_trace::reader::LineReader::new(&header);
    for (i, line) in lines.iter().enumerate() {
        let parsed = if i == 70 {
            reader.parse(b"{\"r\": garbage")
        } else {
            reader.parse(line)
        };
        match (i, parsed) {
            (70, Err(e)) => assert!(e.contains("may be off"), "{e}"),
            (70, Ok(r)) => panic!("garbage parsed as {r:?}"),
            (_, Ok(tinyagents_trace::Record::Event(back))) => {
                // Ids, parents, names: exact everywhere.
                assert_eq!(
                    (back.run_id, back.parent_run_id, &back.kind),
                    (events[i].run_id, events[i].parent_run_id, &events[i].kind)
                );
                if (71..128).contains(&i) {
                    // Short by the lost line's step until the next whole line.
                    assert_eq!(back.seq + 1, events[i].seq, "line {i}");
                    assert_eq!(back.timestamp_us + 3, events[i].timestamp_us, "line {i}");
                } else {
                    assert_eq!(back, events[i], "line {i}");
                }
            }
            (_, other) => panic!("line {i}: {other:?}"),
        }
    }
}

#[test]
fn the_parents_repeated_view_of_a_child_is_left_out_unless_the_child_is_silent() {
    let dir = temp_dir("elide");
    let sink = TraceSink::new(TraceConfig::new(&dir)).unwrap();
    let agent = fan_out(3, &[], &Wrap::none());
    let out = rt()
        .block_on(agent.run_with(&RunConfig::new().sink(sink.clone()), "go"))
        .unwrap();
    // A child whose own events go nowhere: only the parent's view exists.
    let silent = RunContext::root("solo", &RunConfig::new().sink(sink.clone()));
    silent.emit(EventKind::RunStarted { name: "solo".into() });
    let kid = silent
        .spawn_child(
            "quiet",
            &tinyagents_core::RunLimits::new(),
            tinyagents_core::ChildEvents::Discard,
        )
        .unwrap();
    silent.emit(EventKind::SubAgentStarted {
        name: "quiet".into(),
        child_run_id: kid.run_id(),
        child_depth: 1,
    });
    silent.emit(EventKind::SubAgentCompleted {
        name: "quiet".into(),
        child_run_id: kid.run_id(),
        child_depth: 1,
        ok: true,
        usage: tinyagents_core::Usage::call(4, 4),
        cost: Default::default(),
    });
    silent.emit(EventKind::RunCompleted {
        usage: Default::default(),
        total_usage: tinyagents_core::Usage::call(4, 4),
        total_cost: Default::default(),
        failures: 0,
    });
    let report = sink.close().unwrap();
    let store = TraceStore::new(&dir);
    let kinds = |id: RunId| -> Vec<String> { record_kinds(&store.trace_path(id)) };
    let k = kinds(out.run.run_id);
    assert!(!k.iter().any(|t| t.starts_with("sub_agent")), "{k:?}");
    assert_eq!(k.iter().filter(|t| *t == "run_started").count(), 4);
    assert_eq!(
        kinds(silent.run_id()),
        [
            "run_started",
            "sub_agent_started",
            "sub_agent_completed",
            "run_completed"
        ]
    );
    let m = report.roots.iter().find(|m| m.root_run_id == out.run.run_id).unwrap();
    assert_eq!(m.agents, 4);
    let quiet = store.load(&silent.run_id().to_string()).unwrap();
    let node = quiet.tree.get(kid.run_id()).unwrap();
    assert!(node.summarized);
    assert_eq!(node.total_usage.total_tokens(), 8);
    // With elision off every event is written.
    let dir2 = temp_dir("no-elide");
    let sink = TraceSink::new(TraceConfig::new(&dir2).elide_parent_view(false)).unwrap();
    let out = rt()
        .block_on(fan_out(3, &[], &Wrap::none()).run_with(&RunConfig::new().sink(sink.clone()), "go"))
        .unwrap();
    sink.close().unwrap();
    let all = record_kinds(&TraceStore::new(&dir2).trace_path(out.run.run_id));
    assert_eq!(all.iter().filter(|k| k.starts_with("sub_agent_")).count(), 6);
}

#[test]
fn a_version_2_trace_is_read_and_late_events_are_appended_in_its_own_form() {
    use tinyagents_core::{Cost, Usage};
    let dir = temp_dir("v2");
    let root = RunId::new();
    let high = root.as_u128() >> 64 << 64;
    let low = root.as_u128() as u64;
    let kid = RunId::from_u128(high | 12_345);
    let path = dir.join(format!("{root}.jsonl.zst"));
    // What a version 2 writer wrote: whole `s` and `t`, every `rc` field.
    write_raw_trace(
        &path,
        &[
            header(root, 2),
            format!(r#"{{"r":{low},"s":0,"t":5,"k":"rs","n":"boss"}}"#),
            format!(r#"{{"r":12345,"p":{low},"d":1,"s":1,"t":9,"k":"rs","n":"kid"}}"#),
            format!(r#"{{"r":12345,"p":{low},"d":1,"s":2,"t":20,"k":"rc","u":[3,4],"tu":[3,4],"c":7,"f":0}}"#),
        ],
    );
    let usage = Usage {
        input_tokens: 3,
        output_tokens: 4,
        ..Usage::default()
    };
    let event = |run: RunId, seq: u64, kind: EventKind| Event {
        root_run_id: root,
        parent_run_id: (run != root).then_some(root),
        run_id: run,
        depth: u32::from(run != root),
        seq,
        // The header's `created_us` is 1.
        timestamp_us: 1 + [5, 9, 20, 30, 31, 40][seq as usize],
        kind,
    };
    let mut expected = vec![
        event(root, 0, EventKind::RunStarted { name: "boss".into() }),
        event(kid, 1, EventKind::RunStarted { name: "kid".into() }),
        event(
            kid,
            2,
            EventKind::RunCompleted {
                usage,
                total_usage: usage,
                total_cost: Cost(7),
                failures: 0,
            },
        ),
    ];
    let records = |c: tinyagents_trace::TraceContents| -> Vec<Event> {
        assert!(c.damage.is_empty(), "{:?}", c.damage);
        c.records
            .into_iter()
            .map(|r| match r {
                Record::Event(e) => e,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(records(read_trace(&path).unwrap()), expected);

    // Late events: appended as version 2 lines (no deltas), still read exactly.
    let late = RunId::from_u128(high | 12_346);
    expected.extend([
        event(late, 3, EventKind::RunStarted { name: "late".into() }),
        event(
            late,
            4,
            EventKind::RunCompleted {
                usage,
                total_usage: usage,
                total_cost: Cost::ZERO,
                failures: 0,
            },
        ),
        event(
            root,
            5,
            EventKind::RunCompleted {
                usage: Usage::default(),
                total_usage: usage,
                total_cost: Cost(7),
                failures: 0,
            },
        ),
    ]);
    let sink = TraceSink::new(TraceConfig::new(&dir)).unwrap();
    for e in &expected[3..] {
        sink.emit(e.clone());
    }
    sink.close().unwrap();
    assert_eq!(records(read_trace(&path).unwrap()), expected);
    let text = String::from_utf8(zstd::stream::decode_all(std::fs::File::open(&path).unwrap()).unwrap()).unwrap();
    assert!(
        text.contains(r#""s":5"#) && !text.contains(r#""ds""#) && !text.contains(r#""rr""#),
        "{text}"
    );
    assert!(
        text.contains(r#""version":2"#),
        "the header is the original one: {text}"
    );
}

#[test]
fn lifecycle_events_staged_by_many_threads_all_reach_the_trace_and_the_roots_end_comes_last() {
    use tinyagents_core::{ChildEvents, Cost, Usage};
    let dir = temp_dir("staged");
    let sink = TraceSink::new(TraceConfig::new(&dir)).unwrap();
    let root = RunContext::root("boss", &RunConfig::new().sink(sink.clone() as Arc<dyn EventSink>));
    root.emit(EventKind::RunStarted { name: "boss".into() });
    let done = EventKind::RunCompleted {
        usage: Usage::call(1, 1),
        total_usage: Usage::call(1, 1),
        total_cost: Cost::ZERO,
        failures: 0,
    };
    let child = |root: &RunContext, name: String, end: bool| {
        let kid = root
            .spawn_child(name, &Default::default(), ChildEvents::Parent)
            .unwrap();
        kid.emit(EventKind::RunStarted {
            name: kid.name().clone(),
        });
        if end {
            kid.emit(done.clone());
        }
    };
    // Threads that stage less than a batch, exactly one, and several.
    let counts = [3usize, 150, 10, 32];
    std::thread::scope(|s| {
        for (t, &n) in counts.iter().enumerate() {
            let (root, child) = (&root, &child);
            s.spawn(move || (0..n).for_each(|i| child(root, format!("t{t}-{i}"), true)));
        }
    });
    // `flush` takes what is still staged.
    sink.flush().unwrap();
    let mut follower = tinyagents_trace::TraceFollower::new(TraceStore::new(&dir).location(root.run_id()));
    assert_eq!(follower.poll().unwrap().len(), 1 + 2 * 195);

    // A thread that staged one start and exited: the writer's next wake-up
    // takes it, with no flush.
    std::thread::scope(|s| {
        s.spawn(|| child(&root, "lone".into(), false));
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = follower.poll().unwrap();
        if !got.is_empty() {
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].run_id().map(|r| r != root.run_id()), Some(true));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a staged event never reached the file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Staged and not flushed when the root ends: written before its end.
    std::thread::scope(|s| {
        s.spawn(|| child(&root, "last".into(), true));
    });
    root.emit(done.clone());
    let report = sink.close().unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let contents = read_trace(TraceStore::new(&dir).trace_path(root.run_id())).unwrap();
    assert!(contents.damage.is_empty(), "{:?}", contents.damage);
    match contents.records.last() {
        Some(Record::Event(e)) => {
            assert!(e.run_id == root.run_id() && matches!(e.kind, EventKind::RunCompleted { .. }))
        }
        other => panic!("the last record is {other:?}"),
    }
    let tree = RunTree::from_records(&contents.records);
    let s = tree.summary();
    assert_eq!(s.counts.runs, 1 + 195 + 2);
    assert_eq!(s.counts.completed, 1 + 195 + 1, "every staged end arrived");
    assert_eq!(report.roots[0].agents, 1 + 195 + 2);

    // After close, an event is counted as dropped, not lost silently.
    let before = sink.dropped_events();
    child(&root, "too late".into(), true);
    assert_eq!(sink.dropped_events(), before + 2);
}

#[test]
fn numbers_of_every_length_survive_a_compact_line() {
    let root = RunId::new();
    let header = tinyagents_trace::TraceHeader::new(root, tinyagents_trace::DetailLevel::Lifecycle, 1_000);
    let mut writer = tinyagents_trace::format::LineCursor::of(&header);
    let mut reader = tinyagents_trace::reader::LineReader::new(&header);
    let mut values: Vec<u64> = (0..=1_100).collect();
    for k in 1..=19u32 {
        let p = 10u64.pow(k);
        values.extend([p - 1, p, p + 1, p + p / 2 + 7]);
    }
    values.extend([u64::from(u32::MAX), u64::MAX / 3, u64::MAX - 1, u64::MAX]);
    let high = root.as_u128() >> 64 << 64;
    for (i, &v) in values.iter().enumerate() {
        let e = Event {
            root_run_id: root,
            // The low half of an id is written as a number.
            parent_run_id: Some(RunId::from_u128(high | u128::from(v))),
            run_id: RunId::from_u128(high | u128::from(v.wrapping_mul(7_919))),
            depth: u32::try_from(v).unwrap_or(u32::MAX),
            seq: v,
            timestamp_us: v,
            kind: EventKind::RunCompleted {
                usage: tinyagents_core::Usage::call(v, v / 3),
                total_usage: tinyagents_core::Usage::call(v, v / 3),
                total_cost: tinyagents_core::Cost(v),
                failures: u32::try_from(i).unwrap_or(0),
            },
        };
        let mut line = Vec::new();
        tinyagents_trace::format::write_event_line(&mut line, &e, &mut writer).unwrap();
        let text = String::from_utf8(line.clone()).unwrap();
        assert_eq!(reader.parse(&line).unwrap(), Record::Event(e), "{v}: {text}");
        assert!(text.contains(&format!("\"p\":{v}")), "{text}");
    }
}

#[test]
fn a_thread_emitting_to_many_open_sinks_loses_nothing() {
    use tinyagents_core::{ChildEvents, Cost, Usage};
    // More sinks than a thread stages for: the rest are sent to one by one.
    let dirs: Vec<_> = (0..12).map(|i| temp_dir(&format!("many-sinks-{i}"))).collect();
    let sinks: Vec<_> = dirs
        .iter()
        .map(|d| TraceSink::new(TraceConfig::new(d)).unwrap())
        .collect();
    let roots: Vec<_> = sinks
        .iter()
        .map(|s| RunContext::root("boss", &RunConfig::new().sink(s.clone() as Arc<dyn EventSink>)))
        .collect();
    let done = EventKind::RunCompleted {
        usage: Usage::call(1, 1),
        total_usage: Usage::call(1, 1),
        total_cost: Cost::ZERO,
        failures: 0,
    };
    for round in 0..3 {
        for root in &roots {
            if round == 0 {
                root.emit(EventKind::RunStarted { name: "boss".into() });
            }
            for i in 0..10 {
                let kid = root
                    .spawn_child(format!("w{round}-{i}"), &Default::default(), ChildEvents::Parent)
                    .unwrap();
                kid.emit(EventKind::RunStarted {
                    name: kid.name().clone(),
                });
                kid.emit(done.clone());
            }
        }
    }
    for (root, sink) in roots.iter().zip(&sinks) {
        root.emit(done.clone());
        let report = sink.close().unwrap();
        assert_eq!(report.dropped_events, 0);
        assert_eq!(report.roots[0].agents, 1 + 30);
        assert_eq!(report.roots[0].events, 2 + 60);
    }
    for (dir, root) in dirs.iter().zip(&roots) {
        let loaded = TraceStore::new(dir).load(&root.run_id().to_string()).unwrap();
        assert_eq!(loaded.tree.summary().counts.completed, 31);
    }
}

#[test]
fn a_sub_agents_start_and_end_in_a_row_are_one_rr_line_read_back_as_both_events() {
    use tinyagents_core::{ChildEvents, Cost, Usage};
    let dir = temp_dir("rr");
    // No periodic flush while the events come: a flush writes a held start
    // alone, and where one falls would depend on timing.
    let sink = TraceSink::new(TraceConfig::new(&dir).flush_interval(Duration::from_secs(3600))).unwrap();
    let live = CollectingSink::new();
    let config = RunConfig::new().sink(Arc::new(TeeSink(sink.clone(), live.clone())));
    let root = RunContext::root("boss", &config);
    root.emit(EventKind::RunStarted { name: "boss".into() });
    let done = |n: u64| EventKind::RunCompleted {
        usage: Usage::call(n, 1),
        total_usage: Usage::call(n, 2),
        total_cost: Cost(n),
        failures: 0,
    };
    let kid = |name: String| {
        root.spawn_child(name, &Default::default(), ChildEvents::Parent)
            .unwrap()
    };
    for i in 0..200u64 {
        let a = kid(format!("a{i}"));
        a.emit(EventKind::RunStarted { name: a.name().clone() });
        a.emit(done(i));
        if i % 50 == 0 {
            // Two runs interleaved: their starts are written alone.
            let (b, c) = (kid(format!("b{i}")), kid(format!("c{i}")));
            b.emit(EventKind::RunStarted { name: b.name().clone() });
            c.emit(EventKind::RunStarted { name: c.name().clone() });
            b.emit(done(1));
            c.emit(done(2));
        }
    }
    root.emit(done(0));
    let report = sink.close().unwrap();
    let path = TraceStore::new(&dir).trace_path(root.run_id());
    let text = String::from_utf8(zstd::stream::decode_all(std::fs::File::open(&path).unwrap()).unwrap()).unwrap();
    let merged = text.matches(r#""k":"rr""#).count();
    assert!(merged >= 200, "{merged} rr lines");
    assert!(
        text.matches(r#""k":"rs""#).count() >= 8,
        "interleaved starts stay alone"
    );
    // Every event comes back exactly, in order, and the counts are events.
    let seen: Vec<Event> = live
        .events()
        .into_iter()
        .filter(|e| keeps(DetailLevel::Lifecycle, &e.kind))
        .collect();
    let contents = read_trace(&path).unwrap();
    assert!(contents.damage.is_empty(), "{:?}", contents.damage);
    let read: Vec<Event> = contents
        .records
        .into_iter()
        .map(|r| match r {
            Record::Event(e) => e,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(read, seen);
    assert_eq!(report.roots[0].events, seen.len() as u64);
    assert!(
        report.lines < seen.len() as u64 * 3 / 4,
        "{} lines for {} events",
        report.lines,
        seen.len()
    );
    // A follower reads the same.
    let mut follower = tinyagents_trace::TraceFollower::new(TraceStore::new(&dir).location(root.run_id()));
    let followed: Vec<Record> = follower.poll().unwrap();
    assert_eq!(followed.len(), seen.len());
    assert!(follower.root_ended());
}
