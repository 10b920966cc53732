//! Running the tasks of one superstep concurrently.
//!
//! A step with one task runs it in place. A larger step is cut into
//! batches (one task each for small steps, up to 64 for big fan-outs), each
//! batch a tokio task running its tasks concurrently, with at most
//! `max_concurrency` tasks in flight; on a multi-thread runtime the batches,
//! and so CPU-bound nodes, run on every core. Every task (the node's call
//! and each poll of its future) is guarded by `catch_unwind`: a node that
//! panics fails its own task only. A task in flight is a `Running`: the
//! node's boxed future plus three words.
//!
//! Finished tasks flow to a collector (the run's own task), which saves
//! their results in batches: while one batch is being written, the next
//! accumulates, so the number of transactions adapts to the write speed
//! (group commit) and a crash loses only the tasks of the batch in flight.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::task::{Context, Poll};

use futures::{FutureExt, StreamExt};
use tinyagents_core::{BoxFuture, EventKind, NodeId, TaskId};
use tinyagents_store::{Checkpointer, RouteRecord, TaskExtra, TaskRecord, TaskWritesRecord};
use tokio::sync::mpsc;

use super::{AbortOnDrop, StepEnv, store_err};
use crate::error::GraphError;
use crate::node::{END, NodeContext, NodeError, NodeInput, NodeOutput, Route};
use crate::stream::{StreamMode, StreamPart};

pub(crate) type TaskResult = Result<TaskWritesRecord, NodeError>;

/// Largest batch of task results saved in one transaction.
const MAX_BATCH: usize = 65_536;

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

fn route_record(r: Route) -> RouteRecord {
    match r {
        Route::End => RouteRecord {
            node: END.to_string(),
            payload: None,
        },
        Route::To(n) => RouteRecord {
            node: n.to_string(),
            payload: None,
        },
        Route::Send(s) => RouteRecord {
            node: s.node.to_string(),
            payload: Some(s.arg),
        },
    }
}

fn to_record(index: u32, out: NodeOutput) -> TaskResult {
    if let Some(e) = out.update.error {
        return Err(NodeError::Failed(e));
    }
    let has_extra = !out.goto.is_empty() || out.parent.is_some() || !out.child_runs.is_empty();
    let extra = has_extra.then(|| {
        let (parent_routes, parent_writes) = match out.parent {
            Some((routes, update)) => (routes.into_iter().map(route_record).collect(), update.writes),
            None => (Vec::new(), Vec::new()),
        };
        Box::new(TaskExtra {
            routes: out.goto.into_iter().map(route_record).collect(),
            parent_routes,
            parent_writes,
            child_runs: out.child_runs,
            interrupts: Vec::new(),
        })
    });
    Ok(TaskWritesRecord {
        index,
        writes: out.update.writes,
        extra,
    })
}

/// Starts a task: emits `GraphTaskStarted` and calls the node, which gives
/// the task's future. A panic in the call fails the task only.
fn start_task<'a>(env: &'a Arc<StepEnv>, task: &TaskRecord, index: u32, node: Option<usize>) -> Running<'a> {
    let run = &env.run;
    let g = &run.graph;
    let Some(ni) = node else {
        let e = NodeError::Failed(format!("no node `{}` in graph `{}`", task.node, g.id));
        return Running {
            env,
            fut: Box::pin(std::future::ready(Err(e))),
            index,
            node: NO_NODE,
        };
    };
    let spec = &g.nodes[ni];
    let task_id = TaskId::new(env.step, index);
    run.run.emit_with(|| EventKind::GraphTaskStarted {
        graph_id: g.id.clone(),
        node_id: spec.name.clone(),
        task_id,
        namespace: run.ns.clone(),
    });
    let input = match &task.payload {
        Some(p) => NodeInput::Payload(p.clone()),
        None => NodeInput::State(env.snapshot.clone()),
    };
    let ctx = NodeContext {
        env: env.clone(),
        node: spec.name.clone(),
        task_id,
        index,
        interrupts: AtomicU32::new(0),
    };
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| spec.f.call(input, ctx))) {
        Ok(fut) => fut,
        Err(payload) => Box::pin(std::future::ready(Err(NodeError::Panicked(panic_message(&*payload))))),
    };
    Running {
        env,
        fut,
        index,
        node: ni as u32,
    }
}

/// `Running::node` of a task whose node does not exist.
const NO_NODE: u32 = u32::MAX;

