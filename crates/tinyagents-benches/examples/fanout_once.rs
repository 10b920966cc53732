//! Runs one fan-out of N sub-agents (default 1,000) once and prints the time
//! it took: `cargo run --release -p tinyagents-benches --example fanout_once -- 100000`.

use std::time::Instant;

use tinyagents_benches::{CountingSink, Fanout, FanoutOptions, two_worker_runtime};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(1_000), |a| a.parse())?;
    let counting = args.next().is_some_and(|a| a == "counting");
    let rt = two_worker_runtime()?;
    let sink = CountingSink::new();
    let opts = if counting {
        FanoutOptions::new(n).sink(sink.clone())
    } else {
        FanoutOptions::new(n)
    };
    let scenario = Fanout::build(opts);
    for _ in 0..3 {
        let s = scenario.clone();
        let (elapsed, summary) = rt.block_on(rt.spawn(async move {
            let start = Instant::now();
            let r = s.run_times(1).await;
            (start.elapsed(), r)
        }))?;
        let summary = summary?;
        println!(
            "{n} sub-agents in {elapsed:?} ({:.2} us each); {} model calls, clean: {}, events: {}",
            elapsed.as_secs_f64() * 1e6 / n as f64,
            summary.total_requests,
            summary.clean,
            sink.count()
        );
    }
    Ok(())
}
