//! The HTTP server: embedded assets and a small JSON API.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /` , `/app.js`, `/app.css` | the page (embedded with `include_str!`) |
//! | `GET /api/summary` | roll-up totals ([`TreeSummary`]), mode, version |
//! | `GET /api/tree` | every run, pre-order, as compact rows (see [`TreeRows`]) |
//! | `GET /api/run/{id}` | one run: its node, totals, records and transcript |
//! | `GET /api/updates` | server-sent events: `version` each time a live tree changes |
//! | `POST /api/run/{id}/{pause,resume,cancel}` | steering, through a [`ControlHandler`] |
//!
//! An unknown run is a `404` with a JSON `{"error": …}`; steering without a
//! handler is a `501` "steering not available"; a request the steering
//! policy refuses is a `403` and one that cannot be carried out (the run
//! already ended) a `409`, both with the reason, which the page shows.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use tinyagents_core::{Message, RunId};
use tinyagents_trace::{LoadedTrace, ModelIoRecord, Record, RunTree, TraceLocation, TreeSummary, transcript_of};

use crate::control::{ControlAction, ControlError, ControlHandler, NoSteering};
use crate::live::LiveHub;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// What the debugger shows.
#[derive(Clone)]
pub enum UiSource {
    /// A recorded trace (already loaded), with the file to read run details from.
    Recorded {
        /// Where the trace lives (run details are read from it on demand).
        location: TraceLocation,
        /// Its tree.
        tree: Arc<RunTree>,
        /// Damage met while loading, rendered (shown as a banner).
        damage: Vec<String>,
    },
    /// A run in progress.
    Live(Arc<LiveHub>),
}

impl std::fmt::Debug for UiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Recorded { location, .. } => f
                .debug_struct("Recorded")
                .field("location", location)
                .finish_non_exhaustive(),
            Self::Live(_) => f.write_str("Live"),
        }
    }
}

impl UiSource {
    /// A recorded trace loaded with [`tinyagents_trace::load_tree`] or
    /// [`TraceStore::load`](tinyagents_trace::TraceStore::load).
    pub fn recorded(loaded: LoadedTrace) -> Self {
        Self::Recorded {
            location: loaded.location,
            tree: Arc::new(loaded.tree),
            damage: loaded.damage.iter().map(ToString::to_string).collect(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    source: UiSource,
    control: Arc<dyn ControlHandler>,
}

impl AppState {
    fn with_tree<T>(&self, f: impl FnOnce(&RunTree) -> T) -> T {
        match &self.source {
            UiSource::Recorded { tree, .. } => f(tree),
            UiSource::Live(hub) => match hub.state.read() {
                Ok(s) => f(&s.tree),
                Err(_) => f(&RunTree::new()),
            },
        }
    }

    fn version(&self) -> u64 {
        match &self.source {
            UiSource::Recorded { .. } => 0,
            UiSource::Live(hub) => hub.version(),
        }
    }
}

/// The router, for embedding the debugger in another server.
pub fn router(source: UiSource, control: Option<Arc<dyn ControlHandler>>) -> Router {
    let state = AppState {
        source,
        control: control.unwrap_or_else(|| Arc::new(NoSteering)),
    };
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/app.css", get(app_css))
        .route("/api/summary", get(summary))
        .route("/api/tree", get(tree))
        .route("/api/run/{id}", get(run))
        .route("/api/run/{id}/{action}", post(steer))
        .route("/api/updates", get(updates))
        .with_state(state)
}

async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML)
}

async fn app_js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS)
}

async fn app_css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The summary answer.
#[derive(serde::Serialize)]
struct SummaryBody {
    mode: &'static str,
    version: u64,
    summary: TreeSummary,
    damage: Vec<String>,
    steering: bool,
}

async fn summary(State(s): State<AppState>) -> Response {
    let summary = s.with_tree(RunTree::summary);
    let (mode, damage) = match &s.source {
        UiSource::Recorded { damage, .. } => ("recorded", damage.clone()),
        UiSource::Live(hub) => ("live", hub.follow_errors()),
    };
    Json(SummaryBody {
        mode,
        version: s.version(),
        summary,
        damage,
        steering: s.control.available(),
    })
    .into_response()
}

/// Every run as compact rows, pre-order: `[id, parent_index, name, depth,
/// status, started_us, ended_us, input_tokens, output_tokens,
/// cost_picodollars, error, rationale, summarized]` (`parent_index` is -1
/// at the top; times are relative to `t0`).
#[derive(serde::Serialize)]
pub struct TreeRows {
    /// Update number (live) or 0 (recorded).
    pub version: u64,
    /// Earliest start; row times are relative to it (µs).
    pub t0: u64,
    /// Latest end or event (µs, relative to `t0`).
    pub t1: u64,
    /// The roll-up.
    pub summary: TreeSummary,
    /// The rows.
    pub rows: Vec<serde_json::Value>,
}