/// A task in flight: the node's future and what its end needs (four
/// words: a fan-out keeps one per task in flight).
struct Running<'a> {
    env: &'a Arc<StepEnv>,
    fut: BoxFuture<'static, Result<NodeOutput, NodeError>>,
    index: u32,
    node: u32,
}

impl Future for Running<'_> {
    type Output = (u32, TaskResult);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let caught = match std::panic::catch_unwind(AssertUnwindSafe(|| this.fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(r)) => Ok(r),
            Err(payload) => Err(payload),
        };
        let result = if this.node == NO_NODE {
            // The ready error of a task whose node does not exist (no events).
            match caught {
                Ok(Err(e)) => Err(e),
                _ => Err(NodeError::Failed("task without a node".into())),
            }
        } else {
            finish_task(this.env, this.index, this.node as usize, caught)
        };
        Poll::Ready((this.index, result))
    }
}

/// The end of a task: its output as a writes record, `GraphTaskCompleted`
/// and the `updates` stream part.
fn finish_task(
    env: &StepEnv,
    index: u32,
    ni: usize,
    caught: Result<Result<NodeOutput, NodeError>, Box<dyn std::any::Any + Send>>,
) -> TaskResult {
    let run = &env.run;
    let g = &run.graph;
    let spec = &g.nodes[ni];
    let task_id = TaskId::new(env.step, index);
    let result = match caught {
        Ok(Ok(out)) => {
            let cached = out.cached;
            to_record(index, out).map(|r| (r, cached))
        }
        Ok(Err(NodeError::Interrupted(interrupts))) => Ok((
            TaskWritesRecord {
                index,
                writes: Vec::new(),
                extra: Some(Box::new(TaskExtra {
                    interrupts,
                    ..TaskExtra::default()
                })),
            },
            false,
        )),
        Ok(Err(e)) => Err(e),
        Err(payload) => Err(NodeError::Panicked(panic_message(&*payload))),
    };
    run.run.emit_with(|| {
        let (ok, error, child_run_ids, cached) = match &result {
            Ok((r, cached)) => (
                true,
                None,
                r.extra
                    .as_ref()
                    .map(|e| e.child_runs.iter().map(|c| c.run_id).collect())
                    .unwrap_or_default(),
                *cached,
            ),
            Err(e) => (false, Some(e.to_string()), Vec::new(), false),
        };
        EventKind::GraphTaskCompleted {
            graph_id: g.id.clone(),
            node_id: spec.name.clone(),
            task_id,
            namespace: run.ns.clone(),
            ok,
            error,
            child_run_ids,
            cached,
        }
    });
    if let (Some(tx), Ok((r, _))) = (run.tree.stream_for(StreamMode::UPDATES), &result) {
        tx.send(StreamPart::Updates {
            namespace: run.ns.clone(),
            node: spec.name.clone(),
            task_id,
            writes: r.writes.clone(),
        });
    }
    result.map(|(r, _)| r)
}

/// Runs a batch of tasks concurrently and sends their results: every
/// result that is ready at once goes in one message (a batch of trivial
/// tasks sends one message; slow tasks are sent as each finishes).
async fn batch(
    env: Arc<StepEnv>,
    tasks: Arc<Vec<TaskRecord>>,
    todo: Arc<Vec<u32>>,
    range: std::ops::Range<usize>,
    tx: mpsc::UnboundedSender<Vec<(u32, TaskResult)>>,
) {
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut last: Option<(&Arc<str>, usize)> = None;
    for &i in todo.get(range).unwrap_or_default() {
        let Some(task) = tasks.get(i as usize) else { continue };
        // Tasks of one batch are usually of one node: skip the lookup.
        let node = match last {
            Some((name, ni)) if Arc::ptr_eq(name, &task.node) => Some(ni),
            _ => env.run.graph.node_index.get(&task.node).copied(),
        };
        if let Some(ni) = node {
            last = Some((&task.node, ni));
        }
        in_flight.push(start_task(&env, task, i, node));
    }
    let mut buf = Vec::new();
    while let Some(first) = in_flight.next().await {
        buf.push(first);
        while let Some(Some(more)) = in_flight.next().now_or_never() {
            buf.push(more);
        }
        if tx.send(std::mem::take(&mut buf)).is_err() {
            return;
        }
    }
}

