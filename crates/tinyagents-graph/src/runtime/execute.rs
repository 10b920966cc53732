//! Running the tasks of one superstep concurrently.
//!
//! A step with one task runs it in place. A larger step is run by a few
//! workers (tokio tasks, four per core, so CPU-bound nodes use every core)
//! that claim the step's tasks in order from a shared queue. The
//! concurrency cap is exact: each worker has a quota, the quotas add up to
//! `max_concurrency`, and a worker starts a new task as soon as one of its
//! own ends, so at most `max_concurrency` tasks are in flight, and that
//! many while tasks are left. Every task (the node's call and each poll of
//! its future) is guarded by `catch_unwind`: a node that panics fails its
//! own task only. A task in flight is a `Running`: the node's boxed future
//! plus one word.
//!
//! Finished tasks flow to a collector (the run's own task), which saves
//! their results in batches: while one batch is being written, the next
//! accumulates, so the number of transactions adapts to the write speed
//! (group commit) and a crash loses only the tasks of the batch in flight.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::StreamExt;
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
fn start_task(env: &Arc<StepEnv>, task: &TaskRecord, index: u32, node: Option<usize>) -> Running {
    let run = &env.run;
    let g = &run.graph;
    let Some(ni) = node else {
        let e = NodeError::Failed(format!("no node `{}` in graph `{}`", task.node, g.id));
        return Running {
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
        fut,
        index,
        node: ni as u32,
    }
}

/// `Running::node` of a task whose node does not exist.
const NO_NODE: u32 = u32::MAX;

/// A task in flight: the node's future, its index and its node (three
/// words: a fan-out keeps one per task in flight).
struct Running {
    fut: BoxFuture<'static, Result<NodeOutput, NodeError>>,
    index: u32,
    node: u32,
}

/// A task whose future has ended (or panicked); [`Ended::finish`] makes
/// its result.
struct Ended {
    index: u32,
    node: u32,
    caught: Result<Result<NodeOutput, NodeError>, Box<dyn std::any::Any + Send>>,
}

impl Future for Running {
    type Output = Ended;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Out of cooperative budget, a tokio resource polled here would
        // return `Pending` and wake only when the worker parks, which
        // `FuturesUnordered` cannot see: it would go on polling every other
        // woken task, each `Pending` at once (O(N) wasted polls per round of
        // a worker with N tasks). Waking at once lets it yield instead.
        if !tokio::task::coop::has_budget_remaining() {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let this = &mut *self;
        let caught = match std::panic::catch_unwind(AssertUnwindSafe(|| this.fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(r)) => Ok(r),
            Err(payload) => Err(payload),
        };
        Poll::Ready(Ended {
            index: this.index,
            node: this.node,
            caught,
        })
    }
}

impl Ended {
    /// The task's result (events and stream parts emitted).
    fn finish(self, env: &StepEnv) -> (u32, TaskResult) {
        let Self { index, node, caught } = self;
        let result = if node == NO_NODE {
            // The ready error of a task whose node does not exist (no events).
            match caught {
                Ok(Err(e)) => Err(e),
                _ => Err(NodeError::Failed("task without a node".into())),
            }
        } else {
            finish_task(env, index, node as usize, caught)
        };
        (index, result)
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

/// The tasks of a step not started yet, claimed by the workers in order.
struct Queue {
    tasks: Arc<Vec<TaskRecord>>,
    todo: Vec<u32>,
    next: AtomicUsize,
}

impl Queue {
    /// Claims up to `n` more tasks (fewer, or none, at the end).
    fn claim(&self, n: usize) -> &[u32] {
        let len = self.todo.len();
        let start = self.next.fetch_add(n, Ordering::Relaxed).min(len);
        self.todo.get(start..(start + n).min(len)).unwrap_or_default()
    }
}

/// Tasks a worker starts per round before it polls its tasks again (a
/// big quota is filled over several rounds, so the first tasks run, and
/// the runtime's cooperative budget is honoured, while the rest start).
const START_BATCH: usize = 64;

/// Runs tasks of the step's queue, at most `quota` at a time: as each
/// task ends the worker claims and starts the next one, so the worker's
/// tasks in flight never exceed its quota and stay at it while the queue
/// has tasks. Every result that is ready at once goes in one message (a
/// round of trivial tasks sends one message; slow tasks are sent as each
/// finishes).
async fn worker(
    env: Arc<StepEnv>,
    queue: Arc<Queue>,
    quota: usize,
    claim: usize,
    tx: mpsc::UnboundedSender<Vec<(u32, TaskResult)>>,
) {
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut last: Option<(&Arc<str>, usize)> = None;
    let mut exhausted = false;
    let mut buf = Vec::new();
    futures::future::poll_fn(|cx| {
        loop {
            let mut started = 0;
            let free = quota.saturating_sub(in_flight.len()).min(claim);
            if !exhausted && free > 0 {
                let claimed = queue.claim(free);
                exhausted = claimed.len() < free;
                for &i in claimed {
                    let Some(task) = queue.tasks.get(i as usize) else {
                        continue;
                    };
                    // Tasks of one step are usually of one node: skip the lookup.
                    let node = match last {
                        Some((name, ni)) if Arc::ptr_eq(name, &task.node) => Some(ni),
                        _ => env.run.graph.node_index.get(&task.node).copied(),
                    };
                    if let Some(ni) = node {
                        last = Some((&task.node, ni));
                    }
                    in_flight.push(start_task(&env, task, i, node));
                    started += 1;
                }
            }
            while let Poll::Ready(Some(ended)) = in_flight.poll_next_unpin(cx) {
                buf.push(Ended::finish(ended, &env));
            }
            if exhausted && in_flight.is_empty() {
                if !buf.is_empty() {
                    let _ = tx.send(std::mem::take(&mut buf));
                }
                return Poll::Ready(());
            }
            // Nothing started and nothing ended: the worker waits for a
            // wake-up from its tasks (ended tasks leave room: go round).
            if started == 0 && buf.is_empty() {
                return Poll::Pending;
            }
            if !buf.is_empty() && tx.send(std::mem::take(&mut buf)).is_err() {
                return Poll::Ready(());
            }
            // A big quota is not started in one poll: once the task's
            // cooperative budget is spent, the worker yields to the runtime.
            if !tokio::task::coop::has_budget_remaining() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    })
    .await;
}

/// Runs tasks `todo` of `tasks` and adds their results to `done` as they
/// arrive, in the batches they arrive in (kept as they are: no growing
/// table of all results is copied while tasks finish); with `persist`,
/// saves finished tasks' results as they arrive.
pub(crate) async fn run_tasks(
    env: Arc<StepEnv>,
    tasks: Arc<Vec<TaskRecord>>,
    todo: Vec<u32>,
    persist: Option<(Arc<dyn Checkpointer>, Arc<str>)>,
    done: &mut Vec<Vec<(u32, TaskResult)>>,
) -> Result<(), GraphError> {
    if todo.is_empty() {
        return Ok(());
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<(u32, TaskResult)>>();
    let mut workers_handles: Vec<AbortOnDrop<()>> = Vec::new();
    if let [i] = todo[..] {
        let r = match tasks.get(i as usize) {
            Some(t) => {
                start_task(&env, t, i, env.run.graph.node_index.get(&t.node).copied())
                    .await
                    .finish(&env)
                    .1
            }
            None => Err(NodeError::Failed(format!("no task {i}"))),
        };
        let _ = tx.send(vec![(i, r)]);
        drop(tx);
    } else {
        // Workers share the cap exactly (their quotas add up to it), so at
        // most `max_concurrency` tasks are in flight, and that many while
        // tasks are left: each worker starts a new task as one of its own
        // ends. Several workers per core spread CPU-bound nodes over the
        // cores; a small step claims one task at a time (one task per
        // worker), a big one up to 64.
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let cap = env.run.tree.opts.max_concurrency.max(1);
        let workers = (threads * 4).min(cap).min(todo.len()).max(1);
        let claim = (todo.len() / (workers * 4)).clamp(1, START_BATCH);
        let queue = Arc::new(Queue {
            tasks: tasks.clone(),
            todo,
            next: AtomicUsize::new(0),
        });
        for w in 0..workers {
            let quota = cap / workers + usize::from(w < cap % workers);
            workers_handles.push(AbortOnDrop(tokio::spawn(worker(
                env.clone(),
                queue.clone(),
                quota,
                claim,
                tx.clone(),
            ))));
        }
        drop(tx);
    }
    let emit_saved = env.run.run.sink().enabled();
    let checkpoint_id = env.checkpoint_id;
    let step = env.step;
    let run = env.run.clone();
    drop(env);
    while let Some(first) = rx.recv().await {
        let Some((store, thread)) = &persist else {
            done.push(first);
            while let Ok(more) = rx.try_recv() {
                done.push(more);
            }
            continue;
        };
        let mut pending = first;
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(x) => pending.extend(x),
                Err(_) => break,
            }
        }
        let mut oks = Vec::with_capacity(pending.len());
        let mut failed = Vec::new();
        for (i, r) in pending {
            match r {
                Ok(rec) => oks.push(rec),
                Err(e) => failed.push((i, Err(e))),
            }
        }
        if !failed.is_empty() {
            done.push(failed);
        }
        let (store, thread, ns) = (store.clone(), thread.clone(), run.ns.clone());
        let (oks, saved) = tokio::task::spawn_blocking(move || {
            let r = store.put_writes(&thread, &ns, checkpoint_id, &oks);
            (oks, r)
        })
        .await
        .map_err(|e| GraphError::Resume(format!("checkpoint writer task failed: {e}")))?;
        saved.map_err(store_err)?;
        let mut saved_batch = Vec::with_capacity(oks.len());
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
            saved_batch.push((rec.index, Ok(rec)));
        }
        done.push(saved_batch);
    }
    drop(workers_handles);
    Ok(())
}
