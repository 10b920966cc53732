//! The async driver: performs the I/O the state machine asks for.
//!
//! Tool calls of one turn run concurrently, at most
//! `max_concurrent_children` at a time, and their outcomes are fed back in
//! call order so the transcript is deterministic. A plain tool that panics is
//! caught and becomes [`ToolError::Panicked`] while its siblings finish; an
//! unknown tool or malformed arguments go back to the model as a tool error.
//! The deadline bounds every model call and every tool call; when it passes,
//! the run stops with [`LimitKind::Deadline`] and its partial result.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::future::Future;

use futures::{FutureExt, StreamExt};
use std::task::Poll;
use tinyagents_core::{
    BoxFuture, EventKind, LimitKind, ModelDelta, ModelError, ModelResponse, RunContext, RunError, ToolCall,
    ToolContext, ToolError,
};

use crate::agent::{AgentInner, AgentOutput, ToolFailure};
use crate::checkpoint::{AgentCheckpoint, AgentCheckpointer, CHECKPOINT_FORMAT};
use crate::machine::{AgentRun, Step, StepError, ToolOutcome};
use crate::steering::{Exit, RunControl, SteeringHub};

/// Saves a checkpoint after every step when the run is durable.
pub(crate) struct Durable {
    pub(crate) store: Arc<dyn AgentCheckpointer>,
    pub(crate) seq: u64,
}

impl Durable {
    fn save(&mut self, ctx: &RunContext, run: &AgentRun, steer: Option<Steer<'_>>) -> Result<(), RunError> {
        self.seq += 1;
        let cp = AgentCheckpoint {
            format: CHECKPOINT_FORMAT,
            seq: self.seq,
            meta: ctx.meta().clone(),
            run: run.clone(),
            usage: ctx.own_usage(),
            cost: ctx.own_cost(),
            steering: steer.map(|s| s.control.log()).unwrap_or_default(),
        };
        self.store.save_run(&cp).map_err(|e| RunError::Invalid {
            path: ctx.path().clone(),
            depth: ctx.depth(),
            message: format!("checkpoint failed: {e}"),
        })?;
        if let Some(s) = steer {
            s.control.set_checkpoint_id(cp.id());
            // The run checkpoint holds the applied commands' effects: only
            // now may the journal say they were applied.
            s.control.commit();
        }
        Ok(())
    }
}

/// The run's steering handles, when a hub is installed on its tree.
#[derive(Clone, Copy)]
struct Steer<'a> {
    hub: &'a SteeringHub,
    control: &'a RunControl,
}

/// A grace period past the deadline for tools that spawn children: the
/// children share the deadline and stop on their own, reporting their usage.
const CHILD_GRACE: Duration = Duration::from_millis(250);

/// Tool calls of one turn started per poll of the driver (see `run_tools`).
const START_BATCH: usize = 128;

