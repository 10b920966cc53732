//! Steering running agents and sub-agents: every command kind and target
//! kind, policy and provenance, events, and the control socket.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tinyagents_core::{
    Actor, ActorKind, BoxFuture, CollectingSink, CommandKind, DelegationPolicy, Event, EventKind, Message, Model,
    ModelError, ModelRequest, ModelResponse, RunConfig, RunError, RunId, SteeringCommand, SteeringPhase,
    SteeringRequest, SteeringTarget, ToolCall, ToolError, ToolPolicy, tool_fn, tool_fn_with_context,
};
use tinyagents_harness::steering::{
    ControlClient, ControlRequest, ControlResponse, SteeringHub, SteeringPolicy, serve_control_socket,
};
use tinyagents_harness::{Agent, AgentOutput, SubAgent};
use tokio::sync::{Semaphore, mpsc};

/// A model that reports each call (run id, turn) and waits for a permit
/// before answering with `respond(request)`. Lets a test steer a run while it
/// is provably mid-flight.
struct Gate {
    entered: mpsc::UnboundedSender<(RunId, u32)>,
    release: Arc<Semaphore>,
    respond: Box<dyn Fn(&ModelRequest) -> ModelResponse + Send + Sync>,
}

impl Model for Gate {
    fn id(&self) -> &str {
        "gate"
    }
    fn complete<'a>(&'a self, req: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let _ = self.entered.send((req.run_id, req.turn));
            let permit = self.release.acquire().await.map_err(|_| ModelError::Cancelled)?;
            permit.forget();
            Ok((self.respond)(req))
        })
    }
}

struct GateHandle {
    entered: mpsc::UnboundedReceiver<(RunId, u32)>,
    release: Arc<Semaphore>,
}

impl GateHandle {
    async fn next(&mut self) -> (RunId, u32) {
        tokio::time::timeout(Duration::from_secs(10), self.entered.recv())
            .await
            .expect("a model call was expected")
            .expect("gate closed")
    }
    fn open(&self, n: usize) {
        self.release.add_permits(n);
    }
}

fn gate(respond: impl Fn(&ModelRequest) -> ModelResponse + Send + Sync + 'static) -> (Gate, GateHandle) {
    let (tx, rx) = mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    (
        Gate {
            entered: tx,
            release: release.clone(),
            respond: Box::new(respond),
        },
        GateHandle { entered: rx, release },
    )
}

fn human() -> Actor {
    Actor::Human { id: "ops".into() }
}

fn steer(
    hub: &SteeringHub,
    actor: Actor,
    target: SteeringTarget,
    command: SteeringCommand,
) -> Result<tinyagents_harness::steering::SteeringAck, tinyagents_harness::steering::SteeringRejected> {
    hub.steer(SteeringRequest::new(actor, target, command))
}

fn parent_run(run_id: RunId) -> SteeringTarget {
    SteeringTarget::ParentRun { run_id }
}

fn steering_events(events: &[Event]) -> Vec<(String, RunId, tinyagents_core::SteeringInfo)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Steering { info, .. } | EventKind::SubAgentSteering { info, .. } => {
                Some((e.kind.name().to_string(), e.run_id, (**info).clone()))
            }
            _ => None,
        })
        .collect()
}

fn config(hub: &Arc<SteeringHub>, sink: &Arc<CollectingSink>) -> RunConfig {
    RunConfig::new().hooks(hub.clone()).sink(sink.clone())
}

type Running = tokio::task::JoinHandle<Result<AgentOutput, RunError>>;

/// Runs `agent` in the background under a fresh hub (default policy) with a
/// collecting sink; `tune` adjusts the configuration.
fn launch(agent: Agent, tune: impl FnOnce(RunConfig) -> RunConfig) -> (Arc<SteeringHub>, Arc<CollectingSink>, Running) {
    let hub = SteeringHub::new(SteeringPolicy::default());
    let sink = CollectingSink::new();
    let cfg = tune(config(&hub, &sink));
    let run = tokio::spawn(async move { agent.run_with(&cfg, "go").await });
    (hub, sink, run)
}

