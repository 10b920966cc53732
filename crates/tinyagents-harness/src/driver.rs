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
use tinyagents_core::{EventKind, LimitKind, ModelDelta, RunContext, RunError, ToolCall, ToolContext, ToolError};

use crate::agent::{AgentInner, AgentOutput, ToolFailure};
use crate::machine::{AgentRun, Step, StepError, ToolOutcome};

/// A grace period past the deadline for tools that spawn children: the
/// children share the deadline and stop on their own, reporting their usage.
const CHILD_GRACE: Duration = Duration::from_millis(250);

/// Tool calls of one turn started per poll of the driver (see `run_tools`).
const START_BATCH: usize = 128;

/// Drives `run` to its end. The run is borrowed, not owned: an `async fn`
/// keeps a by-value argument twice in its state, and this future is the bulk
/// of every sub-agent's task.
pub(crate) async fn drive(agent: &AgentInner, ctx: &RunContext, run: &mut AgentRun) -> Result<AgentOutput, RunError> {
    ctx.emit_with(|| EventKind::RunStarted {
        name: agent.name.clone(),
    });
    let mut failures: Vec<ToolFailure> = Vec::new();
    let result = drive_loop(agent, ctx, run, &mut failures).await;
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

fn stop(ctx: &RunContext, run: &AgentRun, limit: LimitKind) -> RunError {
    ctx.emit(EventKind::BudgetExceeded { limit });
    RunError::BudgetExceeded {
        path: ctx.path().clone(),
        depth: ctx.depth(),
        limit,
        partial: Box::new(ctx.partial(run.last_text(), run.transcript().clone(), run.turns())),
    }
}

async fn drive_loop(
    agent: &AgentInner,
    ctx: &RunContext,
    run: &mut AgentRun,
    failures: &mut Vec<ToolFailure>,
) -> Result<Arc<str>, RunError> {
    let model_id = &agent.model_id;
    loop {
        let step = match run.next_step() {
            Ok(step) => step,
            Err(StepError::MaxTurns { .. }) => return Err(stop(ctx, run, LimitKind::Turns)),
            Err(e) => {
                return Err(RunError::Invalid {
                    path: ctx.path().clone(),
                    depth: ctx.depth(),
                    message: e.to_string(),
                });
            }
        };
        match step {
            Step::Done(text) => return Ok(text),
            Step::CallModel(request) => {
                if let Err(limit) = ctx.check_before_model_call() {
                    return Err(stop(ctx, run, limit));
                }
                let turn = request.turn;
                ctx.emit_with(|| EventKind::ModelCallStarted {
                    model: model_id.clone(),
                    turn,
                });
                let on_delta = move |delta: ModelDelta| ctx.emit(EventKind::ModelDelta { turn, delta });
                let call = if ctx.sink().enabled() {
                    agent.model.complete_streaming(&request, &on_delta)
                } else {
                    agent.model.complete(&request)
                };
                let response = match ctx.deadline() {
                    Some(deadline) => match Box::pin(tokio::time::timeout_at(deadline.into(), call)).await {
                        Ok(r) => r,
                        Err(_) => return Err(stop(ctx, run, LimitKind::Deadline)),
                    },
                    None => call.await,
                };
                drop(request);
                let response = match response {
                    Ok(r) => r,
                    Err(source) => {
                        return Err(RunError::Model {
                            path: ctx.path().clone(),
                            depth: ctx.depth(),
                            source,
                            partial: Box::new(ctx.partial(run.last_text(), run.transcript().clone(), run.turns())),
                        });
                    }
                };
                let (cost, charged) = ctx.charge_model_call(model_id, &response.usage);
                ctx.emit_with(|| EventKind::ModelCallCompleted {
                    model: model_id.clone(),
                    turn,
                    usage: response.usage,
                    cost,
                    tool_calls: response.tool_calls.len() as u32,
                });
                if let Err(e) = run.on_model(response) {
                    return Err(RunError::Invalid {
                        path: ctx.path().clone(),
                        depth: ctx.depth(),
                        message: e.to_string(),
                    });
                }
                if let Err(limit) = charged {
                    return Err(stop(ctx, run, limit));
                }
            }
            Step::CallTools(calls) => {
                // Boxed: its state is large and most runs (leaf sub-agents)
                // never call a tool, so it should not weigh on every task.
                let outcomes = Box::pin(run_tools(agent, ctx, &calls, failures)).await;
                if let Err(e) = run.on_tools(outcomes) {
                    return Err(RunError::Invalid {
                        path: ctx.path().clone(),
                        depth: ctx.depth(),
                        message: e.to_string(),
                    });
                }
                if ctx.deadline_passed() {
                    return Err(stop(ctx, run, LimitKind::Deadline));
                }
            }
        }
    }
}

async fn run_tools(
    agent: &AgentInner,
    ctx: &RunContext,
    calls: &[ToolCall],
    failures: &mut Vec<ToolFailure>,
) -> Vec<ToolOutcome> {
    let cap = ctx.limits().max_concurrent_children.unwrap_or(usize::MAX).max(1);
    let results: Vec<(ToolOutcome, Option<ToolError>)> = if calls.len() == 1 {
        vec![run_tool(agent, ctx, &calls[0]).await]
    } else {
        let mut slots: Vec<Option<(ToolOutcome, Option<ToolError>)>> = Vec::new();
        slots.resize_with(calls.len(), || None);
        let mut pending = calls.iter().enumerate();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        std::future::poll_fn(|cx| {
            loop {
                // Start at most `START_BATCH` calls per poll, then collect
                // what has finished before starting more. `FuturesUnordered`
                // polls in wake order, so starting all N calls at once would
                // let every finished child (its task and its output) wait
                // until the last call has started: N children alive at once
                // even when each is over in microseconds.
                let mut started = 0;
                while in_flight.len() < cap && started < START_BATCH {
                    let Some((i, call)) = pending.next() else { break };
                    in_flight.push(run_tool(agent, ctx, call).map(move |r| (i, r)));
                    started += 1;
                }
                while let Poll::Ready(Some((i, r))) = in_flight.poll_next_unpin(cx) {
                    if let Some(slot) = slots.get_mut(i) {
                        *slot = Some(r);
                    }
                }
                let more = pending.len() > 0;
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
        })
        .await;
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

async fn run_tool(agent: &AgentInner, ctx: &RunContext, call: &ToolCall) -> (ToolOutcome, Option<ToolError>) {
    ctx.emit_with(|| EventKind::ToolCallStarted {
        call_id: call.id.clone(),
        tool: call.name.clone(),
    });
    let result = match agent.tools.get(&call.name) {
        None => Err(ToolError::NotFound {
            tool: call.name.to_string(),
            available: agent.specs.iter().map(|s| &*s.name).collect::<Vec<_>>().join(", "),
        }),
        Some(tool) => {
            let tctx = ToolContext {
                run: ctx.clone(),
                call_id: call.id.clone(),
            };
            let fut = yield_when_out_of_budget(AssertUnwindSafe(tool.call_json(tctx, &call.arguments)).catch_unwind());
            let limit = match (ctx.deadline().map(|d| d + CHILD_GRACE), agent.tool_timeout) {
                (Some(d), Some(t)) => Some(d.min(Instant::now() + t)),
                (Some(d), None) => Some(d),
                (None, Some(t)) => Some(Instant::now() + t),
                (None, None) => None,
            };
            let caught = match limit {
                // Boxed: the timer is large and most tool calls have no limit.
                Some(at) => match Box::pin(tokio::time::timeout_at(at.into(), fut)).await {
                    Ok(r) => r,
                    Err(_) => Ok(Err(ToolError::Timeout)),
                },
                None => fut.await,
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
