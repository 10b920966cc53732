//! Peak heap per in-flight sub-agent in a one-turn fan-out of N sub-agents.
//!
//! Not a criterion benchmark: a probe that prints a table. The heap is
//! counted by `peak_alloc::PeakAlloc`, a `#[global_allocator]` that wraps
//! the system allocator and keeps the current and the peak number of
//! allocated bytes in two atomics. The workspace forbids `unsafe_code`, and
//! a `GlobalAlloc` impl needs `unsafe impl`, so the allocator comes from that
//! crate; installing it with `#[global_allocator]` needs no unsafe code.
//! The allocator lives only in this binary: the timing benchmarks run on the
//! plain system allocator.
//!
//! For each N: build the scenario, let the heap settle, take the baseline
//! (bytes allocated now), reset the peak, run once on a two-worker runtime,
//! read the peak. Reported per sub-agent: `(peak - baseline) / N`, and for
//! the gated runs also `(heap when all N are in flight - baseline) / N`,
//! sampled by the `GatedModel` at the instant the N-th child reaches it.
//!
//! Run with `cargo bench -p tinyagents-benches --bench fanout_memory`
//! (`FANOUT_MEMORY_SIZES=10000,100000` to measure only those sizes).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use peak_alloc::PeakAlloc;
use tinyagents_benches::{CountingSink, Fanout, FanoutOptions, GatedModel, bench_mode, two_worker_runtime};
use tinyagents_harness::Agent;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

/// Concurrency cap of the capped variant.
const CAP: usize = 1_000;

struct Measured {
    baseline: usize,
    peak: usize,
    in_flight: Option<usize>,
}

fn gated_worker(n: usize, sample: Arc<AtomicUsize>) -> Agent {
    let model = GatedModel::new(n, "done", move || sample.store(HEAP.current_usage(), Ordering::Relaxed));
    Agent::builder("worker")
        .system("Do the task you are given and answer in one line.")
        .model(model)
        .build()
}

fn measure(rt: &tokio::runtime::Runtime, what: &str, n: usize, opts: FanoutOptions, gated: bool) -> Measured {
    let sample = Arc::new(AtomicUsize::new(0));
    let opts = if gated {
        opts.child(gated_worker(n, sample.clone()))
    } else {
        opts
    };
    let scenario = Fanout::build(opts);
    let baseline = HEAP.current_usage();
    HEAP.reset_peak_usage();
    let _ = common::time_runs(rt, what, &scenario, 1, n as u64 + 2);
    let peak = HEAP.peak_usage();
    let in_flight = gated.then(|| sample.load(Ordering::Relaxed));
    Measured {
        baseline,
        peak,
        in_flight,
    }
}

fn per(n: usize, bytes: usize) -> String {
    format!("{:.0}", bytes as f64 / n as f64)
}

fn main() {
    let rt = match two_worker_runtime() {
        Ok(rt) => rt,
        Err(e) => common::fail("fanout_memory", e),
    };
    // `FANOUT_MEMORY_SIZES=10000,100000` measures only those sizes.
    let chosen: Option<Vec<usize>> = std::env::var("FANOUT_MEMORY_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    let sizes: &[usize] = match &chosen {
        Some(sizes) => sizes,
        None if bench_mode() => &[10_000, 100_000, 1_000_000],
        None => &[1_000],
    };
    // Warm-up: lazily initialized state (runtime, ids) is not counted.
    let _ = measure(&rt, "warm-up", 1_000, FanoutOptions::new(1_000), true);
    println!("| N | variant | peak - baseline (MB) | bytes / sub-agent at peak | bytes / sub-agent, all N in flight |");
    println!("|---|---|---|---|---|");
    for &n in sizes {
        let variants: [(&str, FanoutOptions, bool); 4] = [
            ("all in flight (gated), no cap, null sink", FanoutOptions::new(n), true),
            (
                "all in flight (gated), no cap, counting sink",
                FanoutOptions::new(n).sink(CountingSink::new()),
                true,
            ),
            ("instant child, no cap, null sink", FanoutOptions::new(n), false),
            (
                "instant child, cap 1000, null sink",
                FanoutOptions::new(n).max_concurrent(CAP),
                false,
            ),
        ];
        for (name, opts, gated) in variants {
            let m = measure(&rt, name, n, opts, gated);
            let grown = m.peak.saturating_sub(m.baseline);
            let in_flight = m
                .in_flight
                .map_or_else(|| "-".to_string(), |b| per(n, b.saturating_sub(m.baseline)));
            println!(
                "| {n} | {name} | {:.1} | {} | {in_flight} |",
                grown as f64 / 1e6,
                per(n, grown)
            );
        }
    }
    println!("(with the cap, at most {CAP} sub-agents are in flight; the figures are per sub-agent of the turn)");
}