pub(crate) fn tree_rows(tree: &RunTree, version: u64) -> TreeRows {
    let order = tree.preorder();
    let totals = tree.subtree_totals();
    let summary = tree.summary();
    let t0 = summary.started_us.unwrap_or(0);
    let mut t1 = 0u64;
    let mut pos = vec![-1i64; tree.len()];
    for (k, &i) in order.iter().enumerate() {
        if let Some(p) = pos.get_mut(i) {
            *p = k as i64;
        }
    }
    let rows = order
        .iter()
        .filter_map(|&i| {
            let n = tree.node_at(i)?;
            let (u, c) = totals.get(i).copied()?;
            let rel = |t: Option<u64>| t.map(|t| t.saturating_sub(t0));
            if let Some(e) = rel(n.ended_us).or(rel(n.started_us)) {
                t1 = t1.max(e);
            }
            let parent = n.parent.and_then(|p| pos.get(p).copied()).unwrap_or(-1);
            Some(serde_json::json!([
                n.run_id.to_string(),
                parent,
                &*n.name,
                n.depth,
                n.display_status(),
                rel(n.started_us),
                rel(n.ended_us),
                u.input_tokens,
                u.output_tokens,
                c.picodollars(),
                n.error,
                n.rationale,
                n.summarized,
            ]))
        })
        .collect();
    TreeRows {
        version,
        t0,
        t1,
        summary,
        rows,
    }
}

async fn tree(State(s): State<AppState>) -> Response {
    let version = s.version();
    let rows = s.with_tree(|t| tree_rows(t, version));
    Json(rows).into_response()
}

/// The detail answer for one run.
#[derive(serde::Serialize)]
struct RunBody {
    node: serde_json::Value,
    total_usage: tinyagents_core::Usage,
    total_cost: tinyagents_core::Cost,
    latency_us: Option<u64>,
    children: usize,
    records: Vec<serde_json::Value>,
    transcript: Vec<Message>,
}

async fn run(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(run_id) = id.parse::<RunId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid run id {id:?}: expected 32 hex digits"),
        );
    };
    let found = s.with_tree(|t| {
        let i = t.index_of(run_id)?;
        let n = t.node_at(i)?;
        let (u, c) = t.subtree_totals().get(i).copied()?;
        Some((
            serde_json::to_value(n).unwrap_or_default(),
            u,
            c,
            n.latency_us(),
            n.children.len(),
        ))
    });
    let Some((node, total_usage, total_cost, latency_us, children)) = found else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown run {run_id}: not in this trace"),
        );
    };
    let records: Vec<Record> = match &s.source {
        UiSource::Recorded { location, .. } => {
            let location = location.clone();
            match tokio::task::spawn_blocking(move || location.run_records(run_id)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        UiSource::Live(hub) => hub
            .state
            .read()
            .ok()
            .and_then(|st| st.records.get(&run_id).cloned())
            .unwrap_or_default(),
    };
    let ios: Vec<&ModelIoRecord> = records
        .iter()
        .filter_map(|r| match r {
            Record::ModelIo(m) if m.run_id == run_id => Some(m),
            _ => None,
        })
        .collect();
    let transcript = transcript_of(&ios);
    Json(RunBody {
        node,
        total_usage,
        total_cost,
        latency_us,
        children,
        records: records.iter().map(Record::to_json).collect(),
        transcript,
    })
    .into_response()
}

async fn steer(State(s): State<AppState>, Path((id, action)): Path<(String, String)>) -> Response {
    let Ok(run_id) = id.parse::<RunId>() else {
        return error(StatusCode::BAD_REQUEST, format!("invalid run id {id:?}"));
    };
    let Some(action) = ControlAction::parse(&action) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown action {action:?} (pause, resume, cancel)"),
        );
    };
    if s.with_tree(|t| t.index_of(run_id)).is_none() {
        return error(StatusCode::NOT_FOUND, format!("unknown run {run_id}"));
    }
    // A handler may block (a control-socket round trip): off the async workers.
    let control = s.control.clone();
    let outcome = match tokio::task::spawn_blocking(move || control.control(run_id, action)).await {
        Ok(outcome) => outcome,
        Err(e) => Err(ControlError::Failed(format!("steering handler failed: {e}"))),
    };
    match outcome {
        Ok(message) => Json(serde_json::json!({ "ok": true, "message": message })).into_response(),
        Err(ControlError::NotAvailable) => error(StatusCode::NOT_IMPLEMENTED, "steering not available"),
        Err(ControlError::UnknownRun) => error(StatusCode::NOT_FOUND, format!("unknown run {run_id}")),
        Err(ControlError::Denied(why)) => error(StatusCode::FORBIDDEN, why),
        Err(ControlError::Failed(why)) => error(StatusCode::CONFLICT, why),
    }
}

async fn updates(State(s): State<AppState>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = match &s.source {
        UiSource::Live(hub) => Some(hub.changes.clone()),
        UiSource::Recorded { .. } => None,
    };
    let stream = futures::stream::unfold(rx, |rx| async move {
        let mut rx = rx?;
        // Coalesce bursts: at most a few updates a second.
        if rx.changed().await.is_err() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let v = *rx.borrow_and_update();
        Some((Ok(SseEvent::default().event("version").data(v.to_string())), Some(rx)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
