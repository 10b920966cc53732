//! Durable agent runs: checkpoints after every step, resume after a SIGKILL,
//! and steering accepted before the crash applied exactly once.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::noop;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use tinyagents_core::{
    Actor, BoxFuture, CollectingSink, EventKind, Message, Model, ModelError, ModelRequest, ModelResponse, RunConfig,
    RunId, SteeringCommand, SteeringTarget, Usage,
};
use tinyagents_harness::Agent;
use tinyagents_harness::checkpoint::{AgentCheckpointer, CheckpointError, FileCheckpointer, MemoryCheckpointer};
use tinyagents_harness::steering::{
    ControlClient, ControlRequest, ControlResponse, SteeringHub, SteeringLog, SteeringPolicy, serve_control_socket,
};
use tinyagents_providers::ScriptedModel;

const ROLE: &str = "TA_DURABILITY_ROLE";
const DIR: &str = "TA_DURABILITY_DIR";

/// Turn 0 calls `noop`; turn 1 announces the run id on stdout and never
/// answers (the process is killed there).
struct HangingModel;

impl Model for HangingModel {
    fn id(&self) -> &str {
        "hanging"
    }
    fn complete<'a>(&'a self, req: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            if req.turn == 0 {
                return Ok(ScriptedModel::call("noop", serde_json::json!({})).with_usage(Usage::call(5, 5)));
            }
            println!("RUN {}", req.run_id);
            std::io::stdout().flush().ok();
            std::future::pending::<()>().await;
            Err(ModelError::Cancelled)
        })
    }
}

fn worker(model: impl Model) -> Agent {
    let noop = noop();
    Agent::builder("worker")
        .system("You work.")
        .model(model)
        .tool(noop)
        .build()
}

/// The child process: a durable run with a control socket, killed mid-run by
/// the parent test. Only runs when launched by that test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the child process of kill_and_resume_applies_pending_steering_exactly_once"]
async fn durable_child_process() {
    if std::env::var(ROLE).as_deref() != Ok("child") {
        return;
    }
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    let hub = SteeringHub::new(SteeringPolicy::default());
    let _server = serve_control_socket(hub.clone(), &dir.join("control.sock")).unwrap();
    let store: Arc<dyn AgentCheckpointer> = Arc::new(FileCheckpointer::new(dir.join("checkpoints")).unwrap());
    let _ = worker(HangingModel)
        .run_durable(&RunConfig::new().hooks(hub), "start", store)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_resume_applies_pending_steering_exactly_once() {
    let dir = std::env::temp_dir().join(format!("ta-durable-{}", RunId::new().short()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durable_child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "child")
        .env(DIR, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // libtest may print its own "test ... " prefix on the same line.
    let reader = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some((_, id)) = line.split_once("RUN ") {
                return Some(id.trim().parse::<RunId>().unwrap());
            }
        }
        None
    });
    let run_id = match tokio::time::timeout(std::time::Duration::from_secs(60), reader).await {
        Ok(Ok(Some(id))) => id,
        other => {
            child.kill().ok();
            panic!("the child never reached its second turn: {other:?}");
        }
    };

    // Steer the live child over its control socket, then kill it before it
    // can apply the command.
    let mut client = ControlClient::connect(&dir.join("control.sock")).await.unwrap();
    let resp = client
        .request(&ControlRequest::Steer {
            target: SteeringTarget::ParentRun { run_id },
            command: SteeringCommand::AddInstruction {
                text: "remember the milk".into(),
            },
            human: Some("alice".into()),
        })
        .await
        .unwrap();
    let ControlResponse::Accepted { ack } = resp else {
        panic!("{resp:?}")
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Resume in this process from the files the dead process left.
    let store: Arc<dyn AgentCheckpointer> = Arc::new(FileCheckpointer::new(dir.join("checkpoints")).unwrap());
    let model = Arc::new(ScriptedModel::new([
        ModelResponse::text("done").with_usage(Usage::call(1, 1))
    ]));
    let sink = CollectingSink::new();
    let hub = SteeringHub::new(SteeringPolicy::default());
    let config = RunConfig::new().hooks(hub).sink(sink.clone());
    let resumed = worker_shared(model.clone());
    let out = resumed.resume(&config, run_id, store.clone()).await.unwrap();

    assert_eq!(&*out.text, "done");
    assert_eq!(out.run.run_id, run_id, "same run, continued");
    // Only the interrupted step was redone: one model call in this process.
    assert_eq!(model.request_count(), 1);
    let req = &model.requests()[0];
    assert_eq!(req.turn, 1);
    let steering: Vec<&Message> = req
        .messages
        .iter()
        .filter(|m| matches!(m, Message::Steering { .. }))
        .collect();
    assert_eq!(steering.len(), 1, "applied exactly once");
    assert!(matches!(
        steering[0],
        Message::Steering { actor: Actor::Human { id }, content, correlation_id }
            if &**id == "alice" && &**content == "remember the milk" && *correlation_id == ack.correlation_id
    ));
    // Usage from before the crash is kept.
    assert_eq!(out.usage, Usage::call(5, 5) + Usage::call(1, 1));
    let applied = sink
        .events()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Steering { phase: tinyagents_core::SteeringPhase::Applied, info } if info.correlation_id == ack.correlation_id))
        .count();
    assert_eq!(applied, 1);

    // Resuming the finished run again applies nothing a second time.
    let again = resumed
        .resume(
            &RunConfig::new().hooks(SteeringHub::new(SteeringPolicy::default())),
            run_id,
            store,
        )
        .await
        .unwrap();
    assert_eq!(
        again
            .transcript
            .iter()
            .filter(|m| matches!(m, Message::Steering { .. }))
            .count(),
        1
    );
    assert_eq!(model.request_count(), 1, "a finished run makes no model call on resume");
    std::fs::remove_dir_all(&dir).ok();
}

