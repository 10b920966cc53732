//! The SQLite trace backend: round trips against the live tree and the
//! JSONL trace of the same run, runs in progress, retention, bad databases.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use common::*;
use tinyagents_core::{CollectingSink, Event, EventKind, RunConfig, RunContext, RunId, TeeSink};
use tinyagents_trace::{
    DetailLevel, RenderOptions, Retention, RunStatus, RunTree, TraceConfig, TraceError, TraceLocation, TraceSink,
    TraceStatus, TraceStore, keeps, render_tree,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_tree_shown_from_the_sqlite_trace_equals_the_live_tree_and_the_jsonl_trace_and_totals_match_the_roll_up() {
    let dir = temp_dir("sqlite-roundtrip");
    let db = dir.join("traces.sqlite");
    let files = TraceSink::new(TraceConfig::new(dir.join("files"))).unwrap();
    let rows = TraceSink::new(TraceConfig::sqlite(&db)).unwrap();
    let live = CollectingSink::new();
    let config = RunConfig::new()
        .sink(Arc::new(TeeSink(
            files.clone(),
            Arc::new(TeeSink(rows.clone(), live.clone())),
        )))
        .prices(prices());
    let agent = tree(0, 3, 3, Arc::new(AtomicU64::new(0)), &Wrap::none());
    let out = rt().block_on(agent.run_with(&config, "go")).unwrap();
    files.close().unwrap();
    let report = rows.close().unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.roots.len(), 1);
    assert!(rows.store().is_sqlite());

    let store = TraceStore::sqlite(&db);
    let root = out.run.run_id;
    let loaded = store.load(&root.to_string()[..8]).unwrap();
    assert!(loaded.damage.is_empty(), "{:?}", loaded.damage);
    assert_eq!(loaded.location, TraceLocation::Sqlite { db: db.clone(), root });
    let seen: Vec<Event> = live
        .events()
        .into_iter()
        .filter(|e| keeps(DetailLevel::Lifecycle, &e.kind))
        .collect();
    let live_tree = RunTree::from_events(&seen);
    let opts = RenderOptions::full();
    assert_eq!(render_tree(&loaded.tree, &opts), render_tree(&live_tree, &opts));
    let from_file = TraceStore::new(dir.join("files")).load(&root.to_string()).unwrap();
    assert_eq!(
        loaded.tree.to_json(),
        from_file.tree.to_json(),
        "same tree as the JSONL trace"
    );

    let s = loaded.tree.summary();
    assert_eq!(s.counts.runs, 40);
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(s.total_usage, out.total_usage);
    assert_eq!(s.total_cost, out.total_cost);

    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    let m = &listed[0].manifest;
    assert!(!listed[0].rebuilt, "the final manifest is stored");
    assert_eq!(m.status, TraceStatus::Completed);
    assert_eq!((m.agents, m.max_depth), (40, 3));
    assert_eq!(m.usage, out.total_usage);
    assert_eq!(m.cost, out.total_cost);
    assert_eq!(m.events, report.lines);
    assert!(m.bytes > 0);

    // A run's records, for the UI's detail view.
    let leaf = loaded.tree.nodes().iter().find(|n| n.depth == 3).unwrap().run_id;
    let records = store.run_records(root, leaf).unwrap();
    assert!(records.len() >= 2, "{records:?}");
    assert!(records.iter().all(|r| r.run_id() == Some(leaf)));

    // The lines are the JSONL lines (compact: `k` = `rs` is `run_started`),
    // queryable with SQLite's JSON functions.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let started: i64 = conn
        .query_row(
            "SELECT count(*) FROM trace_lines WHERE json_extract(line, '$.k') = 'rs'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(started, 40);
}

#[test]
fn a_run_in_progress_is_listed_from_its_rows_and_later_runs_share_the_database() {
    let dir = temp_dir("sqlite-running");
    let db = dir.join("t.db");
    // The database already holds someone else's table (the graph
    // checkpointer's, say): the trace tables sit beside it.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE checkpoints (id INTEGER PRIMARY KEY); INSERT INTO checkpoints VALUES (7);")
            .unwrap();
    }
    let sink = TraceSink::new(TraceConfig::sqlite(&db)).unwrap();
    let root = RunContext::root("long", &RunConfig::new().sink(sink.clone()));
    root.emit(EventKind::RunStarted { name: "long".into() });
    let child = root
        .spawn_child("helper", &Default::default(), tinyagents_core::ChildEvents::Parent)
        .unwrap();
    child.emit(EventKind::RunStarted { name: "helper".into() });
    sink.flush().unwrap();

    let store = TraceStore::sqlite(&db);
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].rebuilt, "summarized from its rows while it runs");
    assert_eq!(listed[0].manifest.status, TraceStatus::Running);
    assert_eq!(listed[0].manifest.agents, 2);
    assert_eq!(listed[0].manifest.name, "long");

    let done = RunContext::root("short", &RunConfig::new().sink(sink.clone()));
    done.emit(EventKind::RunStarted { name: "short".into() });
    done.emit(run_completed());
    sink.close().unwrap();
    let names: Vec<String> = store.list().unwrap().into_iter().map(|e| e.manifest.name).collect();
    assert_eq!(names, ["long", "short"]);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let kept: i64 = conn.query_row("SELECT id FROM checkpoints", [], |r| r.get(0)).unwrap();
    assert_eq!(kept, 7, "other tables are untouched");
}