/// Drives `run` to its end.
///
/// This future is the bulk of every sub-agent's task, so its size is kept
/// down (a fan-out of N sub-agents keeps N of them alive):
/// * the run is borrowed, not owned;
/// * it is one `async move` block, not nested `async fn`s: an `async fn`
///   keeps every argument twice in its state (once as received, once as the
///   local it is moved into), and each nesting level keeps its own copy of
///   the references it is given;
/// * a step is taken apart in one statement, so only the model request is
///   kept across the model call, and the model call has a single await
///   point ([`ModelWait`]), so the request is not laid out in every state;
/// * what most leaf runs never need (a tool turn, a deadline or cancel race,
///   steering, durability) is boxed.
pub(crate) fn drive<'a>(
    agent: &'a AgentInner,
    ctx: &'a RunContext,
    run: &'a mut AgentRun,
    durable: Option<Durable>,
) -> impl Future<Output = Result<AgentOutput, RunError>> + Send + 'a {
    let mut durable = durable.map(Box::new);
    async move {
        ctx.emit_with(|| EventKind::RunStarted {
            name: agent.name.clone(),
        });
        let mut failures: Vec<ToolFailure> = Vec::new();
        let control = SteeringHub::of(ctx).and_then(|h| h.control(ctx.run_id()));
        let steer = match (SteeringHub::of(ctx), control.as_deref()) {
            (Some(hub), Some(control)) => Some(Steer { hub, control }),
            _ => None,
        };
        if let (Some(d), Some(s)) = (&durable, steer) {
            let store = d.store.clone();
            let run_id = ctx.run_id();
            s.control.set_journal(Arc::new(move |log| {
                // A failed journal write cannot stop the caller that steered;
                // the next run checkpoint carries the log as well.
                let _ = store.save_steering(run_id, log);
            }));
        }
        // `break 'run r` ends the run with `r`; `attempt!('run, x)` is
        // `x?` for it.
        macro_rules! attempt {
            ($run:lifetime, $e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => break $run Err(e),
                }
            };
        }
        let result: Result<Arc<str>, RunError> = 'run: loop {
            if let Some(s) = steer
                && run.wants_model()
            {
                // Safe boundary: steering is taken before the model is called.
                s.control.set_phase("steering boundary", run.turns());
                let outcome = Box::pin(s.control.at_boundary(s.hub, run)).await;
                if let Some(d) = durable.as_deref_mut() {
                    attempt!('run, d.save(ctx, run, steer));
                }
                attempt!('run, outcome.map_err(|how| exit(ctx, run, how)));
                s.control.set_phase("calling the model", run.turns());
            }
            if run.wants_tools() {
                if let Some(s) = steer {
                    s.control.set_phase("running tools", run.turns());
                }
                // Boxed, the calls included: its state is large and most
                // runs (leaf sub-agents) never call a tool.
                attempt!('run, Box::pin(tool_turn(agent, ctx, run, &mut failures, steer)).await);
                if let Some(d) = durable.as_deref_mut() {
                    attempt!('run, d.save(ctx, run, steer));
                }
                if ctx.deadline_passed() {
                    break 'run Err(stop(ctx, run, LimitKind::Deadline));
                }
                continue;
            }
            // Taken apart in one statement with no await in it: only the
            // request is kept in the state across the model call.
            let mut request = match run.next_step() {
                Ok(Step::CallModel(request)) => request,
                Ok(Step::Done(text)) => break 'run Ok(text),
                Ok(Step::CallTools(_)) => {
                    break 'run Err(invalid(ctx, "tool calls issued outside a tool turn"));
                }
                Err(StepError::MaxTurns { .. }) => break 'run Err(stop(ctx, run, LimitKind::Turns)),
                Err(e) => break 'run Err(invalid(ctx, e)),
            };
            if let Some(s) = steer {
                let policy = s.control.tool_policy();
                if let Some(allow) = &policy.allow_tools {
                    request.tools = request
                        .tools
                        .iter()
                        .filter(|t| allow.iter().any(|a| **a == *t.name))
                        .cloned()
                        .collect();
                }
                request.max_output_tokens = match (request.max_output_tokens, policy.max_output_tokens) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            if let Err(limit) = ctx.check_before_model_call() {
                break 'run Err(stop(ctx, run, limit));
            }
            let turn = request.turn;
            ctx.emit_with(|| EventKind::ModelCallStarted {
                model: agent.model_id.clone(),
                turn,
            });
            let on_delta = move |delta: ModelDelta| ctx.emit(EventKind::ModelDelta { turn, delta });
            let call = if ctx.sink().enabled() {
                agent.model.complete_streaming(&request, &on_delta)
            } else {
                agent.model.complete(&request)
            };
            let wait = match (ctx.deadline(), steer) {
                (None, None) => ModelWait::Plain(call),
                (deadline, _) => {
                    // Boxed: the timer and the cancel race are large and
                    // most leaf runs have neither.
                    let timed = async move {
                        match deadline {
                            Some(d) => tokio::time::timeout_at(d.into(), call).await.ok(),
                            None => Some(call.await),
                        }
                    };
                    ModelWait::Guarded(Box::pin(unless_cancelled(steer, timed)))
                }
            };
            let response = match wait.await {
                None => break 'run Err(exit(ctx, run, Exit::Cancel)),
                Some(None) => break 'run Err(stop(ctx, run, LimitKind::Deadline)),
                Some(Some(r)) => r,
            };
            drop(request);
            let response = match response {
                Ok(r) => r,
                Err(source) => {
                    break 'run Err(RunError::Model {
                        path: ctx.path().clone(),
                        depth: ctx.depth(),
                        source,
                        partial: Box::new(ctx.partial(run.last_text(), run.transcript().clone(), run.turns())),
                    });
                }
            };
            let (cost, charged) = ctx.charge_model_call(&agent.model_id, &response.usage);
            ctx.emit_with(|| EventKind::ModelCallCompleted {
                model: agent.model_id.clone(),
                turn,
                usage: response.usage,
                cost,
                tool_calls: response.tool_calls.len() as u32,
            });
            attempt!('run, run.on_model(response).map_err(|e| invalid(ctx, e)));
            if let Some(d) = durable.as_deref_mut() {
                attempt!('run, d.save(ctx, run, steer));
            }
            if let Err(limit) = charged {
                break 'run Err(stop(ctx, run, limit));
            }
        };
        if let Some(h) = SteeringHub::of(ctx) {
            h.finish(ctx.run_id());
        }
        match result {
            Ok(text) => {
                ctx.emit_with(|| EventKind::RunCompleted {
                    usage: ctx.own_usage(),
                    total_usage: ctx.total_usage(),
                    total_cost: ctx.total_cost(),
                    failures: failures.len() as u32,
                });
                Ok(AgentOutput {
                    text,
                    run: ctx.meta().clone(),
                    transcript: run.transcript().clone(),
                    turns: run.turns(),
                    usage: ctx.own_usage(),
                    cost: ctx.own_cost(),
                    total_usage: ctx.total_usage(),
                    total_cost: ctx.total_cost(),
                    failures,
                    descendant_failures: ctx.descendant_failures(),
                })
            }
            Err(err) => {
                ctx.emit_with(|| EventKind::RunFailed {
                    error: err.to_string(),
                    total_usage: ctx.total_usage(),
                    total_cost: ctx.total_cost(),
                });
                Err(err)
            }
        }
    }
}

/// One tool turn: takes the run's pending calls, runs them and feeds the
/// outcomes back.
async fn tool_turn(
    agent: &AgentInner,
    ctx: &RunContext,
    run: &mut AgentRun,
    failures: &mut Vec<ToolFailure>,
    steer: Option<Steer<'_>>,
) -> Result<(), RunError> {
    let calls = match run.next_step() {
        Ok(Step::CallTools(calls)) => calls,
        Ok(_) => return Err(invalid(ctx, "a tool turn without pending tool calls")),
        Err(e) => return Err(invalid(ctx, e)),
    };
    let outcomes = run_tools(agent, ctx, calls, failures, steer).await;
    run.on_tools(outcomes).map_err(|e| invalid(ctx, e))
}

fn invalid(ctx: &RunContext, e: impl std::fmt::Display) -> RunError {
    RunError::Invalid {
        path: ctx.path().clone(),
        depth: ctx.depth(),
        message: e.to_string(),
    }
}

type ModelResult = Result<ModelResponse, ModelError>;

/// A model call in flight: the plain call, or the call raced against the
/// deadline and a cancel (boxed). One future type, so the driver awaits the
/// model at one point of its state machine.
enum ModelWait<'a> {
    Plain(BoxFuture<'a, ModelResult>),
    Guarded(BoxFuture<'a, Option<Option<ModelResult>>>),
}

impl Future for ModelWait<'_> {
    type Output = Option<Option<ModelResult>>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Plain(f) => f.as_mut().poll(cx).map(|r| Some(Some(r))),
            Self::Guarded(f) => f.as_mut().poll(cx),
        }
    }
}

