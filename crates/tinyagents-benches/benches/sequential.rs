//! N sequential delegations: the orchestrator calls one sub-agent per turn
//! for N turns (`max_turns` raised to N + 1), then answers. Target: < 0.2 s
//! for N = 10,000. N = 1,000 and 5,000 show the scaling is linear: the
//! transcript is shared, never deep-copied per turn.

mod common;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tinyagents_benches::{bench_mode, sequential, two_worker_runtime};

fn sequential_delegations(c: &mut Criterion) {
    let rt = match two_worker_runtime() {
        Ok(rt) => rt,
        Err(e) => common::fail("sequential", e),
    };
    let sizes: &[u32] = if bench_mode() {
        &[1_000, 5_000, 10_000]
    } else {
        &[1_000]
    };
    let mut g = c.benchmark_group("sequential");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for &n in sizes {
        g.throughput(Throughput::Elements(u64::from(n)));
        let scenario = sequential(n, None);
        let what = format!("sequential/{n}");
        // n sub-agent calls, n + 1 orchestrator turns.
        let expected = 2 * u64::from(n) + 1;
        g.bench_with_input(BenchmarkId::new("delegations", n), &n, |b, _| {
            b.iter_custom(|iters| common::time_runs(&rt, &what, &scenario, iters, expected));
        });
    }
    g.finish();
}

criterion_group!(benches, sequential_delegations);
criterion_main!(benches);
