//! What every benchmark binary shares: timing a scenario on the runtime.

use std::time::{Duration, Instant};

use tinyagents_benches::{RunSummary, Scenario};
use tokio::runtime::Runtime;

/// Stops the benchmark binary with a message (benchmarks may not panic).
pub fn fail(what: &str, why: impl std::fmt::Display) -> ! {
    eprintln!("benchmark {what} failed: {why}");
    std::process::exit(1)
}

/// Runs `scenario` `iters` times as one task on `rt` (so all the work
/// happens on the runtime's workers, none on the benchmark thread) and
/// returns the time taken, measured inside that task. Checks that the last
/// run answered, made `expected_requests` model calls in all and had no
/// failure anywhere in its tree.
pub fn time_runs(rt: &Runtime, what: &str, scenario: &Scenario, iters: u64, expected_requests: u64) -> Duration {
    if iters == 0 {
        return Duration::ZERO;
    }
    let s = scenario.clone();
    let joined = rt.block_on(rt.spawn(async move {
        let start = Instant::now();
        let r = s.run_times(iters).await;
        (start.elapsed(), r)
    }));
    match joined {
        Ok((elapsed, Ok(summary))) => {
            check(what, &summary, expected_requests);
            elapsed
        }
        Ok((_, Err(e))) => fail(what, e),
        Err(e) => fail(what, e),
    }
}

fn check(what: &str, s: &RunSummary, expected_requests: u64) {
    if s.text.is_none() || !s.clean || s.total_requests != expected_requests {
        fail(
            what,
            format!("unexpected result {s:?} (expected {expected_requests} model calls in all)"),
        );
    }
}
