//! Trace sink benchmarks.
//!
//! * `emit/*`: nanoseconds per `emit` with the trace sink on (sustained: the
//!   writer thread runs concurrently, so a full queue shows up here).
//! * `bytes_per_event`: printed once: compressed bytes per event of a
//!   10,000-worker fan-out at lifecycle level.
//! * `tree/*`: a 2-level run of `TA_BENCH_FANOUT`² sub-agents (default
//!   100 × 100 = 10,000) through the real harness with `ScriptedModel`:
//!   with no sink, with the lifecycle events built and dropped (on the spot,
//!   and after a one-by-one handoff to another thread) and with the trace
//!   sink, in interleaved rounds (median, minimum and mean;
//!   `TA_BENCH_ROUNDS` sets their number, `TA_BENCH_VERBOSE=1` prints every
//!   run). `TA_BENCH_FANOUT=1000` runs the 1,000,000-sub-agent comparison
//!   of BENCHMARKS.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tinyagents_core::{
    Event, EventKind, EventSink, Message, ModelRequest, ModelResponse, NullSink, RunConfig, RunId, RunLimits,
    SharedSink, ToolCall, Usage,
};
use tinyagents_harness::{Agent, SubAgent};
use tinyagents_providers::ScriptedModel;
use tinyagents_trace::{TraceConfig, TraceSink};

/// The sink's configuration; `TA_BENCH_ZSTD_LEVEL` overrides the zstd level.
fn config(dir: &std::path::Path) -> TraceConfig {
    let c = TraceConfig::new(dir);
    match std::env::var("TA_BENCH_ZSTD_LEVEL").ok().and_then(|v| v.parse().ok()) {
        Some(level) => c.compression_level(level),
        None => c,
    }
}

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ta-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn event(root: RunId, run: RunId, seq: u64, kind: EventKind) -> Event {
    Event {
        root_run_id: root,
        parent_run_id: Some(root),
        run_id: run,
        depth: 1,
        seq,
        timestamp_us: 1_700_000_000_000_000 + seq,
        kind,
    }
}

fn emit(c: &mut Criterion) {
    let d = dir("emit");
    let sink = TraceSink::new(config(&d)).unwrap();
    let root = RunId::new();
    let run = RunId::new();
    let name: Arc<str> = "worker".into();
    let mut seq = 0u64;
    let mut g = c.benchmark_group("emit");
    // Hot path while the writer keeps up: bursts of 10,000 events (well
    // under the queue's capacity), the drain after each burst untimed.
    g.bench_function("lifecycle_event_sink_on_burst", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(10_000);
                let t = Instant::now();
                for _ in 0..n {
                    seq += 1;
                    sink.emit(event(root, run, seq, EventKind::RunStarted { name: name.clone() }));
                }
                total += t.elapsed();
                sink.flush().unwrap();
                left -= n;
            }
            total
        })
    });
    // Sustained: emitting flat out, so the writer thread (serialize +
    // compress) is the limit and a full queue makes emitters wait.
    g.bench_function("lifecycle_event_sink_on_sustained", |b| {
        b.iter(|| {
            seq += 1;
            sink.emit(event(root, run, seq, EventKind::RunStarted { name: name.clone() }));
        })
    });
    g.bench_function("delta_filtered_at_lifecycle", |b| {
        let text: Arc<str> = "tok".into();
        b.iter(|| {
            seq += 1;
            sink.emit(event(
                root,
                run,
                seq,
                EventKind::ModelDelta {
                    turn: 0,
                    delta: tinyagents_core::ModelDelta::Text { text: text.clone() },
                },
            ));
        })
    });
    g.bench_function("null_sink_for_reference", |b| {
        let null = NullSink;
        b.iter(|| {
            seq += 1;
            if null.enabled() {
                null.emit(event(root, run, seq, EventKind::RunStarted { name: name.clone() }));
            }
        })
    });
    g.finish();
    sink.close().unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

