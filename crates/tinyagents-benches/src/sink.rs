//! [`CountingSink`]: the cheapest sink that still observes every event.
//!
//! A [`NullSink`](tinyagents_core::NullSink) reports itself disabled, so the
//! harness never even builds an event. The benchmarks also measure the
//! opposite case, every event built, stamped (sequence number, timestamp)
//! and handed over, with a sink whose own work is one atomic increment, so
//! the figure is the harness's cost of emitting, not a sink's cost of storing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tinyagents_core::{Event, EventSink};

/// Counts the events it receives and drops them.
#[derive(Debug, Default)]
pub struct CountingSink(AtomicU64);

impl CountingSink {
    /// A new counter at zero.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Events received so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl EventSink for CountingSink {
    fn emit(&self, event: Event) {
        drop(event);
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}
