//! OpenTelemetry export: one span per run, model call and tool call,
//! parented by the run tree, sent with OTLP over HTTP/protobuf.
//!
//! * A run is an `invoke_agent {name}` span. Its parent is the span of its
//!   parent run, so the span tree *is* the run tree. A run whose own events
//!   were not kept (sampling, discarded child events) still gets its span,
//!   from its parent's `sub_agent_started`/`sub_agent_completed`.
//! * A model call is a `chat {model}` span under its run, a tool call an
//!   `execute_tool {tool}` span under its run (needs the model-I/O detail
//!   level in a recorded trace; a live [`OtelSink`] sees them always).
//! * Attributes follow the OpenTelemetry GenAI semantic conventions:
//!   `gen_ai.operation.name`, `gen_ai.agent.name`, `gen_ai.agent.id`,
//!   `gen_ai.request.model`, `gen_ai.usage.input_tokens`,
//!   `gen_ai.usage.output_tokens`, `gen_ai.tool.name`, `gen_ai.tool.call.id`,
//!   `error.type`; plus `tinyagents.depth`, `tinyagents.run_id`,
//!   `tinyagents.parent_run_id`, `tinyagents.cost_usd`,
//!   `tinyagents.cost_picodollars` and `tinyagents.rationale`. On a run
//!   span, `gen_ai.usage.*` are the totals of its subtree (what invoking
//!   that agent cost); `tinyagents.own.*` its own model calls.
//! * Span times are the events' timestamps, not the export time.
//!
//! The exporter (a blocking HTTP client) lives on its own thread, fed by a
//! channel: [`OtelSink`] is an [`EventSink`] as cheap on the hot path as the
//! trace sink, and [`export_trace`] replays a recorded trace through the
//! same code.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};
use tinyagents_core::{Cost, Event, EventClass, EventKind, EventSink, RunId, Usage};

use crate::error::TraceError;
use crate::format::{OtherRecord, Record};
use crate::reader::TraceReader;

/// Where and how spans are exported.
#[derive(Clone, Debug)]
pub struct OtelConfig {
    /// The OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Timeout of one export request.
    pub timeout: Duration,
    /// Spans buffered before export (the SDK drops beyond it; sized for
    /// large trees by default).
    pub max_queue_size: usize,
}

impl OtelConfig {
    /// Export to `endpoint` as service `tinyagents`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            service_name: "tinyagents".into(),
            timeout: Duration::from_secs(10),
            max_queue_size: 1 << 20,
        }
    }

    /// Sets `service.name`.
    #[must_use]
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }
}

/// What an export did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OtelReport {
    /// Run spans.
    pub run_spans: u64,
    /// Model call spans.
    pub model_spans: u64,
    /// Tool call spans.
    pub tool_spans: u64,
    /// Spans still open at the end (runs that never ended), ended at the
    /// last timestamp seen.
    pub unfinished: u64,
}