fn after_tools(req: &ModelRequest) -> bool {
    matches!(req.messages.last(), Some(Message::Tool { .. }))
}

/// root → `fan` mids → `fan` leaves each.
fn two_level(fan: usize) -> Agent {
    let leaf = Agent::builder("leaf")
        .model(ScriptedModel::cycle([ModelResponse::text("ok").with_usage(Usage::call(10, 2))]).without_recording())
        .build();
    let fanout = move |child: &'static str| {
        ScriptedModel::from_fn(move |req| {
            Ok(if after_tools(req) {
                ModelResponse::text("joined").with_usage(Usage::call(20, 4))
            } else {
                ModelResponse::tool_calls(
                    (0..fan)
                        .map(|i| ToolCall::new(format!("c{i}"), child, &serde_json::json!({"input": "x"})))
                        .collect(),
                )
                .with_usage(Usage::call(20, 4))
            })
        })
        .without_recording()
    };
    let mid = Agent::builder("mid")
        .model(fanout("leaf"))
        .subagent(SubAgent::new(leaf))
        .build();
    Agent::builder("root")
        .model(fanout("mid"))
        .subagent(SubAgent::new(mid))
        .build()
}

fn run_tree(rt: &tokio::runtime::Runtime, agent: &Agent, sink: SharedSink, fan: usize) -> Duration {
    let limits = RunLimits::new().max_descendants((fan * fan + fan + 10) as u64);
    let config = RunConfig::new().sink(sink).limits(limits);
    let t = Instant::now();
    let out = rt.block_on(agent.run_with(&config, "go")).unwrap();
    let el = t.elapsed();
    assert!(out.is_clean());
    el
}

/// CPU time (user + system) of this process so far, from /proc (Linux).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time of this process's thread named `name` (Linux), if it is alive.
fn thread_cpu(name: &str) -> Option<Duration> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        // Thread names are cut to 15 bytes.
        if comm.trim() != &name[..name.len().min(15)] {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        let after = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        return Some(Duration::from_millis(ticks * 10));
    }
    None
}

/// Takes exactly the events a lifecycle-level trace sink takes, and drops
/// them: on the emitting thread (`handoff: None`: what building them costs),
/// or after handing them one by one to a thread that only drops them,
/// through the kind of queue the trace sink's writer reads (what a handoff
/// without the sink's per-thread staging costs).
struct LifecycleDrop {
    handoff: Option<crossbeam_channel::Sender<Event>>,
}

impl LifecycleDrop {
    fn here() -> Arc<Self> {
        Arc::new(Self { handoff: None })
    }

    fn on_a_thread() -> Arc<Self> {
        let (tx, rx) = crossbeam_channel::bounded::<Event>(16 * 1024);
        std::thread::spawn(move || {
            loop {
                loop {
                    match rx.try_recv() {
                        Ok(e) => drop(e),
                        Err(crossbeam_channel::TryRecvError::Empty) => break,
                        Err(crossbeam_channel::TryRecvError::Disconnected) => return,
                    }
                }
                std::thread::park_timeout(Duration::from_millis(2));
            }
        });
        Arc::new(Self { handoff: Some(tx) })
    }
}

impl EventSink for LifecycleDrop {
    fn emit(&self, event: Event) {
        if let Some(tx) = &self.handoff {
            let _ = tx.send(event);
        }
    }
    fn accepts(&self, kind: &EventKind) -> bool {
        tinyagents_trace::keeps(tinyagents_trace::DetailLevel::Lifecycle, kind)
    }
    fn wants_parent_view(&self) -> bool {
        false
    }
    fn accepts_class(&self, class: tinyagents_core::EventClass) -> bool {
        tinyagents_trace::keeps_class(tinyagents_trace::DetailLevel::Lifecycle, class)
    }
}

type MakeSink<'a> = &'a dyn Fn() -> (SharedSink, Option<Arc<TraceSink>>);

/// Per variant: every run's (wall, cpu, writer cpu), closing the sink included.
type Samples = Vec<(Duration, Duration, Duration)>;

