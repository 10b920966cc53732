//! One agent run, one scripted turn: `Agent::run_with` on a model that
//! answers text. Target: <= 1.5 us per run.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tinyagents_benches::{CountingSink, single_agent, two_worker_runtime};

fn agent_run(c: &mut Criterion) {
    let rt = match two_worker_runtime() {
        Ok(rt) => rt,
        Err(e) => common::fail("agent_run", e),
    };
    let mut g = c.benchmark_group("agent_run");
    g.throughput(Throughput::Elements(1));
    let null = single_agent(None);
    g.bench_function("one_turn/null_sink", |b| {
        b.iter_custom(|iters| common::time_runs(&rt, "agent_run/null_sink", &null, iters, 1));
    });
    let counting = single_agent(Some(CountingSink::new()));
    g.bench_function("one_turn/counting_sink", |b| {
        b.iter_custom(|iters| common::time_runs(&rt, "agent_run/counting_sink", &counting, iters, 1));
    });
    g.finish();
}

criterion_group!(benches, agent_run);
criterion_main!(benches);
