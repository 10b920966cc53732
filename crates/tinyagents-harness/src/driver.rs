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
    BoxFuture, EventClass, EventKind, LimitKind, ModelDelta, ModelError, ModelRequest, ModelResponse, RunContext,
    RunError, ToolCall, ToolContext, ToolError,
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
    // What most runs never need, in one box allocated only when needed.
    // Built before the block, so the block captures one word for all of it.
    let control = SteeringHub::of(ctx).and_then(|h| h.control(ctx.run_id()));
    let mut extra = (durable.is_some() || control.is_some()).then(|| {
        Box::new(Extra {
            durable,
            control,
            failures: Vec::new(),
        })
    });
    async move {
        ctx.emit_with(|| EventKind::RunStarted {
            name: agent.name.clone(),
        });
        if let Some(x) = extra.as_deref()
            && let (Some(d), Some(s)) = (&x.durable, steer_of(ctx, &extra))
        {
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
            if let Some(s) = steer_of(ctx, &extra)
                && run.wants_model()
            {
                // Safe boundary: steering is taken before the model is called.
                s.control.set_phase("steering boundary", run.turns());
                let outcome = Box::pin(s.control.at_boundary(s.hub, run)).await;
                attempt!('run, save(ctx, run, &mut extra));
                attempt!('run, outcome.map_err(|how| exit(ctx, run, how)));
                if let Some(s) = steer_of(ctx, &extra) {
                    s.control.set_phase("calling the model", run.turns());
                }
            }
            if run.wants_tools() {
                if let Some(s) = steer_of(ctx, &extra) {
                    s.control.set_phase("running tools", run.turns());
                }
                // Boxed, the calls included: its state is large and most
                // runs (leaf sub-agents) never call a tool.
                attempt!('run, Box::pin(tool_turn(agent, ctx, run, &mut extra)).await);
                attempt!('run, save(ctx, run, &mut extra));
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
            let steer = steer_of(ctx, &extra);
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
            ctx.emit_class_with(EventClass::ModelCall, || EventKind::ModelCallStarted {
                model: agent.model_id.clone(),
                turn: request.turn,
            });
            // Stream only for a sink that keeps deltas (a lifecycle-level
            // trace does not): streaming costs each call a boxed path.
            let streaming = ctx.wants(EventClass::ModelDelta);
            let wait = match (ctx.deadline(), steer, streaming) {
                (None, None, false) => ModelWait::Plain(agent.model.complete(&request)),
                (deadline, steer, streaming) => {
                    // Boxed, with the delta callback: the timer, the cancel
                    // race and streaming are large, and a leaf run without a
                    // sink, a deadline or steering has none of them. Each
                    // case boxes only what it uses.
                    let call = model_call(agent, ctx, &request, streaming);
                    ModelWait::Guarded(match (deadline, steer) {
                        (None, None) => Box::pin(call.map(|r| Some(Some(r)))),
                        (Some(d), None) => Box::pin(tokio::time::timeout_at(d.into(), call).map(|r| Some(r.ok()))),
                        (deadline, Some(_)) => Box::pin(unless_cancelled(steer, async move {
                            match deadline {
                                Some(d) => tokio::time::timeout_at(d.into(), call).await.ok(),
                                None => Some(call.await),
                            }
                        })),
                    })
                }
            };
            let response = match wait.await {
                None => break 'run Err(exit(ctx, run, Exit::Cancel)),
                Some(None) => break 'run Err(stop(ctx, run, LimitKind::Deadline)),
                Some(Some(r)) => r,
            };
            let turn = request.turn;
            drop(request);
            let response = match response {
                Ok(r) => r,
                Err(source) => {
                    if let Some(spent) = source.spent() {
                        // Tokens a failed call still consumed count like any others.
                        let _ = charge_call(agent, ctx, turn, spent, 0);
                    }
                    break 'run Err(RunError::Model {
                        path: ctx.path().clone(),
                        depth: ctx.depth(),
                        source,
                        partial: Box::new(ctx.partial(run.last_text(), run.transcript().clone(), run.turns())),
                    });
                }
            };
            let charged = charge_call(agent, ctx, turn, &response.usage, response.tool_calls.len() as u32);
            attempt!('run, run.on_model(response).map_err(|e| invalid(ctx, e)));
            attempt!('run, save(ctx, run, &mut extra));
            if let Err(limit) = charged {
                break 'run Err(stop(ctx, run, limit));
            }
        };
        if let Some(h) = SteeringHub::of(ctx) {
            h.finish(ctx.run_id());
        }
        let failures = extra.map(|x| x.failures).unwrap_or_default();
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

/// Charges a model call's usage to the run (priced, rolled into the
/// budgets) and reports it (`ModelCallCompleted`); the budget's verdict.
fn charge_call(
    agent: &AgentInner,
    ctx: &RunContext,
    turn: u32,
    usage: &tinyagents_core::Usage,
    tool_calls: u32,
) -> Result<(), LimitKind> {
    let (cost, charged) = ctx.charge_model_call(&agent.model_id, usage);
    ctx.emit_class_with(EventClass::ModelCall, || EventKind::ModelCallCompleted {
        model: agent.model_id.clone(),
        turn,
        usage: *usage,
        cost,
        tool_calls,
    });
    charged
}

/// One model call, streaming deltas to the run's sink when `streaming`.
async fn model_call(agent: &AgentInner, ctx: &RunContext, request: &ModelRequest, streaming: bool) -> ModelResult {
    let turn = request.turn;
    let on_delta = move |delta: ModelDelta| ctx.emit(EventKind::ModelDelta { turn, delta });
    if streaming {
        agent.model.complete_streaming(request, &on_delta).await
    } else {
        agent.model.complete(request).await
    }
}

/// What a run keeps only when it needs it (see [`drive`]).
struct Extra {
    durable: Option<Durable>,
    control: Option<Arc<RunControl>>,
    failures: Vec<ToolFailure>,
}

/// The run's steering handles, when a hub is installed and controls it.
fn steer_of<'a>(ctx: &'a RunContext, extra: &'a Option<Box<Extra>>) -> Option<Steer<'a>> {
    let control = extra.as_deref()?.control.as_deref()?;
    Some(Steer {
        hub: SteeringHub::of(ctx)?,
        control,
    })
}

/// Saves a checkpoint when the run is durable.
fn save(ctx: &RunContext, run: &AgentRun, extra: &mut Option<Box<Extra>>) -> Result<(), RunError> {
    let Some(x) = extra.as_deref_mut() else {
        return Ok(());
    };
    let Some(d) = x.durable.as_mut() else {
        return Ok(());
    };
    let steer = match (SteeringHub::of(ctx), x.control.as_deref()) {
        (Some(hub), Some(control)) => Some(Steer { hub, control }),
        _ => None,
    };
    d.save(ctx, run, steer)
}

/// One tool turn: takes the run's pending calls, runs them and feeds the
/// outcomes back.
async fn tool_turn(
    agent: &AgentInner,
    ctx: &RunContext,
    run: &mut AgentRun,
    extra: &mut Option<Box<Extra>>,
) -> Result<(), RunError> {
    let calls = match run.next_step() {
        Ok(Step::CallTools(calls)) => calls,
        Ok(_) => return Err(invalid(ctx, "a tool turn without pending tool calls")),
        Err(e) => return Err(invalid(ctx, e)),
    };
    let mut failures = Vec::new();
    let outcomes = run_tools(agent, ctx, calls, &mut failures, steer_of(ctx, extra)).await;
    if !failures.is_empty() {
        let x = extra.get_or_insert_with(|| {
            Box::new(Extra {
                durable: None,
                control: None,
                failures: Vec::new(),
            })
        });
        x.failures.append(&mut failures);
    }
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
    calls: crate::machine::ToolCalls,
    failures: &mut Vec<ToolFailure>,
    steer: Option<Steer<'_>>,
) -> Vec<ToolOutcome> {
    let cap = ctx.limits().max_concurrent_children.unwrap_or(usize::MAX).max(1);
    let allow = steer.and_then(|s| s.control.tool_policy().allow_tools);
    let allow = allow.as_deref();
    // Steering may stop new calls from starting (cancel, cancel pending fan-out).
    let halted = || steer.is_some_and(|s| s.control.fanout_cancelled() || s.control.is_cancelled());
    // One word and a half per call until it finishes: its result, with the
    // (rare) error boxed. The outcome is built when the turn ends.
    let mut slots: Vec<Option<ToolResult>> = Vec::new();
    slots.resize_with(calls.len(), || None);
    if calls.len() == 1 && steer.is_none() {
        let result = match start_tool(agent, ctx, &calls[0], 0, allow) {
            Ok(call) => call.await.1,
            Err(error) => Err(error),
        };
        slots[0] = Some(finish_tool(ctx, &calls[0], result));
    } else {
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
                    match start_tool(agent, ctx, call, i, allow) {
                        Ok(running) => in_flight.push(running),
                        Err(error) => slots[i] = Some(finish_tool(ctx, call, Err(error))),
                    }
                    started += 1;
                }
                while let Poll::Ready(Some((i, r))) = in_flight.poll_next_unpin(cx) {
                    if let (Some(slot), Some(call)) = (slots.get_mut(i), calls.get(i)) {
                        *slot = Some(finish_tool(ctx, call, r));
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
    }
    let mut outcomes = Vec::with_capacity(calls.len());
    for (slot, call) in slots.into_iter().zip(calls.iter()) {
        // Calls that never ran or were abandoned are reported as cancelled.
        match slot.unwrap_or_else(|| Err(Box::new(ToolError::Cancelled))) {
            Ok(content) => outcomes.push(ToolOutcome::ok(call, content)),
            Err(error) => {
                outcomes.push(ToolOutcome::error(call, error_message(&error)));
                ctx.record_failure();
                failures.push(ToolFailure {
                    call_id: call.id.clone(),
                    tool: call.name.clone(),
                    error: *error,
                });
            }
        }
    }
    outcomes
}

/// A finished call's result, as kept until the turn ends.
type ToolResult = Result<Arc<str>, Box<ToolError>>;

/// What the model reads for a failed call.
fn error_message(error: &ToolError) -> String {
    format!("error ({:?}): {error}", error.kind())
}

/// Emits `ToolCallCompleted` for a finished call.
fn finish_tool(ctx: &RunContext, call: &ToolCall, result: Result<Arc<str>, ToolError>) -> ToolResult {
    ctx.emit_with(|| EventKind::ToolCallCompleted {
        call_id: call.id.clone(),
        tool: call.name.clone(),
        error: result.as_ref().err().map(error_message),
    });
    result.map_err(Box::new)
}

/// Starts call number `index` of a turn: emits `ToolCallStarted`, checks the
/// tool exists and is allowed, and calls it. A tool may start its work
/// synchronously in `call_json` (the sub-agent tool spawns its child there):
/// a panic there is caught like one in the future it returns. An error here
/// is the call's result; otherwise the returned future yields it.
fn start_tool<'a>(
    agent: &'a AgentInner,
    ctx: &RunContext,
    call: &'a ToolCall,
    index: usize,
    allow: Option<&[String]>,
) -> Result<RunningTool<'a>, ToolError> {
    ctx.emit_class_with(EventClass::ToolCallStarted, || EventKind::ToolCallStarted {
        call_id: call.id.clone(),
        tool: call.name.clone(),
    });
    let denied = allow.is_some_and(|a| !a.iter().any(|t| **t == *call.name));
    let tool = match agent.tools.get(&call.name) {
        Some(_) if denied => {
            return Err(ToolError::Denied {
                reason: format!(
                    "tool {:?} was withdrawn by steering (narrowed tool policy)",
                    &*call.name
                ),
            });
        }
        None => {
            return Err(ToolError::NotFound {
                tool: call.name.to_string(),
                available: agent.specs.iter().map(|s| &*s.name).collect::<Vec<_>>().join(", "),
            });
        }
        Some(tool) => tool,
    };
    let tctx = ToolContext {
        run: ctx.clone(),
        call_id: call.id.clone(),
    };
    let fut =
        std::panic::catch_unwind(AssertUnwindSafe(|| tool.call_json(tctx, &call.arguments))).map_err(|payload| {
            ToolError::Panicked {
                message: panic_message(&*payload),
            }
        })?;
    let fut = AssertUnwindSafe(fut).catch_unwind();
    let limit = match (ctx.deadline().map(|d| d + CHILD_GRACE), agent.tool_timeout) {
        (Some(d), Some(t)) => Some(d.min(Instant::now() + t)),
        (Some(d), None) => Some(d),
        (None, Some(t)) => Some(Instant::now() + t),
        (None, None) => None,
    };
    let call = match limit {
        None => ToolCallFuture::Plain(fut),
        // Boxed: the timer is large and most tool calls have no limit.
        Some(at) => ToolCallFuture::Timed(Box::pin(tokio::time::timeout_at(at.into(), fut))),
    };
    Ok(RunningTool { index, call })
}

type CaughtToolFuture<'a> = futures::future::CatchUnwind<AssertUnwindSafe<BoxFuture<'a, Result<Arc<str>, ToolError>>>>;

enum ToolCallFuture<'a> {
    Plain(CaughtToolFuture<'a>),
    Timed(std::pin::Pin<Box<tokio::time::Timeout<CaughtToolFuture<'a>>>>),
}

/// A tool call in flight: its index in the turn and the tool's future
/// (three words; a fan-out keeps one per call in `FuturesUnordered`).
/// Resolves to the index and the call's result, panics and timeouts
/// included.
///
/// It is polled only while the task has cooperative budget left; otherwise
/// it wakes the task at once and returns `Pending`. Why: a tokio resource (a
/// child's `JoinHandle`, a timer, a socket) polled by a task whose budget is
/// spent returns `Pending` and wakes the task only when the worker parks.
/// `FuturesUnordered` yields when a polled future wakes itself, so it cannot
/// see these deferred wake-ups and goes on polling every other queued call
/// of the turn, each returning `Pending` at once: O(N) wasted polls per poll
/// of the parent, O(N²) per turn of N calls (100,000 sub-agents in one turn
/// took about 8 s instead of well under 1 s). Waking at once lets it yield
/// after two such calls.
struct RunningTool<'a> {
    index: usize,
    call: ToolCallFuture<'a>,
}

impl Future for RunningTool<'_> {
    type Output = (usize, Result<Arc<str>, ToolError>);

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        if !tokio::task::coop::has_budget_remaining() {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let this = self.get_mut();
        let caught = match &mut this.call {
            ToolCallFuture::Plain(f) => std::task::ready!(f.poll_unpin(cx)),
            ToolCallFuture::Timed(f) => match std::task::ready!(f.as_mut().poll(cx)) {
                Ok(caught) => caught,
                Err(_) => Ok(Err(ToolError::Timeout)),
            },
        };
        let result = caught.unwrap_or_else(|payload| {
            Err(ToolError::Panicked {
                message: panic_message(&*payload),
            })
        });
        Poll::Ready((this.index, result))
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}