/// An orchestrator calling `worker` `n` times in one turn, then joining.
fn fan_out(n: usize, worker: Agent) -> Agent {
    let name = worker.name().to_string();
    Agent::builder("orchestrator")
        .model(tinyagents_providers::ScriptedModel::from_fn(move |req| {
            Ok(if after_tools(req) {
                let joined: Vec<String> = req
                    .messages
                    .iter()
                    .filter_map(|m| match m {
                        Message::Tool {
                            content,
                            is_error: false,
                            ..
                        } => Some(content.to_string()),
                        _ => None,
                    })
                    .collect();
                ModelResponse::text(joined.join(","))
            } else {
                ModelResponse::tool_calls(
                    (0..n)
                        .map(|i| {
                            ToolCall::new(
                                format!("c{i}"),
                                name.as_str(),
                                &serde_json::json!({"input": i.to_string()}),
                            )
                        })
                        .collect(),
                )
            })
        }))
        .subagent(SubAgent::new(worker))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_one_of_five_parallel_children_while_the_other_four_finish_and_join() {
    let (model, mut g) = gate(|req| ModelResponse::text(format!("r{}", last_text(req))));
    let worker = Agent::builder("worker").model(model).build();
    let hub = SteeringHub::new(SteeringPolicy::default());
    let sink = CollectingSink::new();
    let root = fan_out(5, worker);
    let cfg = config(&hub, &sink);
    let run = tokio::spawn(async move { root.run_with(&cfg, "go").await });

    let mut children = Vec::new();
    for _ in 0..5 {
        children.push(g.next().await.0);
    }
    let root_id = hub.live_runs().iter().find(|r| r.depth == 0).unwrap().run_id;
    let victim = children[2];
    steer(
        &hub,
        human(),
        SteeringTarget::ChildRun {
            parent_run_id: root_id,
            child_run_id: victim,
        },
        SteeringCommand::Cancel,
    )
    .unwrap();
    g.open(5);
    let out: AgentOutput = run.await.unwrap().unwrap();

    assert_eq!(out.failures.len(), 1);
    let ToolError::ChildRun(e) = &out.failures[0].error else {
        panic!("{:?}", out.failures[0].error)
    };
    assert!(matches!(**e, RunError::Cancelled { depth: 1, .. }), "{e:?}");
    let mut results: Vec<&str> = out.text.split(',').collect();
    results.sort_unstable();
    assert_eq!(results.len(), 4, "the four siblings joined: {}", out.text);
    // The cancelled child's own events, and nobody else's, say it was cancelled.
    let events = sink.events();
    let failed: Vec<RunId> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::RunFailed { .. }))
        .map(|e| e.run_id)
        .collect();
    assert_eq!(failed, [victim]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_cannot_steer_a_run_outside_its_subtree() {
    let (model, mut g) = gate(|_| ModelResponse::text("done"));
    let worker_a = Agent::builder("a").model(model).build();
    let (model_b, mut gb) = gate(|_| ModelResponse::text("done"));
    let worker_b = Agent::builder("b").model(model_b).build();
    let root = Agent::builder("root")
        .model(tinyagents_providers::ScriptedModel::new([
            ModelResponse::tool_calls(vec![
                ToolCall::new("1", "a", &serde_json::json!({"input": "x"})),
                ToolCall::new("2", "b", &serde_json::json!({"input": "y"})),
            ]),
            ModelResponse::text("end"),
        ]))
        .subagent(SubAgent::new(worker_a))
        .subagent(SubAgent::new(worker_b))
        .build();
    let (hub, sink, run) = launch(root, |c| c);
    let a = g.next().await.0;
    let b = gb.next().await.0;
    let root_id = hub.live_runs().iter().find(|r| r.depth == 0).unwrap().run_id;

    // Sibling a tries to steer sibling b.
    let err = steer(&hub, Actor::Parent { run_id: a }, parent_run(b), SteeringCommand::Pause).unwrap_err();
    assert!(err.reason.contains("not an ancestor"), "{}", err.reason);
    assert_eq!(&*err.policy_id, "default");
    // The root may steer its descendant.
    steer(
        &hub,
        Actor::Parent { run_id: root_id },
        parent_run(b),
        SteeringCommand::SetMetadata {
            key: "k".into(),
            value: serde_json::json!(1),
        },
    )
    .unwrap();
    g.open(1);
    gb.open(1);
    let out = run.await.unwrap().unwrap();
    assert!(out.is_clean());

    let ev = steering_events(&sink.events());
    let rejected: Vec<_> = ev.iter().filter(|e| e.0 == "steering.rejected").collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].1, b, "emitted by the target run");
    assert!(rejected[0].2.detail.as_deref().unwrap().contains("not an ancestor"));
    let parent_view: Vec<_> = ev.iter().filter(|e| e.0 == "subagent.steering_rejected").collect();
    assert_eq!(parent_view.len(), 1);
    assert_eq!(parent_view[0].1, root_id, "the target's parent sees the rejection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowing_delegation_mid_run_stops_further_spawns() {
    let (model, mut g) = gate(|_| ModelResponse::text("w"));
    let model = Arc::new(model);
    let worker = Agent::builder("worker").shared_model(model.clone()).build();
    let root_model = Arc::new(tinyagents_providers::ScriptedModel::new([
        tinyagents_providers::ScriptedModel::call("worker", serde_json::json!({"input": "first"})),
        ModelResponse::tool_calls(
            (0..3)
                .map(|i| ToolCall::new(format!("m{i}"), "worker", &serde_json::json!({"input": "more"})))
                .collect(),
        ),
        ModelResponse::text("end"),
    ]));
    let root = Agent::builder("root")
        .shared_model(root_model.clone())
        .subagent(SubAgent::new(worker))
        .build();
    let (hub, _sink, run) = launch(root, |c| c);
    g.next().await;
    let root_id = hub.live_runs().iter().find(|r| r.depth == 0).unwrap().run_id;
    steer(
        &hub,
        human(),
        parent_run(root_id),
        SteeringCommand::NarrowDelegation(DelegationPolicy {
            max_new_children: Some(0),
            allow_agents: None,
        }),
    )
    .unwrap();
    g.open(1);
    let out = run.await.unwrap().unwrap();
    // The three later spawns were refused before any model call.
    assert_eq!(out.failures.len(), 3);
    for f in &out.failures {
        let ToolError::ChildRun(e) = &f.error else { panic!() };
        assert!(
            matches!(&**e, RunError::SpawnDenied { reason, .. } if reason.contains("no more than 0")),
            "{e:?}"
        );
    }
    assert!(g.entered.try_recv().is_err(), "no refused child reached its model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_deliver_apply_events_carry_every_field_and_the_instruction_keeps_its_provenance() {
    let (model, mut g) = gate(|req| {
        if req.turn == 0 {
            tinyagents_providers::ScriptedModel::call("noop", serde_json::json!({}))
        } else {
            ModelResponse::text("done")
        }
    });
    let model = Arc::new(model);
    let noop = noop();
    let child = Agent::builder("child").shared_model(model.clone()).tool(noop).build();
    let root = delegator("root", child);
    let (hub, sink, run) = launch(root, |c| c);
    let (child_id, _) = g.next().await;
    let root_id = hub.live_runs().iter().find(|r| r.depth == 0).unwrap().run_id;
    hub.control(child_id).unwrap().set_checkpoint_id("cp-7");
    let ack = steer(
        &hub,
        human(),
        SteeringTarget::ChildRun {
            parent_run_id: root_id,
            child_run_id: child_id,
        },
        SteeringCommand::AddInstruction {
            text: "cite your sources".into(),
        },
    )
    .unwrap();
    g.open(2);
    run.await.unwrap().unwrap();

    let ev: Vec<_> = steering_events(&sink.events())
        .into_iter()
        .filter(|e| e.2.correlation_id == ack.correlation_id)
        .collect();
    let names: Vec<&str> = ev.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "steering.requested",
            "steering.accepted",
            "subagent.steering_received",
            "steering.delivered",
            "steering.applied"
        ]
    );
    for (name, emitter, info) in &ev {
        let expect_emitter = if name.starts_with("subagent.") {
            root_id
        } else {
            child_id
        };
        assert_eq!(*emitter, expect_emitter, "{name}");
        assert_eq!(info.parent_run_id, Some(root_id), "{name}");
        assert_eq!(info.child_run_id, Some(child_id), "{name}");
        assert_eq!(info.namespace, ["root", "child"], "{name}");
        assert_eq!(info.actor, human(), "{name}");
        assert_eq!(info.command, CommandKind::AddInstruction, "{name}");
        assert_eq!(&*info.policy_id, "default", "{name}");
        assert_eq!(info.checkpoint_id.as_deref(), Some("cp-7"), "{name}");
    }
    // Every event also carries the root run id.
    assert!(sink.events().iter().all(|e| e.root_run_id == root_id));

    // The child's next request carries the instruction as steering with
    // provenance: not as user input, not inside assistant text.
    // (The gate does not record; read it from the child's events instead.)
    let delivered_before_call = sink
        .events()
        .iter()
        .filter(|e| e.run_id == child_id)
        .map(|e| e.kind.name())
        .collect::<Vec<_>>();
    let applied = delivered_before_call
        .iter()
        .position(|n| *n == "steering.applied")
        .unwrap();
    let next_call = delivered_before_call
        .iter()
        .rposition(|n| *n == "model_call_started")
        .unwrap();
    assert!(
        applied < next_call,
        "applied at the boundary before the next model call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steering_instructions_reach_the_model_as_labelled_steering_messages() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<ModelRequest>::new()));
    let s2 = seen.clone();
    let (model, mut g) = gate(move |req| {
        s2.lock().unwrap().push(req.clone());
        if req.turn == 0 {
            tinyagents_providers::ScriptedModel::call("noop", serde_json::json!({}))
        } else {
            ModelResponse::text("done")
        }
    });
    let noop = noop();
    let agent = Agent::builder("solo")
        .system("old rules")
        .model(model)
        .tool(noop)
        .build();
    let (hub, _sink, run) = launch(agent, |c| c);
    let (id, _) = g.next().await;
    steer(
        &hub,
        human(),
        parent_run(id),
        SteeringCommand::AddInstruction {
            text: "be terse".into(),
        },
    )
    .unwrap();
    steer(
        &hub,
        human(),
        parent_run(id),
        SteeringCommand::ReplaceInstructions {
            text: "new rules".into(),
        },
    )
    .unwrap();
    g.open(2);
    run.await.unwrap().unwrap();
    let reqs = seen.lock().unwrap().clone();
    let second: Vec<&Message> = reqs[1].messages.iter().collect();
    assert!(matches!(second[0], Message::System { content } if &**content == "new rules"));
    assert!(
        !second
            .iter()
            .any(|m| matches!(m, Message::System { content } if &**content == "old rules"))
    );
    let steering: Vec<&Message> = second
        .iter()
        .copied()
        .filter(|m| matches!(m, Message::Steering { .. }))
        .collect();
    assert_eq!(steering.len(), 2);
    assert!(
        matches!(steering[0], Message::Steering { actor, content, .. } if *actor == human() && &**content == "be terse")
    );
    assert!(
        !second
            .iter()
            .any(|m| matches!(m, Message::User { content } if content.contains("terse")))
    );
    assert!(
        !second
            .iter()
            .any(|m| matches!(m, Message::Assistant { content: Some(c), .. } if c.contains("terse")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_the_run_at_the_next_boundary_and_resume_continues_it() {
    let (model, mut g) = gate(|req| {
        if req.turn == 0 {
            tinyagents_providers::ScriptedModel::call("noop", serde_json::json!({}))
        } else {
            ModelResponse::text("done")
        }
    });
    let noop = noop();
    let agent = Agent::builder("solo").model(model).tool(noop).build();
    let (hub, _sink, run) = launch(agent, |c| c);
    let (id, _) = g.next().await;
    steer(&hub, human(), parent_run(id), SteeringCommand::Pause).unwrap();
    g.open(10);
    // The run finishes its tool step, then holds before the next model call.
    let mut status = None;
    for _ in 0..200 {
        let s = hub.control(id).unwrap().status();
        if s.paused && s.phase == "paused" {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = status.expect("the run should pause");
    assert_eq!(status.turns, 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(g.entered.try_recv().is_err(), "no model call while paused");
    assert!(!run.is_finished());
    steer(&hub, human(), parent_run(id), SteeringCommand::Resume).unwrap();
    let out = run.await.unwrap().unwrap();
    assert_eq!(&*out.text, "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_aborts_an_in_flight_model_call_and_stop_finishes_the_step_first() {
    // Cancel: the model call in flight is abandoned at once.
    let (model, mut g) = gate(|_| ModelResponse::text("never"));
    let agent = Agent::builder("solo").model(model).build();
    let (hub, sink, run) = launch(agent, |c| c);
    let (id, _) = g.next().await;
    steer(&hub, human(), parent_run(id), SteeringCommand::Cancel).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, RunError::Cancelled { depth: 0, .. }), "{err:?}");

    // Stop: the current step (the tool batch) finishes, its results are kept.
    let (model, mut g) = gate(|_| tinyagents_providers::ScriptedModel::call("noop", serde_json::json!({})));
    let noop = tool_fn("noop", "does nothing", |_: serde_json::Value| async {
        Ok::<_, ToolError>("kept")
    });
    let agent = Agent::builder("solo").model(model).tool(noop).build();
    let hub = SteeringHub::new(SteeringPolicy::default());
    let cfg = config(&hub, &sink);
    let run = tokio::spawn(async move { agent.run_with(&cfg, "go").await });
    let (id, _) = g.next().await;
    steer(&hub, human(), parent_run(id), SteeringCommand::Stop).unwrap();
    g.open(10);
    let err = run.await.unwrap().unwrap_err();
    let RunError::Stopped { partial, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(partial.turns, 1);
    assert!(matches!(partial.transcript.last(), Some(Message::Tool { content, .. }) if &**content == "kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowing_tools_withdraws_them_from_the_model_and_denies_calls() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<ModelRequest>::new()));
    let s3 = seen.clone();
    let (model, mut g) = gate(move |req| {
        s3.lock().unwrap().push(req.clone());
        match req.turn {
            0 => ModelResponse::tool_calls(vec![ToolCall::raw("x", "a", "{}")]),
            1 => ModelResponse::tool_calls(vec![ToolCall::raw("y", "a", "{}"), ToolCall::raw("z", "b", "{}")]),
            _ => ModelResponse::text("done"),
        }
    });
    let a = tool_fn("a", "tool a", |_: serde_json::Value| async { Ok::<_, ToolError>("A") });
    let b = tool_fn("b", "tool b", |_: serde_json::Value| async { Ok::<_, ToolError>("B") });
    let agent = Agent::builder("solo").model(model).tool(a).tool(b).build();
    let (hub, _sink, run) = launch(agent, |c| c);
    let (id, _) = g.next().await;
    steer(
        &hub,
        human(),
        parent_run(id),
        SteeringCommand::NarrowTools(ToolPolicy {
            allow_tools: Some(vec!["a".into()]),
            max_output_tokens: Some(64),
        }),
    )
    .unwrap();
    g.open(10);
    let out = run.await.unwrap().unwrap();
    let reqs = seen.lock().unwrap().clone();
    assert_eq!(reqs[0].tools.len(), 2);
    let later: Vec<&str> = reqs[1].tools.iter().map(|t| &*t.name).collect();
    assert_eq!(later, ["a"]);
    assert_eq!(reqs[1].max_output_tokens, Some(64));
    assert_eq!(out.failures.len(), 1);
    assert!(matches!(&out.failures[0].error, ToolError::Denied { reason } if reason.contains("withdrawn")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_pending_fanout_keeps_started_children_and_cancels_the_rest() {
    let (model, mut g) = gate(|_| ModelResponse::text("w"));
    let worker = Agent::builder("worker").model(model).build();
    let root = fan_out(3, worker);
    let (hub, _sink, run) = launch(root, |c| {
        c.limits(tinyagents_core::RunLimits::new().max_concurrent_children(1))
    });
    g.next().await;
    let root_id = hub.live_runs().iter().find(|r| r.depth == 0).unwrap().run_id;
    steer(&hub, human(), parent_run(root_id), SteeringCommand::CancelPendingFanout).unwrap();
    g.open(10);
    let out = run.await.unwrap().unwrap();
    assert_eq!(&*out.text, "w", "the started child finished and joined");
    assert_eq!(out.failures.len(), 2);
    assert!(out.failures.iter().all(|f| matches!(f.error, ToolError::Cancelled)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_metadata_and_interrupt_approval() {
    let approval = tool_fn_with_context(
        "deploy",
        "Deploys after approval.",
        |ctx, _: serde_json::Value| async move {
            let v = tinyagents_harness::steering::interrupt(&ctx, "deploy-prod").await?;
            Ok::<_, ToolError>(format!("deployed with {v}"))
        },
    );
    let model = Arc::new(tinyagents_providers::ScriptedModel::new([
        tinyagents_providers::ScriptedModel::call("deploy", serde_json::json!({})),
        tinyagents_providers::ScriptedModel::call("deploy", serde_json::json!({})),
        ModelResponse::text("finished"),
    ]));
    let agent = Agent::builder("deployer")
        .shared_model(model.clone())
        .tool(approval)
        .build();
    let (hub, _sink, run) = launch(agent, |c| c);

    let wait_interrupt = || async {
        for _ in 0..400 {
            if let Some(r) = hub.live_runs().first()
                && r.pending_interrupts == ["deploy-prod"]
            {
                return r.run_id;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no interrupt appeared");
    };
    let id = wait_interrupt().await;
    // Approving an interrupt that does not exist is rejected.
    let err = steer(
        &hub,
        human(),
        parent_run(id),
        SteeringCommand::Approve {
            interrupt_id: "nope".into(),
            value: serde_json::json!(null),
        },
    )
    .unwrap_err();
    assert!(err.reason.contains("no pending interrupt"));
    steer(
        &hub,
        human(),
        parent_run(id),
        SteeringCommand::SetMetadata {
            key: "ticket".into(),
            value: serde_json::json!("OPS-1"),
        },
    )
    .unwrap();
    let ack = steer(&hub, human(), parent_run(id), SteeringCommand::RequestStatus).unwrap();
    let status = ack.status.unwrap();
    assert_eq!(status.path, "deployer");
    assert_eq!(status.phase, "interrupted");
    assert_eq!(status.metadata["ticket"], "OPS-1");
    steer(
        &hub,
        human(),
        parent_run(id),
        SteeringCommand::Approve {
            interrupt_id: "deploy-prod".into(),
            value: serde_json::json!("v2"),
        },
    )
    .unwrap();
    let id = wait_interrupt().await;
    steer(
        &hub,
        human(),
        parent_run(id),
        SteeringCommand::Reject {
            interrupt_id: "deploy-prod".into(),
            reason: "change freeze".into(),
        },
    )
    .unwrap();
    let out = run.await.unwrap().unwrap();
    let reqs = model.requests();
    assert!(
        matches!(reqs[1].messages.last(), Some(Message::Tool { content, is_error: false, .. }) if content.contains("deployed with \"v2\""))
    );
    assert!(
        matches!(reqs[2].messages.last(), Some(Message::Tool { content, is_error: true, .. }) if content.contains("change freeze"))
    );
    assert_eq!(out.failures.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_resolve_by_namespace_and_graph_only_targets_are_refused_for_agent_runs() {
    let (model, mut g) = gate(|_| ModelResponse::text("done"));
    let child = Agent::builder("researcher").model(model).build();
    let root = delegator("root", child);
    let (hub, _sink, run) = launch(root, |c| c);
    let (child_id, _) = g.next().await;
    let root_id = hub.live_runs().iter().find(|r| r.depth == 0).unwrap().run_id;
    let ack = steer(
        &hub,
        human(),
        SteeringTarget::Namespace {
            run_id: root_id,
            namespace: vec!["researcher".into()],
        },
        SteeringCommand::SetMetadata {
            key: "via".into(),
            value: serde_json::json!("namespace"),
        },
    )
    .unwrap();
    assert_eq!(ack.run_id, child_id);
    // A ChildRun target must name the child's real parent.
    let err = steer(
        &hub,
        human(),
        SteeringTarget::ChildRun {
            parent_run_id: child_id,
            child_run_id: root_id,
        },
        SteeringCommand::Pause,
    )
    .unwrap_err();
    assert!(err.reason.contains("is not a child of"), "{}", err.reason);
    for target in [
        SteeringTarget::Task {
            run_id: root_id,
            task_id: "t1".into(),
        },
        SteeringTarget::Node {
            run_id: root_id,
            node_id: "review".into(),
        },
    ] {
        let err = steer(&hub, human(), target, SteeringCommand::Pause).unwrap_err();
        assert!(err.reason.contains("not a graph run"), "{}", err.reason);
    }
    let err = steer(
        &hub,
        human(),
        parent_run(root_id),
        SteeringCommand::Redirect {
            node_id: "review".into(),
        },
    )
    .unwrap_err();
    assert!(err.reason.contains("not a graph run"), "{}", err.reason);
    g.open(1);
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn unknown_and_finished_runs_and_disallowed_actors_are_rejected_with_reasons() {
    let hub = SteeringHub::new(
        SteeringPolicy::deny_all("locked")
            .allow(ActorKind::Human, [CommandKind::Pause, CommandKind::Resume])
            .allow(ActorKind::Test, CommandKind::ALL),
    );
    let sink = CollectingSink::new();
    let agent = leaf("solo", "x");
    let out = agent.run_with(&config(&hub, &sink), "go").await.unwrap();
    let finished = out.run.run_id;
    let err = steer(&hub, Actor::Test, parent_run(finished), SteeringCommand::Pause).unwrap_err();
    assert!(err.reason.contains("has finished"), "{}", err.reason);
    let unknown = RunId::new();
    let err = steer(&hub, Actor::Test, parent_run(unknown), SteeringCommand::Pause).unwrap_err();
    assert!(err.reason.contains("unknown run id"), "{}", err.reason);

    let (model, mut g) = gate(|_| ModelResponse::text("x"));
    let agent = Agent::builder("solo").model(model).build();
    let cfg = config(&hub, &sink);
    let run = tokio::spawn(async move { agent.run_with(&cfg, "go").await });
    let (id, _) = g.next().await;
    let err = steer(&hub, human(), parent_run(id), SteeringCommand::Cancel).unwrap_err();
    assert_eq!(&*err.policy_id, "locked");
    assert!(
        err.reason.contains("does not allow Human actors to send Cancel"),
        "{}",
        err.reason
    );
    steer(&hub, human(), parent_run(id), SteeringCommand::Pause).unwrap();
    steer(&hub, Actor::Test, parent_run(id), SteeringCommand::Cancel).unwrap();
    g.open(1);
    assert!(matches!(run.await.unwrap(), Err(RunError::Cancelled { .. })));
    // Nothing was applied twice: one applied event per accepted command.
    let applied: Vec<_> = steering_events(&sink.events())
        .into_iter()
        .filter(|e| e.0 == "steering.applied")
        .map(|e| e.2.correlation_id)
        .collect();
    let mut dedup = applied.clone();
    dedup.dedup();
    assert_eq!(applied, dedup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_socket_applies_commands_with_policy_and_survives_malformed_lines() {
    let dir = std::env::temp_dir().join(format!("ta-sock-{}", RunId::new().short()));
    let path = dir.join("control.sock");
    let hub = SteeringHub::new(SteeringPolicy::deny_all("surface").allow(
        ActorKind::Human,
        [
            CommandKind::Pause,
            CommandKind::Resume,
            CommandKind::Cancel,
            CommandKind::AddInstruction,
        ],
    ));
    let server = serve_control_socket(hub.clone(), &path).unwrap();
    let (model, mut g) = gate(|_| ModelResponse::text("x"));
    let agent = Agent::builder("solo").model(model).build();
    let sink = CollectingSink::new();
    let cfg = config(&hub, &sink);
    let run = tokio::spawn(async move { agent.run_with(&cfg, "go").await });
    let (id, _) = g.next().await;

    let mut client = ControlClient::connect(server.path()).await.unwrap();
    for bad in ["{not json\n", "{\"op\":\"launch_missiles\"}\n", "[]\n"] {
        let resp = client.send_raw(bad).await.unwrap();
        assert!(
            matches!(&resp, ControlResponse::Error { message } if message.contains("malformed request")),
            "{resp:?}"
        );
    }
    let resp = client
        .request(&ControlRequest::Steer {
            target: parent_run(id),
            command: SteeringCommand::SetMetadata {
                key: "k".into(),
                value: serde_json::json!(1),
            },
            human: Some("alice".into()),
        })
        .await
        .unwrap();
    assert!(
        matches!(&resp, ControlResponse::Rejected { reason, .. } if reason.contains("does not allow Human")),
        "{resp:?}"
    );
    let ControlResponse::Status { runs } = client.request(&ControlRequest::Status).await.unwrap() else {
        panic!()
    };
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run_id, id);
    let resp = client
        .request(&ControlRequest::Steer {
            target: parent_run(id),
            command: SteeringCommand::Cancel,
            human: Some("alice".into()),
        })
        .await
        .unwrap();
    assert!(matches!(resp, ControlResponse::Accepted { .. }), "{resp:?}");
    assert!(matches!(run.await.unwrap(), Err(RunError::Cancelled { .. })));
    // The actor recorded is the human, whatever the socket client claimed to be.
    let accepted: Vec<_> = steering_events(&sink.events())
        .into_iter()
        .filter(|e| e.0 == "steering.accepted")
        .collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].2.actor, Actor::Human { id: "alice".into() });
    drop(server);
    assert!(!path.exists(), "the socket file is removed with the server");
    g.open(1);
}

#[test]
fn steering_events_use_the_documented_names() {
    let info = Box::new(tinyagents_core::SteeringInfo {
        parent_run_id: None,
        child_run_id: None,
        task_id: None,
        namespace: vec![],
        actor: Actor::Test,
        command: CommandKind::Pause,
        policy_id: "p".into(),
        correlation_id: tinyagents_core::CorrelationId::new(),
        checkpoint_id: None,
        detail: None,
    });
    let names: Vec<&str> = [
        SteeringPhase::Requested,
        SteeringPhase::Accepted,
        SteeringPhase::Rejected,
        SteeringPhase::Delivered,
        SteeringPhase::Applied,
    ]
    .into_iter()
    .map(|phase| {
        EventKind::Steering {
            phase,
            info: info.clone(),
        }
        .name()
    })
    .collect();
    assert_eq!(
        names,
        [
            "steering.requested",
            "steering.accepted",
            "steering.rejected",
            "steering.delivered",
            "steering.applied"
        ]
    );
    let received = EventKind::SubAgentSteering {
        accepted: true,
        info: info.clone(),
    };
    let rejected = EventKind::SubAgentSteering { accepted: false, info };
    assert_eq!(received.name(), "subagent.steering_received");
    assert_eq!(rejected.name(), "subagent.steering_rejected");
}