fn exit(ctx: &RunContext, run: &AgentRun, how: Exit) -> RunError {
    let partial = Box::new(ctx.partial(run.last_text(), run.transcript().clone(), run.turns()));
    let (path, depth) = (ctx.path().clone(), ctx.depth());
    match how {
        Exit::Cancel => RunError::Cancelled { path, depth, partial },
        Exit::Stop => RunError::Stopped { path, depth, partial },
    }
}

/// Runs `f` unless the run is cancelled first.
async fn unless_cancelled<F: Future>(steer: Option<Steer<'_>>, f: F) -> Option<F::Output> {
    match steer {
        None => Some(f.await),
        // Biased: a cancel accepted while the work was in flight wins even
        // if the work finished in the same instant.
        Some(s) => tokio::select! {
            biased;
            () = s.control.cancelled() => None,
            r = f => Some(r),
        },
    }
}

fn stop(ctx: &RunContext, run: &AgentRun, limit: LimitKind) -> RunError {
    ctx.emit(EventKind::BudgetExceeded { limit });
    RunError::BudgetExceeded {
        path: ctx.path().clone(),
        depth: ctx.depth(),
        limit,
        partial: Box::new(ctx.partial(run.last_text(), run.transcript().clone(), run.turns())),
    }
}

async fn run_tools(
    agent: &AgentInner,
    ctx: &RunContext,
    calls: Vec<ToolCall>,
    failures: &mut Vec<ToolFailure>,
    steer: Option<Steer<'_>>,
) -> Vec<ToolOutcome> {
    let cap = ctx.limits().max_concurrent_children.unwrap_or(usize::MAX).max(1);
    let allow = steer.and_then(|s| s.control.tool_policy().allow_tools);
    let allow = allow.as_deref();
    // Steering may stop new calls from starting (cancel, cancel pending fan-out).
    let halted = || steer.is_some_and(|s| s.control.fanout_cancelled() || s.control.is_cancelled());
    let results: Vec<(ToolOutcome, Option<ToolError>)> = if calls.len() == 1 && steer.is_none() {
        vec![run_tool(agent, ctx, &calls[0], allow).await]
    } else {
        let mut slots: Vec<Option<(ToolOutcome, Option<ToolError>)>> = Vec::new();
        slots.resize_with(calls.len(), || None);
        let mut pending = calls.iter().enumerate();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let batch = std::future::poll_fn(|cx| {
            loop {
                // Start at most `START_BATCH` calls per poll, then collect
                // what has finished before starting more. `FuturesUnordered`
                // polls in wake order, so starting all N calls at once would
                // let every finished child (its task and its output) wait
                // until the last call has started: N children alive at once
                // even when each is over in microseconds.
                let mut started = 0;
                while in_flight.len() < cap && started < START_BATCH && !halted() {
                    let Some((i, call)) = pending.next() else { break };
                    in_flight.push(run_tool(agent, ctx, call, allow).map(move |r| (i, r)));
                    started += 1;
                }
                while let Poll::Ready(Some((i, r))) = in_flight.poll_next_unpin(cx) {
                    if let Some(slot) = slots.get_mut(i) {
                        *slot = Some(r);
                    }
                }
                let more = pending.len() > 0 && !halted();
                if in_flight.is_empty() {
                    if more {
                        continue;
                    }
                    return Poll::Ready(());
                }
                if more && in_flight.len() < cap {
                    // Yield, and start the next batch on the next poll.
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
        });
        // Between tool results: a cancel abandons what is in flight
        // (children are aborted and report their usage).
        let _ = unless_cancelled(steer, batch).await;
        drop(in_flight);
        // Calls that never ran or were abandoned are reported as cancelled.
        for (slot, call) in slots.iter_mut().zip(calls.iter()) {
            if slot.is_none() {
                let error = ToolError::Cancelled;
                let message = format!("error ({:?}): {error}", error.kind());
                *slot = Some((ToolOutcome::error(call, message), Some(error)));
            }
        }
        slots.into_iter().flatten().collect()
    };
    let mut outcomes = Vec::with_capacity(results.len());
    for (outcome, error) in results {
        if let Some(error) = error {
            ctx.record_failure();
            failures.push(ToolFailure {
                call_id: outcome.call_id.clone(),
                tool: outcome.name.clone(),
                error,
            });
        }
        outcomes.push(outcome);
    }
    outcomes
}

/// Polls `fut` only while the task has cooperative budget left; otherwise
/// wakes the task at once and returns `Pending`.
///
/// Why: a tokio resource (a child's `JoinHandle`, a timer, a socket) polled
/// by a task whose budget is spent returns `Pending` and wakes the task only
/// when the worker parks. `FuturesUnordered` yields when a polled future
/// wakes itself, so it cannot see these deferred wake-ups and goes on polling
/// every other queued call of the turn, each returning `Pending` at once:
/// O(N) wasted polls per poll of the parent, O(N²) per turn of N calls
/// (100,000 sub-agents in one turn took about 8 s instead of well under 1 s).
/// Waking at once lets it yield after two such calls.
fn yield_when_out_of_budget<F: Future + Unpin>(mut fut: F) -> impl Future<Output = F::Output> {
    std::future::poll_fn(move |cx| {
        if !tokio::task::coop::has_budget_remaining() {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        fut.poll_unpin(cx)
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

async fn run_tool(
    agent: &AgentInner,
    ctx: &RunContext,
    call: &ToolCall,
    allow: Option<&[String]>,
) -> (ToolOutcome, Option<ToolError>) {
    ctx.emit_with(|| EventKind::ToolCallStarted {
        call_id: call.id.clone(),
        tool: call.name.clone(),
    });
    let denied = allow.is_some_and(|a| !a.iter().any(|t| **t == *call.name));
    let result = match agent.tools.get(&call.name) {
        Some(_) if denied => Err(ToolError::Denied {
            reason: format!(
                "tool {:?} was withdrawn by steering (narrowed tool policy)",
                &*call.name
            ),
        }),
        None => Err(ToolError::NotFound {
            tool: call.name.to_string(),
            available: agent.specs.iter().map(|s| &*s.name).collect::<Vec<_>>().join(", "),
        }),
        Some(tool) => {
            let tctx = ToolContext {
                run: ctx.clone(),
                call_id: call.id.clone(),
            };
            // A tool may start its work synchronously in `call_json` (the
            // sub-agent tool spawns its child there): a panic there is
            // caught like one in the future it returns.
            let caught = match std::panic::catch_unwind(AssertUnwindSafe(|| tool.call_json(tctx, &call.arguments))) {
                Err(payload) => Err(payload),
                Ok(fut) => {
                    let fut = yield_when_out_of_budget(AssertUnwindSafe(fut).catch_unwind());
                    let limit = match (ctx.deadline().map(|d| d + CHILD_GRACE), agent.tool_timeout) {
                        (Some(d), Some(t)) => Some(d.min(Instant::now() + t)),
                        (Some(d), None) => Some(d),
                        (None, Some(t)) => Some(Instant::now() + t),
                        (None, None) => None,
                    };
                    match limit {
                        // Boxed: the timer is large and most tool calls have no limit.
                        Some(at) => match Box::pin(tokio::time::timeout_at(at.into(), fut)).await {
                            Ok(r) => r,
                            Err(_) => Ok(Err(ToolError::Timeout)),
                        },
                        None => fut.await,
                    }
                }
            };
            match caught {
                Ok(r) => r,
                Err(payload) => Err(ToolError::Panicked {
                    message: panic_message(&*payload),
                }),
            }
        }
    };
    match result {
        Ok(content) => {
            ctx.emit_with(|| EventKind::ToolCallCompleted {
                call_id: call.id.clone(),
                tool: call.name.clone(),
                error: None,
            });
            (ToolOutcome::ok(call, content), None)
        }
        Err(error) => {
            let message = format!("error ({:?}): {error}", error.kind());
            ctx.emit_with(|| EventKind::ToolCallCompleted {
                call_id: call.id.clone(),
                tool: call.name.clone(),
                error: Some(message.clone()),
            });
            (ToolOutcome::error(call, message), Some(error))
        }
    }
}