#[test]
fn pruning_a_sqlite_store_removes_the_oldest_roots_rows_and_a_dry_run_removes_nothing() {
    let dir = temp_dir("sqlite-prune");
    let db = dir.join("t.db");
    let sink = TraceSink::new(TraceConfig::sqlite(&db)).unwrap();
    let ids: Vec<RunId> = (0..4)
        .map(|i| {
            let id = finished_root(&sink, &format!("run{i}"));
            std::thread::sleep(std::time::Duration::from_millis(2));
            id
        })
        .collect();
    sink.close().unwrap();
    let store = TraceStore::sqlite(&db);
    let keep_two = Retention {
        max_traces: Some(2),
        ..Retention::default()
    };
    let plan = store.prune_plan(&keep_two).unwrap();
    assert_eq!(
        plan.removed.iter().map(|p| p.root_run_id).collect::<Vec<_>>(),
        ids[..2].to_vec()
    );
    assert_eq!(store.list().unwrap().len(), 4, "a dry run removes nothing");
    let report = store.prune(&keep_two).unwrap();
    assert_eq!(report.removed, plan.removed);
    assert!(report.removed.iter().all(|p| p.bytes > 0 && p.reason == "max_traces"));
    let left: Vec<RunId> = store.list().unwrap().iter().map(|e| e.manifest.root_run_id).collect();
    assert_eq!(left, ids[2..].to_vec());
    assert!(matches!(
        store.load(&ids[0].to_string()),
        Err(TraceError::UnknownRun { .. })
    ));
}

#[test]
fn a_corrupt_database_file_is_a_clear_error_for_the_sink_and_the_store() {
    let dir = temp_dir("sqlite-corrupt");
    let db = dir.join("garbage.db");
    std::fs::write(&db, vec![0x5au8; 8192]).unwrap();
    let err = TraceSink::new(TraceConfig::sqlite(&db)).unwrap_err();
    assert!(matches!(err, TraceError::NotATrace { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("garbage.db") && text.contains("not a usable SQLite database"),
        "{text}"
    );
    let err = TraceStore::sqlite(&db).list().unwrap_err();
    assert!(err.to_string().contains("not a usable SQLite database"), "{err}");
    // A missing database holds no traces (as an empty directory would).
    assert!(TraceStore::sqlite(dir.join("none.db")).list().unwrap().is_empty());
}

#[test]
fn a_database_from_a_newer_format_or_with_a_corrupt_row_says_so_and_the_rest_is_read() {
    let dir = temp_dir("sqlite-damage");
    let db = dir.join("t.db");
    let sink = TraceSink::new(TraceConfig::sqlite(&db)).unwrap();
    let root = finished_root(&sink, "damaged");
    sink.close().unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "INSERT INTO trace_lines (root_run_id, n, line) VALUES (?1, 1000, '{not json')",
        [root.to_string()],
    )
    .unwrap();
    let loaded = TraceStore::sqlite(&db).load(&root.to_string()).unwrap();
    assert_eq!(loaded.damage.len(), 1);
    assert!(matches!(loaded.damage[0], TraceError::CorruptLine { .. }));
    assert!(loaded.damage[0].to_string().contains(&root.to_string()));
    assert_eq!(loaded.tree.summary().status, RunStatus::Completed, "the rest is read");

    conn.execute("UPDATE trace_meta SET value = '99' WHERE key = 'version'", [])
        .unwrap();
    let err = TraceStore::sqlite(&db).list().unwrap_err();
    assert!(matches!(err, TraceError::NewerFormat { found: 99, .. }), "{err:?}");
    assert!(err.to_string().contains("upgrade tinyagents"));
    let err = TraceSink::new(TraceConfig::sqlite(&db)).unwrap_err();
    assert!(matches!(err, TraceError::NewerFormat { .. }), "{err:?}");
}