/// Whether variant `k` runs: all of them, or those listed in
/// `TA_BENCH_VARIANTS` (`0,3`: the null sink and the trace sink; for
/// profiling one at a time).
fn selected(k: usize) -> bool {
    std::env::var("TA_BENCH_VARIANTS")
        .map(|v| v.split(',').any(|x| x.trim().parse() == Ok(k)))
        .unwrap_or(true)
}

/// Runs the variants interleaved (`reps` rounds of one run each, in an
/// order that rotates), so load from other processes hits them alike.
fn measure(
    rt: &tokio::runtime::Runtime,
    agent: &Agent,
    fan: usize,
    reps: u32,
    variants: &[MakeSink<'_>],
) -> Vec<Samples> {
    let mut out: Vec<Samples> = vec![Vec::new(); variants.len()];
    for round in 0..reps as usize {
        // Each round starts with the next variant, so none is always the
        // one that runs right after another's teardown.
        for k in (0..variants.len()).map(|j| (j + round) % variants.len()) {
            if !selected(k) {
                continue;
            }
            let (sink, trace) = variants[k]();
            let c0 = process_cpu().unwrap_or_default();
            let t0 = Instant::now();
            run_tree(rt, agent, sink, fan);
            let mut writer = Duration::ZERO;
            if let Some(t) = trace {
                // The writer's CPU time, read before closing (the thread
                // ends with the sink; the queue is nearly drained by now).
                writer = thread_cpu("tinyagents-trace").unwrap_or_default();
                t.close().unwrap();
            }
            let wall = t0.elapsed();
            let cpu = process_cpu().unwrap_or_default().saturating_sub(c0);
            if std::env::var_os("TA_BENCH_VERBOSE").is_some() {
                eprintln!(
                    "tree_overhead: round, variant {k}: {:.3}s wall, {:.3}s cpu, writer {:.3}s cpu",
                    wall.as_secs_f64(),
                    cpu.as_secs_f64(),
                    writer.as_secs_f64()
                );
            }
            out[k].push((wall, cpu, writer));
        }
    }
    out
}

/// Median, minimum and mean of a variant's wall and CPU times, and its
/// mean writer CPU. On a shared machine other load only ever adds time, so
/// the minimum is the least disturbed run and the median the typical one.
struct Stats {
    wall_median: f64,
    wall_min: f64,
    wall_mean: f64,
    cpu_median: f64,
    cpu_mean: f64,
    writer_mean: f64,
}

fn stats(samples: &Samples) -> Stats {
    let n = samples.len().max(1) as f64;
    let of = |f: fn(&(Duration, Duration, Duration)) -> Duration| {
        let mut v: Vec<f64> = samples.iter().map(|s| f(s).as_secs_f64()).collect();
        v.sort_by(f64::total_cmp);
        let median = v.get(v.len() / 2).copied().unwrap_or_default();
        (
            median,
            v.first().copied().unwrap_or_default(),
            v.iter().sum::<f64>() / n,
        )
    };
    let (wall_median, wall_min, wall_mean) = of(|s| s.0);
    let (cpu_median, _, cpu_mean) = of(|s| s.1);
    Stats {
        wall_median,
        wall_min,
        wall_mean,
        cpu_median,
        cpu_mean,
        writer_mean: of(|s| s.2).2,
    }
}

fn tree(c: &mut Criterion) {
    let fan: usize = std::env::var("TA_BENCH_FANOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let agent = two_level(fan);
    let runs = fan * fan + fan + 1;

    // Bytes per event, once.
    let d = dir("bytes");
    let sink = TraceSink::new(config(&d)).unwrap();
    run_tree(&rt, &agent, sink.clone(), fan);
    let report = sink.close().unwrap();
    let m = &report.roots[0];
    eprintln!(
        "bytes_per_event: {runs} runs, {} events, {} bytes on disk: {:.1} bytes/event (lifecycle level, default zstd level)",
        m.events,
        m.bytes,
        m.bytes as f64 / m.events as f64
    );
    let _ = std::fs::remove_dir_all(&d);

    // Wall and CPU time side by side: on a loaded machine wall time is
    // noisy; CPU time is what the sink adds.
    // Under `cargo test --all-targets` (no `--bench`): one repetition, a smoke test.
    let benching = std::env::args().any(|a| a == "--bench");
    let reps = if !benching {
        1
    } else if let Some(n) = std::env::var("TA_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()) {
        n
    } else if fan >= 1000 {
        7
    } else {
        11
    };
    let d = dir("cpu");
    let null: MakeSink<'_> = &|| (Arc::new(NullSink) as SharedSink, None);
    let here: MakeSink<'_> = &|| (LifecycleDrop::here() as SharedSink, None);
    let handoff: MakeSink<'_> = &|| (LifecycleDrop::on_a_thread() as SharedSink, None);
    let trace: MakeSink<'_> = &|| {
        let s = TraceSink::new(config(&d)).unwrap();
        (s.clone() as SharedSink, Some(s))
    };
    let all = measure(&rt, &agent, fan, reps, &[null, here, handoff, trace]);
    let [null, here, handoff, traced] = [0, 1, 2, 3].map(|k| stats(&all[k]));
    let pct = |a: f64, b: f64| (b / a - 1.0) * 100.0;
    eprintln!("tree_overhead: {runs} runs, {reps} interleaved rounds (median / min / mean; vs the null sink):");
    for (label, v) in [
        ("null sink", &null),
        ("lifecycle events built and dropped on the spot", &here),
        (
            "lifecycle events handed one by one to a thread that drops them",
            &handoff,
        ),
        ("trace sink (closing included)", &traced),
    ] {
        eprintln!(
            "tree_overhead:   {label}: wall {:.3}/{:.3}/{:.3}s ({:+.1}%/{:+.1}%/{:+.1}%), cpu {:.3}/{:.3}s median/mean ({:+.1}%/{:+.1}%)",
            v.wall_median,
            v.wall_min,
            v.wall_mean,
            pct(null.wall_median, v.wall_median),
            pct(null.wall_min, v.wall_min),
            pct(null.wall_mean, v.wall_mean),
            v.cpu_median,
            v.cpu_mean,
            pct(null.cpu_median, v.cpu_median),
            pct(null.cpu_mean, v.cpu_mean),
        );
    }
    eprintln!(
        "tree_overhead:   trace writer thread {:.3}s cpu = {:.2} us per run",
        traced.writer_mean,
        traced.writer_mean * 1e6 / runs as f64
    );
    let _ = std::fs::remove_dir_all(&d);
    if fan >= 1000 && std::env::var_os("TA_BENCH_CRITERION").is_none() {
        // Ten criterion samples of a million sub-agents each way take many
        // minutes; the mean of three above is the figure. Set
        // TA_BENCH_CRITERION=1 for the full criterion run.
        return;
    }

    let mut g = c.benchmark_group("tree");
    g.sample_size(10);
    if fan >= 1000 {
        // One run per sample: ten runs of a million sub-agents each way.
        g.sampling_mode(criterion::SamplingMode::Flat);
        g.measurement_time(Duration::from_secs(60));
    } else {
        g.measurement_time(Duration::from_secs(20));
    }
    let d = dir("tree");
    g.bench_function(format!("{runs}_runs_null_sink"), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_tree(&rt, &agent, Arc::new(NullSink), fan)).sum())
    });
    g.bench_function(format!("{runs}_runs_trace_sink"), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let sink = TraceSink::new(config(&d)).unwrap();
                    let t = run_tree(&rt, &agent, sink.clone(), fan);
                    // Closing (draining the queue, finishing the file) is part of the cost.
                    let start = Instant::now();
                    sink.close().unwrap();
                    t + start.elapsed()
                })
                .sum()
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&d);
}

criterion_group!(benches, emit, tree);
criterion_main!(benches);
