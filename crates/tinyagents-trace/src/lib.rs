#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod follow;
pub mod format;
pub mod model_io;
#[cfg(feature = "otel")]
pub mod otel;
pub mod reader;
pub mod render;
pub mod replay;
pub mod sink;
pub mod sqlite;
mod stage;
pub mod store;
pub mod tree;

pub use config::{Backpressure, DetailLevel, Redactor, Sampling, TraceConfig};
pub use error::TraceError;
pub use follow::TraceFollower;
pub use format::{FORMAT_VERSION, ModelIoRecord, OtherRecord, Record, TraceHeader, TraceManifest, TraceStatus};
pub use model_io::{TeeRecorder, TracedModel, transcript_of};
pub use reader::{TraceContents, TraceReader, read_trace};
pub use render::{RenderOptions, render_header, render_tree};
pub use replay::{
    Divergence, Recording, ReplayModel, ReplayOptions, ReplayReport, compare_trees, replay_contents, replay_location,
    replay_trace,
};
pub use sink::{IoRecorder, SinkReport, TraceSink, keeps, keeps_class};
pub use store::{
    LoadedTrace, PruneReport, PrunedTrace, Retention, TraceEntry, TraceLocation, TraceStore, load_tree, render_list,
};
pub use tree::{RunNode, RunStatus, RunTree, TreeCounts, TreeSummary};
