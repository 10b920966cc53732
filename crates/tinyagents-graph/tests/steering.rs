//! Steering graph runs: redirect at the superstep boundary, pause/resume,
//! cancel and stop, task and node targets, and pending steering recorded in
//! checkpoints and applied once after resume.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tinyagents_core::{
    Actor, BoxFuture, CollectingSink, EventKind, Model, ModelError, ModelRequest, ModelResponse, RunConfig, RunError,
    RunId, SteeringCommand, SteeringPhase, SteeringRequest, SteeringTarget,
};
use tinyagents_graph::{
    CompiledGraph, END, GraphBuilder, GraphError, GraphOutput, MemoryCheckpointer, NodeContext, NodeError, Reducer,
    Resume, RunOptions, START, Send, SubAgentNode, Update,
};
use tinyagents_harness::Agent;
use tinyagents_harness::steering::{SteeringHub, SteeringPolicy};
use tinyagents_store::Checkpointer;
use tokio::sync::{Semaphore, mpsc};

fn human() -> Actor {
    Actor::Human { id: "ops".into() }
}

/// draft -> finalize, with a review node only reachable by steering. The
/// draft node waits for a permit so the test can steer mid-step.
fn review_graph(gate: Arc<Semaphore>, entered: mpsc::UnboundedSender<()>, pause_after_draft: bool) -> CompiledGraph {
    let after: &[&str] = if pause_after_draft { &["draft"] } else { &[] };
    GraphBuilder::new("doc")
        .channel("log", Reducer::Append)
        .node("draft", move |_: Value, _: NodeContext| {
            let (gate, entered) = (gate.clone(), entered.clone());
            async move {
                let _ = entered.send(());
                gate.acquire()
                    .await
                    .map_err(|e| NodeError::Failed(e.to_string()))?
                    .forget();
                Ok::<_, NodeError>(Update::new().set("log", "draft"))
            }
        })
        .node("review", |_: Value, _: NodeContext| async {
            Ok::<_, NodeError>(Update::new().set("log", "review"))
        })
        .node("finalize", |_: Value, _: NodeContext| async {
            Ok::<_, NodeError>(Update::new().set("log", "finalize"))
        })
        .edge(START, "draft")
        .edge("draft", "finalize")
        .edge("review", "finalize")
        .edge("finalize", END)
        .interrupt_after(after)
        .compile()
        .unwrap()
}

struct Running {
    hub: Arc<SteeringHub>,
    sink: Arc<CollectingSink>,
    gate: Arc<Semaphore>,
    entered: mpsc::UnboundedReceiver<()>,
    run: tokio::task::JoinHandle<Result<GraphOutput, GraphError>>,
}

impl Running {
    async fn wait_entered(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), self.entered.recv())
            .await
            .expect("the draft node should start")
            .expect("gate dropped");
    }
    fn graph_run(&self) -> RunId {
        self.hub
            .live_runs()
            .iter()
            .find(|r| r.depth == 0)
            .expect("graph run is live")
            .run_id
    }
    fn steer(&self, command: SteeringCommand) -> Result<tinyagents_harness::steering::SteeringAck, String> {
        self.hub
            .steer(SteeringRequest::new(
                human(),
                SteeringTarget::ParentRun {
                    run_id: self.graph_run(),
                },
                command,
            ))
            .map_err(|e| e.reason)
    }
}

