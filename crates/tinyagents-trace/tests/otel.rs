//! OpenTelemetry export: spans received by an OTLP/HTTP endpoint on loopback
//! reproduce the run tree exactly.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tinyagents_core::{CollectingSink, RunConfig, RunId, TeeSink};
use tinyagents_trace::otel::{OtelConfig, OtelSink, export_trace};
use tinyagents_trace::{DetailLevel, RunTree, TraceConfig, TraceSink, TraceStore};

/// An OTLP/HTTP collector on 127.0.0.1 that decodes and keeps every span.
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    url: String,
    _rt: tokio::runtime::Runtime,
}

fn collector() -> Collector {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let kept = spans.clone();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("valid OTLP protobuf");
                let mut k = kept.lock().unwrap();
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        k.extend(ss.spans);
                    }
                }
                ""
            }
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Collector {
        spans,
        url: format!("http://{addr}/v1/traces"),
        _rt: rt,
    }
}

fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a Value> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn str_attr(s: &Span, key: &str) -> Option<String> {
    match attr(s, key)? {
        Value::StringValue(v) => Some(v.clone()),
        _ => None,
    }
}

fn int_attr(s: &Span, key: &str) -> Option<i64> {
    match attr(s, key)? {
        Value::IntValue(v) => Some(*v),
        _ => None,
    }
}

/// Checks that run spans mirror `tree`: one per run, each parented by its
/// parent run's span, with depth and totals; model and tool spans hang
/// under their run's span.
fn assert_spans_mirror_tree(spans: &[Span], tree: &RunTree, with_calls: bool) {
    let runs: Vec<&Span> = spans
        .iter()
        .filter(|s| str_attr(s, "gen_ai.operation.name").as_deref() == Some("invoke_agent"))
        .collect();
    assert_eq!(runs.len(), tree.len(), "one span per run");
    let by_span_id: HashMap<&[u8], RunId> = runs
        .iter()
        .map(|s| {
            (
                s.span_id.as_slice(),
                str_attr(s, "tinyagents.run_id").unwrap().parse().unwrap(),
            )
        })
        .collect();
    let totals = tree.subtree_totals();
    let trace_id = &runs[0].trace_id;
    for s in &runs {
        let run: RunId = str_attr(s, "tinyagents.run_id").unwrap().parse().unwrap();
        let node = tree.get(run).expect("span for a run of the tree");
        assert_eq!(&s.trace_id, trace_id, "one trace per root");
        let parent_run = if s.parent_span_id.is_empty() {
            None
        } else {
            Some(
                *by_span_id
                    .get(s.parent_span_id.as_slice())
                    .expect("parent is a run span"),
            )
        };
        assert_eq!(parent_run, node.parent_run_id, "parent link of {}", node.name);
        assert_eq!(int_attr(s, "tinyagents.depth"), Some(i64::from(node.depth)));
        assert_eq!(str_attr(s, "gen_ai.agent.name").as_deref(), Some(&*node.name));
        assert_eq!(s.name, format!("invoke_agent {}", node.name));
        let (u, c) = totals[tree.index_of(run).unwrap()];
        assert_eq!(int_attr(s, "gen_ai.usage.input_tokens"), Some(u.input_tokens as i64));
        assert_eq!(int_attr(s, "gen_ai.usage.output_tokens"), Some(u.output_tokens as i64));
        assert_eq!(int_attr(s, "tinyagents.cost_picodollars"), Some(c.picodollars() as i64));
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
    }
    let models: Vec<&Span> = spans
        .iter()
        .filter(|s| str_attr(s, "gen_ai.operation.name").as_deref() == Some("chat"))
        .collect();
    let tools: Vec<&Span> = spans
        .iter()
        .filter(|s| str_attr(s, "gen_ai.operation.name").as_deref() == Some("execute_tool"))
        .collect();
    if with_calls {
        let model_calls: u32 = tree.nodes().iter().map(|n| n.model_calls).sum();
        let tool_calls: u32 = tree.nodes().iter().map(|n| n.tool_calls).sum();
        assert_eq!(models.len() as u32, model_calls);
        assert_eq!(tools.len() as u32, tool_calls);
        for s in models.iter().chain(tools.iter()) {
            let run: RunId = str_attr(s, "tinyagents.run_id").unwrap().parse().unwrap();
            assert_eq!(
                by_span_id.get(s.parent_span_id.as_slice()),
                Some(&run),
                "call span under its run"
            );
        }
        for s in &models {
            assert!(str_attr(s, "gen_ai.request.model").unwrap().starts_with("model-"));
            assert!(int_attr(s, "gen_ai.usage.input_tokens").unwrap() > 100);
            assert!(int_attr(s, "gen_ai.usage.output_tokens").unwrap() > 0);
        }
        assert!(
            tools
                .iter()
                .all(|s| str_attr(s, "gen_ai.tool.name").as_deref().unwrap().starts_with("level"))
        );
    } else {
        assert!(models.is_empty() && tools.is_empty());
    }
}

#[test]
fn live_sink_spans_reproduce_a_three_level_run_tree_exactly() {
    let c = collector();
    let otel = OtelSink::new(OtelConfig::new(&c.url).service_name("otel-test")).unwrap();
    let live = CollectingSink::new();
    let config = RunConfig::new()
        .sink(Arc::new(TeeSink(otel.clone(), live.clone())))
        .prices(prices());
    let agent = tree(0, 3, 2, Arc::new(AtomicU64::new(0)), &Wrap::none());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(agent.run_with(&config, "go")).unwrap();
    let report = otel.close().unwrap();
    assert_eq!(report.run_spans, 15);
    assert_eq!(report.unfinished, 0);
    let tree = RunTree::from_events(&live.events());
    assert_eq!(tree.summary().total_usage, out.total_usage);
    let spans = c.spans.lock().unwrap().clone();
    assert_spans_mirror_tree(&spans, &tree, true);
}

#[test]
fn a_recorded_trace_exports_the_same_tree_and_model_and_tool_spans() {
    let c = collector();
    let dir = temp_dir("otel");
    let sink = TraceSink::new(TraceConfig::new(&dir).detail(DetailLevel::ModelIo)).unwrap();
    let agent = tree(0, 2, 3, Arc::new(AtomicU64::new(0)), &Wrap::none());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let out = rt
        .block_on(agent.run_with(&RunConfig::new().sink(sink.clone()).prices(prices()), "go"))
        .unwrap();
    sink.close().unwrap();
    let store = TraceStore::new(&dir);
    let report = export_trace(&store.trace_path(out.run.run_id), &OtelConfig::new(&c.url)).unwrap();
    assert_eq!(report.run_spans, 13);
    let loaded = store.load(&out.run.run_id.to_string()).unwrap();
    let spans = c.spans.lock().unwrap().clone();
    assert_spans_mirror_tree(&spans, &loaded.tree, true);
}

#[test]
fn an_unreachable_endpoint_is_an_error_not_a_hang() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = OtelConfig::new(format!("http://127.0.0.1:{port}/v1/traces"));
    cfg.timeout = std::time::Duration::from_secs(2);
    let otel = OtelSink::new(cfg).unwrap();
    let root = tinyagents_core::RunContext::root("r", &RunConfig::new().sink(otel.clone()));
    root.emit(tinyagents_core::EventKind::RunStarted { name: "r".into() });
    root.emit(run_completed());
    assert!(otel.close().is_err());
}
