//! Shared helpers of the UI tests: agent trees, traces, an HTTP client and
//! a headless Chromium session.
#![allow(dead_code)]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tinyagents_core::{
    BoxFuture, Message, Model, ModelError, ModelRequest, ModelResponse, Price, PriceTable, SharedModel, ToolCall, Usage,
};
use tinyagents_harness::{Agent, SubAgent};
use tinyagents_providers::ScriptedModel;
use tinyagents_trace::{IoRecorder, TracedModel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ta-ui-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn prices() -> PriceTable {
    PriceTable::new()
        .with("model-root", Price::per_mtok(1.0, 4.0))
        .with("model-mid", Price::per_mtok(0.5, 2.0))
        .with("model-leaf", Price::per_mtok(0.25, 1.0))
}

fn after_tools(req: &ModelRequest) -> bool {
    matches!(req.messages.last(), Some(Message::Tool { .. }))
}

fn last_text(req: &ModelRequest) -> String {
    req.messages
        .last()
        .and_then(Message::text)
        .unwrap_or_default()
        .to_string()
}

pub fn wrap(m: impl Model, rec: &Option<Arc<dyn IoRecorder>>) -> SharedModel {
    let m: SharedModel = Arc::new(m);
    match rec {
        Some(r) => TracedModel::shared(m, r.clone()),
        None => m,
    }
}

/// A model that delegates to `child` twice, then joins.
fn delegating(child: &'static str, id: &str, usage: Usage) -> ScriptedModel {
    ScriptedModel::from_fn(move |req| {
        if after_tools(req) {
            Ok(ModelResponse::text(format!("joined: {}", last_text(req))).with_usage(usage))
        } else {
            Ok(ModelResponse::tool_calls(vec![
                ToolCall::new("a", child, &serde_json::json!({"input": "part A"})),
                ToolCall::new("b", child, &serde_json::json!({"input": "part B"})),
            ])
            .with_usage(usage))
        }
    })
    .with_id(id)
}

/// A 3-level team: `orchestrator` → 2 × `researcher` → 2 × `fact-checker`.
/// The fact-checker asked about "part B" of the first researcher fails.
pub fn three_level(rec: &Option<Arc<dyn IoRecorder>>) -> Agent {
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let leaf = Agent::builder("fact-checker")
        .system("Check one fact.")
        .shared_model(wrap(
            ScriptedModel::from_fn(move |req| {
                let n = c.fetch_add(1, Ordering::SeqCst);
                if n == 1 {
                    Err(ModelError::Other {
                        message: "upstream timeout while checking".into(),
                    })
                } else {
                    Ok(ModelResponse::text(format!("checked {}", last_text(req))).with_usage(Usage::call(40 + n, 9)))
                }
            })
            .with_id("model-leaf"),
            rec,
        ))
        .build();
    let mid = Agent::builder("researcher")
        .system("Research, then have facts checked.")
        .shared_model(wrap(delegating("fact-checker", "model-mid", Usage::call(120, 30)), rec))
        .subagent(SubAgent::new(leaf))
        .build();
    Agent::builder("orchestrator")
        .system("Split the question.")
        .shared_model(wrap(delegating("researcher", "model-root", Usage::call(300, 60)), rec))
        .subagent(SubAgent::new(mid))
        .build()
}

/// A model that answers only once `gate` opens.
pub struct GatedModel {
    pub gate: tokio::sync::watch::Receiver<bool>,
    pub response: ModelResponse,
}

impl Model for GatedModel {
    fn id(&self) -> &str {
        "model-leaf"
    }
    fn complete<'a>(&'a self, _: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let mut g = self.gate.clone();
            while !*g.borrow_and_update() {
                if g.changed().await.is_err() {
                    break;
                }
            }
            Ok(self.response.clone())
        })
    }
}

/// `boss` fans out to `workers` gated `worker`s, then answers "all done".
pub fn gated_team(gate: tokio::sync::watch::Receiver<bool>, workers: usize) -> tinyagents_harness::Agent {
    use tinyagents_core::{ModelResponse, ToolCall, Usage};
    let worker = tinyagents_harness::Agent::builder("worker")
        .model(GatedModel {
            gate,
            response: ModelResponse::text("done").with_usage(Usage::call(11, 3)),
        })
        .build();
    tinyagents_harness::Agent::builder("boss")
        .model(
            tinyagents_providers::ScriptedModel::new([
                ModelResponse::tool_calls(
                    (0..workers)
                        .map(|i| {
                            ToolCall::new(
                                format!("c{i}"),
                                "worker",
                                &serde_json::json!({"input": format!("job {i}")}),
                            )
                        })
                        .collect(),
                )
                .with_usage(Usage::call(20, 5)),
                ModelResponse::text("all done").with_usage(Usage::call(30, 2)),
            ])
            .with_id("model-root"),
        )
        .subagent(tinyagents_harness::SubAgent::new(worker))
        .build()
}