fn at(us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(us)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Turns events into spans (shared by the sink and the file export).
struct SpanBuilder {
    tracer: SdkTracer,
    /// Open run spans (a run's span is removed when it ends; the parent's
    /// later `sub_agent_completed` then finds nothing to end).
    runs: HashMap<RunId, Context>,
    models: HashMap<(RunId, u32), Context>,
    tools: HashMap<(RunId, std::sync::Arc<str>), Context>,
    last_us: u64,
    report: OtelReport,
}

impl SpanBuilder {
    fn new(tracer: SdkTracer) -> Self {
        Self {
            tracer,
            runs: HashMap::new(),
            models: HashMap::new(),
            tools: HashMap::new(),
            last_us: 0,
            report: OtelReport::default(),
        }
    }

    fn parent_cx(&self, parent: Option<RunId>) -> Context {
        match parent.and_then(|p| self.runs.get(&p)) {
            Some(cx) => cx.clone(),
            None => Context::new(),
        }
    }

    fn open_run(&mut self, run: RunId, parent: Option<RunId>, name: &str, depth: u32, us: u64) -> Option<Context> {
        if let Some(cx) = self.runs.get(&run) {
            return Some(cx.clone());
        }
        let parent_cx = self.parent_cx(parent);
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", name.to_string()),
            KeyValue::new("gen_ai.agent.id", run.to_string()),
            KeyValue::new("tinyagents.run_id", run.to_string()),
            KeyValue::new("tinyagents.depth", i64::from(depth)),
        ];
        if let Some(p) = parent {
            attrs.push(KeyValue::new("tinyagents.parent_run_id", p.to_string()));
        }
        let span = self
            .tracer
            .span_builder(format!("invoke_agent {name}"))
            .with_kind(SpanKind::Internal)
            .with_start_time(at(us))
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &parent_cx);
        let cx = parent_cx.with_span(span);
        self.runs.insert(run, cx.clone());
        self.report.run_spans += 1;
        Some(cx)
    }

    fn end_run(&mut self, run: RunId, us: u64, totals: Option<(Usage, Cost)>, own: Option<Usage>, error: Option<&str>) {
        let Some(cx) = self.runs.remove(&run) else {
            return;
        };
        let span = cx.span();
        if let Some((u, c)) = totals {
            span.set_attributes([
                KeyValue::new("gen_ai.usage.input_tokens", i64_of(u.input_tokens)),
                KeyValue::new("gen_ai.usage.output_tokens", i64_of(u.output_tokens)),
                KeyValue::new("tinyagents.cost_usd", c.usd()),
                KeyValue::new("tinyagents.cost_picodollars", i64_of(c.picodollars())),
            ]);
        }
        if let Some(u) = own {
            span.set_attributes([
                KeyValue::new("tinyagents.own.input_tokens", i64_of(u.input_tokens)),
                KeyValue::new("tinyagents.own.output_tokens", i64_of(u.output_tokens)),
            ]);
        }
        match error {
            Some(e) => {
                span.set_attribute(KeyValue::new("error.type", "run_failed"));
                span.set_status(Status::error(e.to_string()));
            }
            None => span.set_status(Status::Ok),
        }
        span.end_with_timestamp(at(us));
    }

    fn apply(&mut self, e: &Event) {
        self.last_us = self.last_us.max(e.timestamp_us);
        let us = e.timestamp_us;
        match &e.kind {
            EventKind::RunStarted { name } => {
                self.open_run(e.run_id, e.parent_run_id, name, e.depth, us);
            }
            EventKind::RunCompleted {
                usage,
                total_usage,
                total_cost,
                ..
            } => {
                self.end_run(e.run_id, us, Some((*total_usage, *total_cost)), Some(*usage), None);
            }
            EventKind::RunFailed {
                error,
                total_usage,
                total_cost,
            } => {
                self.end_run(e.run_id, us, Some((*total_usage, *total_cost)), None, Some(error));
            }
            EventKind::SubAgentStarted {
                name,
                child_run_id,
                child_depth,
            } => {
                self.open_run(*child_run_id, Some(e.run_id), name, *child_depth, us);
            }
            EventKind::SubAgentCompleted {
                child_run_id,
                ok,
                usage,
                cost,
                ..
            } => {
                let err = (!ok).then_some("the sub-agent failed");
                self.end_run(*child_run_id, us, Some((*usage, *cost)), None, err);
            }
            EventKind::ModelCallStarted { model, turn } => {
                let parent = self.parent_cx(Some(e.run_id));
                let span = self
                    .tracer
                    .span_builder(format!("chat {model}"))
                    .with_kind(SpanKind::Client)
                    .with_start_time(at(us))
                    .with_attributes([
                        KeyValue::new("gen_ai.operation.name", "chat"),
                        KeyValue::new("gen_ai.request.model", model.to_string()),
                        KeyValue::new("tinyagents.run_id", e.run_id.to_string()),
                        KeyValue::new("tinyagents.depth", i64::from(e.depth)),
                        KeyValue::new("tinyagents.turn", i64::from(*turn)),
                    ])
                    .start_with_context(&self.tracer, &parent);
                self.models.insert((e.run_id, *turn), parent.with_span(span));
                self.report.model_spans += 1;
            }
            EventKind::ModelCallCompleted {
                model,
                turn,
                usage,
                cost,
                tool_calls,
            } => {
                if let Some(cx) = self.models.remove(&(e.run_id, *turn)) {
                    let span = cx.span();
                    span.set_attributes([
                        KeyValue::new("gen_ai.response.model", model.to_string()),
                        KeyValue::new("gen_ai.usage.input_tokens", i64_of(usage.input_tokens)),
                        KeyValue::new("gen_ai.usage.output_tokens", i64_of(usage.output_tokens)),
                        KeyValue::new("tinyagents.cost_usd", cost.usd()),
                        KeyValue::new("tinyagents.cost_picodollars", i64_of(cost.picodollars())),
                        KeyValue::new("tinyagents.tool_calls", i64::from(*tool_calls)),
                    ]);
                    span.set_status(Status::Ok);
                    span.end_with_timestamp(at(us));
                }
            }
            EventKind::ToolCallStarted { call_id, tool } => {
                let parent = self.parent_cx(Some(e.run_id));
                let span = self
                    .tracer
                    .span_builder(format!("execute_tool {tool}"))
                    .with_kind(SpanKind::Internal)
                    .with_start_time(at(us))
                    .with_attributes([
                        KeyValue::new("gen_ai.operation.name", "execute_tool"),
                        KeyValue::new("gen_ai.tool.name", tool.to_string()),
                        KeyValue::new("gen_ai.tool.call.id", call_id.to_string()),
                        KeyValue::new("tinyagents.run_id", e.run_id.to_string()),
                        KeyValue::new("tinyagents.depth", i64::from(e.depth)),
                    ])
                    .start_with_context(&self.tracer, &parent);
                self.tools.insert((e.run_id, call_id.clone()), parent.with_span(span));
                self.report.tool_spans += 1;
            }
            EventKind::ToolCallCompleted { call_id, error, .. } => {
                if let Some(cx) = self.tools.remove(&(e.run_id, call_id.clone())) {
                    let span = cx.span();
                    match error {
                        Some(err) => {
                            span.set_attribute(KeyValue::new("error.type", "tool_error"));
                            span.set_status(Status::error(err.clone()));
                        }
                        None => span.set_status(Status::Ok),
                    }
                    span.end_with_timestamp(at(us));
                }
            }
            #[allow(unreachable_patterns)]
            _ => {
                if let Ok(v) = serde_json::to_value(&e.kind)
                    && let Some(r) = v.get("rationale").and_then(|r| r.as_str())
                {
                    self.rationale(e.run_id, r);
                }
            }
        }
    }

    fn apply_other(&mut self, o: &OtherRecord) {
        if let (Some(run), Some(r)) = (o.run_id, o.raw.get("rationale").and_then(|r| r.as_str())) {
            self.rationale(run, r);
        }
    }

    fn rationale(&mut self, run: RunId, r: &str) {
        if let Some(cx) = self.runs.get(&run) {
            cx.span()
                .set_attribute(KeyValue::new("tinyagents.rationale", r.to_string()));
        }
    }

    /// Ends whatever is still open at the last timestamp seen.
    fn finish(&mut self) {
        let last = at(self.last_us);
        for (_, cx) in self
            .models
            .drain()
            .chain(self.tools.drain().map(|(k, v)| ((k.0, 0), v)))
        {
            cx.span().end_with_timestamp(last);
        }
        for (_, cx) in self.runs.drain() {
            cx.span().set_attribute(KeyValue::new("tinyagents.unfinished", true));
            cx.span().end_with_timestamp(last);
            self.report.unfinished += 1;
        }
    }
}