fn worker_shared(model: Arc<ScriptedModel>) -> Agent {
    let noop = noop();
    Agent::builder("worker")
        .system("You work.")
        .shared_model(model)
        .tool(noop)
        .build()
}

#[tokio::test]
async fn a_checkpoint_is_saved_after_every_step_and_resumes_mid_run() {
    let store = Arc::new(MemoryCheckpointer::default());
    let model = ScriptedModel::new([
        ScriptedModel::call("noop", serde_json::json!({})).with_usage(Usage::call(2, 2)),
        ModelResponse::text("end"),
    ]);
    let sink = CollectingSink::new();
    let out = worker(model)
        .run_durable(&RunConfig::new().sink(sink.clone()), "go", store.clone())
        .await
        .unwrap();
    let (cp, _) = store.load(out.run.run_id).unwrap().unwrap();
    assert!(cp.run.is_done());
    assert_eq!(cp.seq, 3, "after the first model call, the tools and the final call");
    assert_eq!(cp.usage, out.usage);
}

#[test]
fn the_steering_log_merge_never_reapplies_and_never_loses() {
    let cmd = |text: &str| {
        tinyagents_core::SteeringRequest::new(
            Actor::Test,
            SteeringTarget::ParentRun { run_id: RunId::new() },
            SteeringCommand::AddInstruction { text: text.into() },
        )
    };
    let (a, b) = (cmd("a"), cmd("b"));
    // Crash after the run checkpoint recorded `a` applied, before the journal did.
    let checkpointed = SteeringLog {
        applied: vec![a.correlation_id.clone()],
        ..SteeringLog::default()
    };
    // The journal still has `a` pending and `b` accepted later.
    let journal = SteeringLog {
        pending: vec![a.clone(), b.clone()],
        ..SteeringLog::default()
    };
    let merged = SteeringLog::merge(&checkpointed, &journal);
    assert_eq!(merged.pending, vec![b]);
    assert_eq!(merged.applied, vec![a.correlation_id]);
}

#[tokio::test]
async fn corrupt_and_newer_checkpoints_are_refused_and_left_untouched() {
    let dir = std::env::temp_dir().join(format!("ta-cp-{}", RunId::new().short()));
    let store = FileCheckpointer::new(&dir).unwrap();
    let id = RunId::new();
    let path = dir.join(format!("{id}.run.json"));
    std::fs::write(&path, b"{\"format\": 99, \"whatever\": true}").unwrap();
    let err = store.load(id).unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::NewerFormat {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"{\"format\": 99, \"whatever\": true}");
    std::fs::write(&path, b"{\"format\": 1, \"seq\": ").unwrap();
    assert!(matches!(store.load(id).unwrap_err(), CheckpointError::Corrupt { .. }));
    let err = worker(ScriptedModel::new([]))
        .resume(&RunConfig::new(), id, Arc::new(store))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot resume run") && err.to_string().contains("corrupt"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
