//! Streaming: one async stream per run.
//!
//! [`CompiledGraph::stream`](crate::CompiledGraph::stream) runs the graph on
//! a tokio task and returns a [`GraphStream`] of [`StreamPart`]s, chosen by
//! [`StreamMode`]:
//!
//! * `VALUES`: the full state after every superstep;
//! * `UPDATES`: each task's writes as it finishes;
//! * `EVENTS`: every run-tree event (graph, task, checkpoint events, and
//!   the harness events of sub-agents at any depth), each tagged with the
//!   namespace of the graph task it came from;
//! * `CUSTOM`: data nodes send with
//!   [`NodeContext::emit_custom`](crate::NodeContext::emit_custom).
//!
//! Subgraphs stream into the same stream, their parts tagged with their
//! namespace. When the stream ends, [`GraphStream::outcome`] gives the run's
//! result.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde_json::Value;
use tinyagents_core::{Event, EventSink, NodeId, TaskId};
use tokio::sync::mpsc;

use crate::error::GraphError;
use crate::runtime::GraphOutput;

/// Which parts a stream carries (combine with `|`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamMode(u8);

impl StreamMode {
    /// Full state after every superstep.
    pub const VALUES: Self = Self(1);
    /// Each task's writes.
    pub const UPDATES: Self = Self(2);
    /// Run-tree events, nested children included.
    pub const EVENTS: Self = Self(4);
    /// Custom data from nodes.
    pub const CUSTOM: Self = Self(8);
    /// Everything.
    pub const ALL: Self = Self(15);
    /// Nothing.
    pub const NONE: Self = Self(0);

    /// True when every mode of `other` is in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
}

impl std::ops::BitOr for StreamMode {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}

/// One item of a run's stream.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamPart {
    /// The state of a graph run after a superstep.
    Values {
        /// Namespace of the graph run (empty at the outermost graph).
        namespace: Arc<str>,
        /// The superstep.
        step: u64,
        /// The state (an object of channels).
        state: Value,
    },
    /// A task's writes.
    Updates {
        /// Namespace of the graph run.
        namespace: Arc<str>,
        /// The node.
        node: NodeId,
        /// The task.
        task_id: TaskId,
        /// Its channel writes.
        writes: Vec<(Arc<str>, Value)>,
    },
    /// A run-tree event.
    Event {
        /// Namespace of the graph run or graph task the event came from.
        namespace: Arc<str>,
        /// The event.
        event: Event,
    },
    /// Custom data from a node.
    Custom {
        /// Namespace of the graph run.
        namespace: Arc<str>,
        /// The node.
        node: NodeId,
        /// The task.
        task_id: TaskId,
        /// The data.
        data: Value,
    },
}

/// The sending half, shared by a run tree.
#[derive(Clone, Debug)]
pub(crate) struct StreamTx {
    pub tx: mpsc::UnboundedSender<StreamPart>,
    pub modes: StreamMode,
}

impl StreamTx {
    pub fn send(&self, part: StreamPart) {
        let _ = self.tx.send(part);
    }
}

/// An event sink that puts events on the stream, tagged with a namespace.
pub(crate) struct StreamSink {
    pub tx: StreamTx,
    pub namespace: Arc<str>,
}

impl EventSink for StreamSink {
    fn emit(&self, event: Event) {
        self.tx.send(StreamPart::Event {
            namespace: self.namespace.clone(),
            event,
        });
    }
}

/// The stream of one run (see the module docs).
pub struct GraphStream {
    pub(crate) rx: mpsc::UnboundedReceiver<StreamPart>,
    pub(crate) handle: Option<tokio::task::JoinHandle<Result<GraphOutput, GraphError>>>,
}

impl std::fmt::Debug for GraphStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphStream").finish_non_exhaustive()
    }
}

impl GraphStream {
    /// Waits for the run to end and returns its result (parts not yet read
    /// are dropped).
    pub async fn outcome(mut self) -> Result<GraphOutput, GraphError> {
        let Some(handle) = self.handle.take() else {
            return Err(GraphError::Resume("the outcome was already taken".into()));
        };
        match handle.await {
            Ok(r) => r,
            Err(e) => Err(GraphError::Resume(format!("graph run task failed: {e}"))),
        }
    }
}

impl futures::Stream for GraphStream {
    type Item = StreamPart;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamPart>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for GraphStream {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}