fn provider(config: &OtelConfig) -> Result<SdkTracerProvider, TraceError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.timeout)
        .build()
        .map_err(|e| TraceError::Otel(e.to_string()))?;
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(config.max_queue_size.max(2048))
                .with_max_export_batch_size(512)
                .with_scheduled_delay(Duration::from_millis(200))
                .build(),
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build())
}

fn shutdown(provider: &SdkTracerProvider) -> Result<(), TraceError> {
    provider.force_flush().map_err(|e| TraceError::Otel(e.to_string()))?;
    provider.shutdown().map_err(|e| TraceError::Otel(e.to_string()))
}

/// Exports a recorded trace file (on a dedicated thread; callable from
/// async code).
pub fn export_trace(path: &Path, config: &OtelConfig) -> Result<OtelReport, TraceError> {
    let reader = TraceReader::open(path)?;
    let config = config.clone();
    let handle = std::thread::Builder::new()
        .name("tinyagents-otel-export".into())
        .spawn(move || -> Result<OtelReport, TraceError> {
            let provider = provider(&config)?;
            let mut b = SpanBuilder::new(provider.tracer("tinyagents"));
            for r in reader {
                match r {
                    Ok(Record::Event(e)) => b.apply(&e),
                    Ok(Record::Other(o)) => b.apply_other(&o),
                    Ok(Record::ModelIo(_)) | Err(_) => {}
                }
            }
            b.finish();
            let report = b.report.clone();
            drop(b);
            shutdown(&provider)?;
            Ok(report)
        })
        .map_err(|e| TraceError::Otel(e.to_string()))?;
    handle
        .join()
        .map_err(|_| TraceError::Otel("the export thread panicked".into()))?
}

