#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod gate;
pub mod scenario;
pub mod sink;

pub use gate::GatedModel;
pub use scenario::{
    Fanout, FanoutOptions, RunSummary, Scenario, bench_mode, nested_chain, sequential, single_agent,
    two_worker_runtime, worker,
};
pub use sink::CountingSink;
