//! The Checkpointer contract, run against both backends: checkpoints and
//! their changed values, write batches (later results replace earlier
//! ones), listing, ids, byte counts, and newer formats refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use tinyagents_core::RunId;
use tinyagents_store::{
    ChannelValue, CheckpointRecord, Checkpointer, FORMAT_VERSION, MemoryCheckpointer, SqliteCheckpointer, StoreError,
    TaskExtra, TaskRecord, TaskWritesRecord,
};

fn record(id: u64, parent: Option<u64>, versions: &[(&str, u64)]) -> CheckpointRecord {
    CheckpointRecord {
        format: FORMAT_VERSION,
        thread_id: "t".into(),
        namespace: String::new(),
        checkpoint_id: id,
        parent_id: parent,
        step: id - 1,
        source: "loop".into(),
        graph_id: "g".into(),
        run_id: RunId::new(),
        channel_versions: versions
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>(),
        recursion_stack: vec![],
        child_runs: vec![],
        interrupts: vec![],
        pending_steering: vec![json!({"kind": "redirect"})],
        extra: json!({"barriers": []}),
    }
}

fn value(channel: &str, version: u64, v: serde_json::Value) -> ChannelValue {
    ChannelValue {
        channel: channel.into(),
        version,
        value: Arc::new(v),
    }
}

fn contract(store: &dyn Checkpointer) {
    assert!(store.get_checkpoint("t", "", None).unwrap().is_none());
    assert_eq!(store.next_checkpoint_id("t", "").unwrap(), 1);
    let tasks = vec![
        TaskRecord {
            node: "a".into(),
            payload: None,
        },
        TaskRecord {
            node: "b".into(),
            payload: Some(json!(7)),
        },
    ];
    store
        .put_checkpoint(
            &record(1, None, &[("x", 1), ("y", 1)]),
            &tasks,
            &[value("x", 1, json!(1)), value("y", 1, json!("big"))],
        )
        .unwrap();
    // Step 2 changes only x: y is not rewritten but still loads.
    store
        .put_checkpoint(
            &record(2, Some(1), &[("x", 2), ("y", 1)]),
            &[],
            &[value("x", 2, json!(2))],
        )
        .unwrap();
    assert_eq!(store.stats().channel_values, 3);
    let l = store.get_checkpoint("t", "", None).unwrap().unwrap();
    assert_eq!(l.record.checkpoint_id, 2);
    assert_eq!(l.values["x"], json!(2));
    assert_eq!(l.values["y"], json!("big"));
    assert_eq!(l.record.pending_steering, vec![json!({"kind": "redirect"})]);
    let l1 = store.get_checkpoint("t", "", Some(1)).unwrap().unwrap();
    assert_eq!(l1.values["x"], json!(1));
    assert_eq!(l1.next_tasks, tasks);
    // Task results: two batches; a later result for task 0 replaces the first.
    let w = |i: u32, v: i64, interrupted: bool| TaskWritesRecord {
        index: i,
        writes: vec![("x".into(), json!(v))],
        extra: interrupted.then(|| Box::new(TaskExtra::default())),
    };
    store
        .put_writes("t", "", 1, &[w(0, 10, true), w(1, 11, false)])
        .unwrap();
    store.put_writes("t", "", 1, &[w(0, 20, false)]).unwrap();
    let l1 = store.get_checkpoint("t", "", Some(1)).unwrap().unwrap();
    assert_eq!(l1.writes.len(), 2);
    assert_eq!(l1.writes[0].writes[0].1, json!(20));
    assert_eq!(store.stats().task_writes, 3);
    assert_eq!(store.stats().write_batches, 2);
    let list = store.list_checkpoints("t", "").unwrap();
    assert_eq!(
        list.iter().map(|s| (s.checkpoint_id, s.next_tasks)).collect::<Vec<_>>(),
        vec![(1, 2), (2, 0)]
    );
    assert_eq!(store.next_checkpoint_id("t", "").unwrap(), 3);
    // Namespaces are separate.
    assert!(store.get_checkpoint("t", "sub:1.0", None).unwrap().is_none());
    assert!(store.stats().bytes > 0);
}

#[test]
fn memory_backend_keeps_the_contract() {
    contract(&MemoryCheckpointer::new());
}

#[test]
fn sqlite_backend_keeps_the_contract_and_survives_reopening() {
    contract(&SqliteCheckpointer::in_memory().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    contract(&SqliteCheckpointer::open(&path).unwrap());
    let again = SqliteCheckpointer::open(&path).unwrap();
    assert_eq!(
        again.get_checkpoint("t", "", None).unwrap().unwrap().values["x"],
        json!(2)
    );
}

#[test]
fn records_from_a_newer_format_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    let store = SqliteCheckpointer::open(&path).unwrap();
    store
        .put_checkpoint(&record(1, None, &[("x", 1)]), &[], &[value("x", 1, json!(1))])
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE channel_values SET format = 7", []).unwrap();
    let err = store.get_checkpoint("t", "", None).unwrap_err();
    assert!(matches!(err, StoreError::NewerFormat { found: 7, .. }), "{err}");
    assert!(err.to_string().contains("channel value of thread \"t\""), "{err}");
    conn.execute("UPDATE channel_values SET format = 1", []).unwrap();
    conn.execute("UPDATE checkpoints SET format = 3", []).unwrap();
    assert!(matches!(
        store.list_checkpoints("t", "").unwrap_err(),
        StoreError::NewerFormat { found: 3, .. }
    ));
}