/// A minimal HTTP/1.1 client: (status, body).
pub async fn http(method: &str, url_base: &str, path: &str) -> (u16, String) {
    let host = url_base.trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut s = tokio::net::TcpStream::connect(&host).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

pub async fn get_json(base: &str, path: &str) -> (u16, serde_json::Value) {
    let (s, b) = http("GET", base, path).await;
    (s, serde_json::from_str(&b).unwrap_or(serde_json::Value::Null))
}

/// Headless Chromium driven through chromedriver.
pub struct Browser {
    pub client: fantoccini::Client,
    driver: std::process::Child,
    _profile: PathBuf,
}

fn find_exe(names: &[&str]) -> Option<PathBuf> {
    for n in names {
        for dir in std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .chain(["/usr/bin", "/usr/lib/chromium"])
        {
            let p = PathBuf::from(dir).join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium, or says why not.
    pub async fn start(test: &str) -> Result<Self, String> {
        let chromium =
            find_exe(&["chromium", "chromium-browser", "google-chrome"]).ok_or("chromium is not installed")?;
        let driver_exe = find_exe(&["chromedriver"]).ok_or("chromedriver is not installed")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = std::process::Command::new(driver_exe)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start chromedriver: {e}"))?;
        let profile = temp_dir(&format!("chrome-{test}"));
        let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--window-size=1400,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }))
        .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let mut last = String::new();
        for _ in 0..100 {
            let conn = hyper_util::client::legacy::connect::HttpConnector::new();
            match fantoccini::ClientBuilder::new(conn)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Ok(Self {
                        client,
                        driver,
                        _profile: profile,
                    });
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut driver = driver;
        let _ = driver.kill();
        Err(format!("chromedriver did not start a session: {last}"))
    }

    /// Evaluates `expr` (a JS expression).
    pub async fn eval(&self, expr: &str) -> serde_json::Value {
        self.client.execute(&format!("return ({expr});"), vec![]).await.unwrap()
    }

    /// Waits until `expr` is truthy (20 s at most), returning its value.
    pub async fn wait_for(&self, what: &str, expr: &str) -> serde_json::Value {
        for _ in 0..400 {
            let v = self.eval(expr).await;
            let truthy = match &v {
                serde_json::Value::Null => false,
                serde_json::Value::Bool(b) => *b,
                serde_json::Value::String(s) => !s.is_empty(),
                serde_json::Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what} ({expr})");
    }

    /// Waits until the page shows the root completed and `text` as its
    /// total tokens, returning what the page shows.
    pub async fn wait_for_completed_root(&self, text: &str) -> serde_json::Value {
        self.wait_for(
            "the root completes",
            "document.getElementById('root-status').textContent === 'completed'",
        )
        .await;
        self.wait_for(
            "final totals",
            &format!(
                "document.getElementById('total-tokens').textContent === '{text}' && document.getElementById('total-tokens').textContent"
            ),
        )
        .await
    }

    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let path = artifacts_dir().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Skips a browser test with a reason when Chromium is not available.
#[macro_export]
macro_rules! browser_or_skip {
    ($name:expr) => {
        match common::Browser::start($name).await {
            Ok(b) => b,
            Err(why) => {
                eprintln!("SKIPPED {}: {why} (install with scripts/install-browser.sh)", $name);
                return;
            }
        }
    };
}

/// A gated team started into a trace sink, and the debugger following the
/// trace it writes (what `tinyagents ui` serves for a run still going).
pub struct FollowedRun {
    /// Opens the gate: the workers finish.
    pub open: tokio::sync::watch::Sender<bool>,
    /// The run.
    pub run: tokio::task::JoinHandle<Result<tinyagents_harness::AgentOutput, tinyagents_core::RunError>>,
    /// Its root.
    pub root: tinyagents_core::RunId,
    /// The debugger.
    pub ui: tinyagents_ui::UiHandle,
}

/// Starts `gated_team(_, 3)` into `sink` and serves the trace `store` gets
/// once the root's first block is flushed.
pub async fn follow_gated_team(
    sink: Arc<tinyagents_trace::TraceSink>,
    store: &tinyagents_trace::TraceStore,
) -> FollowedRun {
    let (open, gate) = tokio::sync::watch::channel(false);
    let boss = gated_team(gate, 3);
    let config = tinyagents_core::RunConfig::new().sink(sink).prices(prices());
    let run = tokio::spawn(async move { boss.run_with(&config, "go").await });
    // The root is in the store once its first block is flushed.
    let root = loop {
        if let Some(e) = store.list().unwrap().first() {
            break e.manifest.root_run_id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let source = tinyagents_ui::UiSource::Live(tinyagents_ui::LiveHub::follow(store.location(root)));
    let ui = tinyagents_ui::serve(source, tinyagents_ui::loopback(0), None)
        .await
        .unwrap();
    FollowedRun { open, run, root, ui }
}