fn start(opts: impl FnOnce(RunOptions) -> RunOptions) -> Running {
    let gate = Arc::new(Semaphore::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let g = review_graph(gate.clone(), tx, false);
    let hub = SteeringHub::new(SteeringPolicy::default());
    let sink = CollectingSink::new();
    let opts = opts(RunOptions::new().config(RunConfig::new().hooks(hub.clone()).sink(sink.clone())));
    let run = tokio::spawn(async move { g.invoke(json!({}), &opts).await });
    Running {
        hub,
        sink,
        gate,
        entered: rx,
        run,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_lands_on_the_named_node_at_the_next_superstep() {
    let mut r = start(|o| o);
    r.wait_entered().await;
    let err = r
        .steer(SteeringCommand::Redirect {
            node_id: "nowhere".into(),
        })
        .unwrap_err();
    assert!(err.contains("has no node \"nowhere\""), "{err}");
    let ack = r
        .steer(SteeringCommand::Redirect {
            node_id: "review".into(),
        })
        .unwrap();
    r.gate.add_permits(1);
    let out = r.run.await.unwrap().unwrap();
    assert_eq!(out.get("log"), Some(&json!(["draft", "review", "finalize"])));
    let phases: Vec<&str> = r
        .sink
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Steering { info, .. } if info.correlation_id == ack.correlation_id => Some(e.kind.name()),
            _ => None,
        })
        .collect();
    assert_eq!(
        phases,
        [
            "steering.requested",
            "steering.accepted",
            "steering.delivered",
            "steering.applied"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_the_graph_at_the_superstep_boundary_until_resumed() {
    let mut r = start(|o| o);
    r.wait_entered().await;
    r.steer(SteeringCommand::Pause).unwrap();
    r.gate.add_permits(1);
    let id = r.graph_run();
    let mut paused = false;
    for _ in 0..400 {
        if r.hub.control(id).unwrap().status().phase == "paused" {
            paused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(paused, "the graph pauses after the draft step");
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!r.run.is_finished(), "no further superstep while paused");
    r.steer(SteeringCommand::Resume).unwrap();
    let out = r.run.await.unwrap().unwrap();
    assert_eq!(out.get("log"), Some(&json!(["draft", "finalize"])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_stop_take_effect_at_the_boundary() {
    let mut r = start(|o| o);
    r.wait_entered().await;
    r.steer(SteeringCommand::Cancel).unwrap();
    r.gate.add_permits(1);
    let err = r.run.await.unwrap().unwrap_err();
    assert!(
        matches!(err, GraphError::Run(RunError::Cancelled { depth: 0, .. })),
        "{err:?}"
    );

    let mut r = start(|o| o);
    r.wait_entered().await;
    r.steer(SteeringCommand::Stop).unwrap();
    r.gate.add_permits(1);
    let out = r.run.await.unwrap().unwrap();
    assert_eq!(
        out.get("log"),
        Some(&json!(["draft"])),
        "stopped with the finished step kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_runs_take_instructions_through_their_agents_not_directly() {
    let mut r = start(|o| o);
    r.wait_entered().await;
    let err = r
        .steer(SteeringCommand::AddInstruction { text: "hurry".into() })
        .unwrap_err();
    assert!(err.contains("steer one of its tasks"), "{err}");
    r.gate.add_permits(1);
    r.run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_steering_is_checkpointed_and_applied_once_after_resume() {
    let store = Arc::new(MemoryCheckpointer::new());
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Stop after the draft step, as a crash would: the redirect accepted
    // during the step lives only in the checkpoint.
    let g = review_graph(gate.clone(), tx, true);
    let hub = SteeringHub::new(SteeringPolicy::default());
    let opts = RunOptions::new()
        .config(RunConfig::new().hooks(hub.clone()))
        .checkpointer(store.clone())
        .thread("t");
    let g = Arc::new(g);
    let g2 = g.clone();
    let o2 = opts.clone();
    let run = tokio::spawn(async move { g2.invoke(json!({}), &o2).await });
    rx.recv().await.unwrap();
    let graph_run = hub.live_runs().iter().find(|r| r.depth == 0).unwrap().run_id;
    let ack = hub
        .steer(SteeringRequest::new(
            human(),
            SteeringTarget::ParentRun { run_id: graph_run },
            SteeringCommand::Redirect {
                node_id: "review".into(),
            },
        ))
        .unwrap();
    gate.add_permits(1);
    let out = run.await.unwrap().unwrap();
    assert!(out.is_interrupted());
    let latest = store.get_checkpoint("t", "", None).unwrap().unwrap();
    let pending: Vec<SteeringRequest> = latest
        .record
        .pending_steering
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].correlation_id, ack.correlation_id);

    // Resume in a fresh control plane: only the checkpoint knows the command.
    let sink = CollectingSink::new();
    let opts = RunOptions::new()
        .config(
            RunConfig::new()
                .hooks(SteeringHub::new(SteeringPolicy::default()))
                .sink(sink.clone()),
        )
        .checkpointer(store.clone())
        .thread("t");
    let out = g.resume(Resume::none(), &opts).await.unwrap();
    assert_eq!(out.get("log"), Some(&json!(["draft", "review", "finalize"])));
    let applied = sink
        .events()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Steering { phase: SteeringPhase::Applied, info } if info.correlation_id == ack.correlation_id))
        .count();
    assert_eq!(applied, 1);
    let after = store.get_checkpoint("t", "", None).unwrap().unwrap();
    assert!(after.record.pending_steering.is_empty(), "consumed, not carried again");
}

/// Answers after a permit; reports each call's run id.
struct GatedModel {
    entered: mpsc::UnboundedSender<RunId>,
    gate: Arc<Semaphore>,
}

impl Model for GatedModel {
    fn id(&self) -> &str {
        "gated"
    }
    fn complete<'a>(&'a self, req: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let _ = self.entered.send(req.run_id);
            self.gate.acquire().await.map_err(|_| ModelError::Cancelled)?.forget();
            Ok(ModelResponse::text("done"))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_and_node_targets_resolve_to_the_sub_agent_of_that_task() {
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let agent = Agent::builder("worker")
        .model(GatedModel {
            entered: tx,
            gate: gate.clone(),
        })
        .build();
    let g = GraphBuilder::new("team")
        .channel("results", Reducer::Append)
        .subagent_node(
            "worker",
            SubAgentNode::new(agent).output(|out, _| Ok(Update::new().set("results", &*out.text))),
        )
        .conditional_edge(START, &["worker"], |_: Value| {
            (0..2)
                .map(|i| Send::new("worker", format!("job {i}")))
                .collect::<Vec<_>>()
        })
        .edge("worker", END)
        .compile()
        .unwrap();
    let hub = SteeringHub::new(SteeringPolicy::default());
    let opts = RunOptions::new().config(RunConfig::new().hooks(hub.clone()));
    let run = tokio::spawn(async move { g.invoke(json!({}), &opts).await });
    let children = [rx.recv().await.unwrap(), rx.recv().await.unwrap()];
    let graph_run = hub.live_runs().iter().find(|r| r.depth == 0).unwrap().run_id;
    let steer = |target: SteeringTarget| {
        hub.steer(SteeringRequest::new(
            human(),
            target,
            SteeringCommand::SetMetadata {
                key: "k".into(),
                value: json!(1),
            },
        ))
    };
    for index in 0..2 {
        let ack = steer(SteeringTarget::Task {
            run_id: graph_run,
            task_id: format!("1.{index}").into(),
        })
        .unwrap();
        assert!(
            children.contains(&ack.run_id),
            "task 1.{index} resolves to a worker child run"
        );
    }
    let ack = steer(SteeringTarget::Node {
        run_id: graph_run,
        node_id: "worker".into(),
    })
    .unwrap();
    assert!(children.contains(&ack.run_id));
    let err = steer(SteeringTarget::Task {
        run_id: graph_run,
        task_id: "9.9".into(),
    })
    .unwrap_err();
    assert!(err.reason.contains("no graph task \"9.9\""), "{}", err.reason);
    // An instruction for one task's agent is delivered to that child only.
    let ack = hub
        .steer(SteeringRequest::new(
            human(),
            SteeringTarget::Task {
                run_id: graph_run,
                task_id: "1.0".into(),
            },
            SteeringCommand::AddInstruction {
                text: "be brief".into(),
            },
        ))
        .unwrap();
    assert!(children.contains(&ack.run_id));
    gate.add_permits(2);
    let out = run.await.unwrap().unwrap();
    assert_eq!(out.get("results"), Some(&json!(["done", "done"])));
}
