//! Agent trees shared by the trace integration tests.
#![allow(dead_code)]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tinyagents_core::{
    EventKind, Message, ModelRequest, ModelResponse, Price, PriceTable, RunConfig, RunContext, RunId, SharedModel,
    ToolCall, Usage,
};
use tinyagents_harness::{Agent, SubAgent};
use tinyagents_providers::ScriptedModel;
use tinyagents_trace::{IoRecorder, TraceSink, TracedModel};

/// A fresh, empty directory under the target dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ta-trace-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The end of a run that used nothing and saw no failure.
pub fn run_completed() -> EventKind {
    EventKind::RunCompleted {
        usage: Default::default(),
        total_usage: Default::default(),
        total_cost: Default::default(),
        failures: 0,
    }
}

/// A root named `name` that starts and ends at once, traced by `sink`.
pub fn finished_root(sink: &Arc<TraceSink>, name: &str) -> RunId {
    let root = RunContext::root(name, &RunConfig::new().sink(sink.clone()));
    root.emit(EventKind::RunStarted { name: name.into() });
    root.emit(run_completed());
    root.run_id()
}

pub fn after_tools(req: &ModelRequest) -> bool {
    matches!(req.messages.last(), Some(Message::Tool { .. }))
}

pub fn last_text(req: &ModelRequest) -> String {
    req.messages
        .last()
        .and_then(Message::text)
        .unwrap_or_default()
        .to_string()
}

/// Distinct usage per call so a missing or doubled call shows in sums.
pub fn counting_usage(counter: &AtomicU64) -> Usage {
    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
    Usage {
        input_tokens: 100 + n,
        output_tokens: n * 3,
        requests: 1,
        ..Usage::default()
    }
}

pub fn prices() -> PriceTable {
    let mut t = PriceTable::new();
    for level in 0..=6 {
        t.insert(
            format!("model-{level}"),
            Price::per_mtok(0.15 * f64::from(level + 1), 0.6),
        );
    }
    t
}

/// How a test wants models wrapped (model I/O recording) or not.
#[derive(Clone)]
pub struct Wrap(pub Option<Arc<dyn IoRecorder>>);

impl Wrap {
    pub fn none() -> Self {
        Self(None)
    }
    pub fn model(&self, m: ScriptedModel) -> SharedModel {
        let m: SharedModel = Arc::new(m);
        match &self.0 {
            Some(r) => TracedModel::shared(m, r.clone()),
            None => m,
        }
    }
}

/// An agent at `level` named `level{level}` fanning out to `fan` children
/// of the next level, down to `depth`.
pub fn tree(level: u32, depth: u32, fan: usize, counter: Arc<AtomicU64>, wrap: &Wrap) -> Agent {
    let name = format!("level{level}");
    if level == depth {
        let c = counter.clone();
        return Agent::builder(name)
            .shared_model(
                wrap.model(
                    ScriptedModel::from_fn(move |req| {
                        Ok(ModelResponse::text(format!("leaf answer to {}", last_text(req)))
                            .with_usage(counting_usage(&c)))
                    })
                    .with_id(format!("model-{level}")),
                ),
            )
            .build();
    }
    let child = tree(level + 1, depth, fan, counter.clone(), wrap);
    let child_name = child.name().to_string();
    let c = counter;
    let model = ScriptedModel::from_fn(move |req| {
        let r = if after_tools(req) {
            ModelResponse::text("joined")
        } else {
            ModelResponse::tool_calls(
                (0..fan)
                    .map(|i| {
                        ToolCall::new(
                            format!("c{i}"),
                            child_name.as_str(),
                            &serde_json::json!({"input": format!("task {i}")}),
                        )
                    })
                    .collect(),
            )
        };
        Ok(r.with_usage(counting_usage(&c)))
    })
    .with_id(format!("model-{level}"));
    Agent::builder(name)
        .system(format!("You are level {level}."))
        .shared_model(wrap.model(model))
        .subagent(SubAgent::new(child))
        .build()
}

/// A root fanning out to `fan` workers; worker inputs listed in `failing`
/// fail (their model errors).
pub fn fan_out(fan: usize, failing: &[usize], wrap: &Wrap) -> Agent {
    let failing: Vec<String> = failing.iter().map(|i| format!("task {i}")).collect();
    let worker = Agent::builder("worker")
        .shared_model(
            wrap.model(
                ScriptedModel::from_fn(move |req| {
                    let t = last_text(req);
                    if failing.contains(&t) {
                        Err(tinyagents_core::ModelError::Other {
                            message: format!("worker failed on {t}"),
                        })
                    } else {
                        Ok(ModelResponse::text("ok").with_usage(Usage::call(10, 2)))
                    }
                })
                .with_id("model-1"),
            ),
        )
        .build();
    let model = ScriptedModel::from_fn(move |req| {
        if after_tools(req) {
            Ok(ModelResponse::text("all done").with_usage(Usage::call(7, 1)))
        } else {
            Ok(ModelResponse::tool_calls(
                (0..fan)
                    .map(|i| {
                        ToolCall::new(
                            format!("c{i}"),
                            "worker",
                            &serde_json::json!({"input": format!("task {i}")}),
                        )
                    })
                    .collect(),
            )
            .with_usage(Usage::call(5, 5)))
        }
    })
    .with_id("model-0");
    Agent::builder("boss")
        .shared_model(wrap.model(model))
        .subagent(SubAgent::new(worker))
        .build()
}

/// Every line of a trace file, decompressed.
pub fn raw_lines(path: &std::path::Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let text = zstd::stream::decode_all(&bytes[..]).unwrap();
    String::from_utf8(text).unwrap().lines().map(str::to_string).collect()
}

/// The kind of every record after the header (`run_started`, `model_io`, …),
/// read through the trace reader (the lines themselves are compact).
pub fn record_kinds(path: &std::path::Path) -> Vec<String> {
    tinyagents_trace::TraceReader::open(path)
        .unwrap()
        .map(|r| match r.unwrap() {
            tinyagents_trace::Record::Event(e) => e.kind.name().to_string(),
            tinyagents_trace::Record::ModelIo(_) => "model_io".to_string(),
            tinyagents_trace::Record::Other(o) => o.kind,
        })
        .collect()
}
