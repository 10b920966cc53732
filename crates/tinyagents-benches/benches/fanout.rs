//! One orchestrator turn calling N sub-agents at once (N tool calls to a
//! `SubAgentTool` whose child answers with one text turn), on a multi-thread
//! runtime with two workers. Target: <= 3 us per sub-agent. Criterion's
//! throughput is per sub-agent, so `thrpt` reads as sub-agents per second.

mod common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tinyagents_benches::{CountingSink, Fanout, FanoutOptions, bench_mode, two_worker_runtime};

/// Concurrency cap of the capped variant.
const CAP: usize = 1_000;

fn runtime() -> tokio::runtime::Runtime {
    match two_worker_runtime() {
        Ok(rt) => rt,
        Err(e) => common::fail("fanout", e),
    }
}

/// Benchmarks each size with a null sink, then (when `all_variants`) with a
/// counting sink and with a concurrency cap of 1,000.
fn bench_sizes(c: &mut Criterion, group: &str, sizes: &[usize], all_variants: bool, measure: Duration) {
    let rt = runtime();
    let mut g = c.benchmark_group(group);
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measure);
    for &n in sizes {
        g.throughput(Throughput::Elements(n as u64));
        let mut variants = vec![("null_sink", FanoutOptions::new(n))];
        if all_variants {
            variants.push(("counting_sink", FanoutOptions::new(n).sink(CountingSink::new())));
            variants.push(("null_sink_cap1000", FanoutOptions::new(n).max_concurrent(CAP)));
        }
        for (name, opts) in variants {
            let scenario = Fanout::build(opts);
            let what = format!("{group}/{name}/{n}");
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                b.iter_custom(|iters| common::time_runs(&rt, &what, &scenario, iters, n as u64 + 2));
            });
        }
    }
    g.finish();
}

fn fanout(c: &mut Criterion) {
    let sizes: &[usize] = if bench_mode() { &[10_000, 100_000] } else { &[1_000] };
    bench_sizes(c, "fanout", sizes, true, Duration::from_secs(8));
}

fn fanout_million(c: &mut Criterion) {
    let sizes: &[usize] = if bench_mode() { &[1_000_000] } else { &[2_000] };
    bench_sizes(c, "fanout_1m", sizes, false, Duration::from_secs(20));
}

criterion_group!(benches, fanout, fanout_million);
criterion_main!(benches);
