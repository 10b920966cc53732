//! Server-sent events on top of `eventsource-stream`, with the call's
//! deadline and errors mapped onto [`ModelError`].

use std::pin::Pin;

use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use tinyagents_core::ModelError;
use tokio::time::Instant;

/// One event: its type (`event:` line, empty when absent) and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: String,
    pub data: String,
}

type Inner = Pin<Box<dyn Stream<Item = Result<SseEvent, ModelError>> + Send>>;

/// A stream of SSE events read from any stream of byte chunks.
pub(crate) struct SseStream {
    inner: Inner,
    deadline: Option<Instant>,
    events: u64,
}

impl SseStream {
    /// Events from a stream of byte chunks (a response body, or bytes in a
    /// benchmark).
    pub(crate) fn new<S, B, E>(bytes: S, deadline: Option<Instant>) -> Self
    where
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: AsRef<[u8]> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let inner = bytes.eventsource().map(|item| match item {
            Ok(ev) => Ok(SseEvent {
                event: ev.event,
                data: ev.data,
            }),
            Err(EventStreamError::Transport(e)) => Err(ModelError::Transport {
                message: format!("stream interrupted: {e}"),
            }),
            Err(EventStreamError::Utf8(e)) => Err(ModelError::InvalidResponse {
                message: format!("stream is not UTF-8: {e}"),
            }),
            Err(EventStreamError::Parser(e)) => Err(ModelError::InvalidResponse {
                message: format!("garbled event stream: {e}"),
            }),
        });
        Self {
            inner: Box::pin(inner),
            deadline,
            events: 0,
        }
    }

    /// The next event, `None` at the end of the stream.
    pub(crate) async fn next(&mut self) -> Result<Option<SseEvent>, ModelError> {
        let item = match self.deadline {
            Some(d) => tokio::time::timeout_at(d, self.inner.next())
                .await
                .map_err(|_| ModelError::Timeout)?,
            None => self.inner.next().await,
        };
        match item {
            Some(Ok(ev)) => {
                self.events += 1;
                Ok(Some(ev))
            }
            Some(Err(ModelError::Transport { message })) => Err(ModelError::Transport {
                message: format!("{message} (after {} events)", self.events),
            }),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// Events read so far.
    pub(crate) fn events(&self) -> u64 {
        self.events
    }
}