#[allow(clippy::large_enum_variant)] // `Event` is the hot variant: boxing it would cost an allocation per event
enum Msg {
    Event(Event),
    Close(Sender<Result<OtelReport, TraceError>>),
}

/// A live [`EventSink`] exporting spans as the run proceeds (see the module docs).
pub struct OtelSink {
    tx: Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for OtelSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtelSink")
    }
}

impl OtelSink {
    /// Starts the exporter thread.
    pub fn new(config: OtelConfig) -> Result<std::sync::Arc<Self>, TraceError> {
        let (tx, rx) = crossbeam_channel::bounded::<Msg>(64 * 1024);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<(), TraceError>>(1);
        let thread = std::thread::Builder::new()
            .name("tinyagents-otel".into())
            .spawn(move || {
                let provider = match provider(&config) {
                    Ok(p) => {
                        let _ = ready_tx.send(Ok(()));
                        p
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut b = SpanBuilder::new(provider.tracer("tinyagents"));
                for msg in rx.iter() {
                    match msg {
                        Msg::Event(e) => b.apply(&e),
                        Msg::Close(ack) => {
                            b.finish();
                            let report = b.report.clone();
                            let r = shutdown(&provider).map(|()| report);
                            let _ = ack.send(r);
                            return;
                        }
                    }
                }
                b.finish();
                let _ = shutdown(&provider);
            })
            .map_err(|e| TraceError::Otel(e.to_string()))?;
        ready_rx
            .recv()
            .map_err(|_| TraceError::Otel("the exporter thread exited".into()))??;
        Ok(std::sync::Arc::new(Self {
            tx,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Ends open spans, exports everything and stops the exporter.
    pub fn close(&self) -> Result<OtelReport, TraceError> {
        let (ack, done) = crossbeam_channel::bounded(1);
        self.tx
            .send(Msg::Close(ack))
            .map_err(|_| TraceError::Otel("the exporter is closed".into()))?;
        let r = done
            .recv()
            .map_err(|_| TraceError::Otel("the exporter thread exited".into()))?;
        if let Ok(mut t) = self.thread.lock()
            && let Some(h) = t.take()
        {
            let _ = h.join();
        }
        r
    }
}

impl EventSink for OtelSink {
    fn emit(&self, event: Event) {
        let _ = self.tx.send(Msg::Event(event));
    }
    // Spans need no token deltas: model calls are not streamed for them.
    fn accepts_class(&self, class: EventClass) -> bool {
        class != EventClass::ModelDelta
    }
}