/// Spawns the batches of a step, keeping at most `window` in flight; each
/// batch is its own tokio task, so the runtime spreads them over its
/// worker threads.
async fn spawner(
    env: Arc<StepEnv>,
    tasks: Arc<Vec<TaskRecord>>,
    todo: Arc<Vec<u32>>,
    chunk: usize,
    window: usize,
    tx: mpsc::UnboundedSender<Vec<(u32, TaskResult)>>,
) {
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut start = 0;
    loop {
        while in_flight.len() < window && start < todo.len() {
            let end = (start + chunk).min(todo.len());
            let h = AbortOnDrop(tokio::spawn(batch(
                env.clone(),
                tasks.clone(),
                todo.clone(),
                start..end,
                tx.clone(),
            )));
            in_flight.push(async move {
                let mut h = h;
                let _ = (&mut h.0).await;
            });
            start = end;
        }
        if in_flight.next().await.is_none() {
            return;
        }
    }
}

/// Runs tasks `todo` of `tasks` and stores their results in `results`;
/// with `persist`, saves finished tasks' results as they arrive.
pub(crate) async fn run_tasks(
    env: Arc<StepEnv>,
    tasks: Arc<Vec<TaskRecord>>,
    todo: Vec<u32>,
    persist: Option<(Arc<dyn Checkpointer>, Arc<str>)>,
    results: &mut [Option<TaskResult>],
) -> Result<(), GraphError> {
    if todo.is_empty() {
        return Ok(());
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<(u32, TaskResult)>>();
    let mut workers: Vec<AbortOnDrop<()>> = Vec::new();
    if let [i] = todo[..] {
        let r = match tasks.get(i as usize) {
            Some(t) => {
                start_task(&env, t, i, env.run.graph.node_index.get(&t.node).copied())
                    .await
                    .1
            }
            None => Err(NodeError::Failed(format!("no task {i}"))),
        };
        let _ = tx.send(vec![(i, r)]);
        drop(tx);
    } else {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let cap = env.run.tree.opts.max_concurrency.max(1);
        // Small steps: one tokio task per graph task (spread over the
        // cores); big steps: batches of up to 64, amortizing the spawn.
        let chunk = (todo.len() / (threads * 16)).clamp(1, 64).min(cap);
        let window = (cap / chunk).max(1);
        workers.push(AbortOnDrop(tokio::spawn(spawner(
            env.clone(),
            tasks.clone(),
            Arc::new(todo),
            chunk,
            window,
            tx,
        ))));
    }
    let emit_saved = env.run.run.sink().enabled();
    let checkpoint_id = env.checkpoint_id;
    let step = env.step;
    let run = env.run.clone();
    drop(env);
    let mut pending: Vec<(u32, TaskResult)> = Vec::new();
    while let Some(first) = rx.recv().await {
        pending.extend(first);
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(x) => pending.extend(x),
                Err(_) => break,
            }
        }
        let Some((store, thread)) = &persist else {
            for (i, r) in pending.drain(..) {
                if let Some(slot) = results.get_mut(i as usize) {
                    *slot = Some(r);
                }
            }
            continue;
        };
        let mut oks = Vec::with_capacity(pending.len());
        for (i, r) in pending.drain(..) {
            match r {
                Ok(rec) => oks.push(rec),
                Err(e) => {
                    if let Some(slot) = results.get_mut(i as usize) {
                        *slot = Some(Err(e));
                    }
                }
            }
        }
        let (store, thread, ns) = (store.clone(), thread.clone(), run.ns.clone());
        let (oks, saved) = tokio::task::spawn_blocking(move || {
            let r = store.put_writes(&thread, &ns, checkpoint_id, &oks);
            (oks, r)
        })
        .await
        .map_err(|e| GraphError::Resume(format!("checkpoint writer task failed: {e}")))?;
        saved.map_err(store_err)?;
        for rec in oks {
            if emit_saved {
                let node = tasks
                    .get(rec.index as usize)
                    .map(|t| NodeId(t.node.clone()))
                    .unwrap_or_else(|| NodeId::from("?"));
                run.run.emit(EventKind::TaskWritesSaved {
                    graph_id: run.graph.id.clone(),
                    node_id: node,
                    task_id: TaskId::new(step, rec.index),
                    namespace: run.ns.clone(),
                    checkpoint_id,
                });
            }
            let i = rec.index as usize;
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(Ok(rec));
            }
        }
    }
    drop(workers);
    Ok(())
}
