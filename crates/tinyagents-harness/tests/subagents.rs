//! Sub-agents (seed 001): depth tracking, the agent-as-tool path, sessions,
//! nested events, one recursion cap, and deep nesting.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use tinyagents_core::{
    CollectingSink, EventKind, LimitKind, Message, ModelResponse, RunConfig, RunContext, RunError, RunLimits,
    ToolErrorKind, Usage,
};
use tinyagents_harness::{Agent, SUBAGENT_INPUT_FIELD, SubAgent, SubAgentSession};
use tinyagents_providers::ScriptedModel;

#[tokio::test]
async fn child_runs_one_level_deeper_with_its_own_run_id_and_the_same_root() {
    let sink = CollectingSink::new();
    let root = RunContext::root("parent", &RunConfig::new().sink(sink.clone()));
    let out = SubAgent::new(leaf("child", "hi"))
        .invoke_in_parent(&root, "x")
        .await
        .unwrap();
    assert_eq!(out.run.depth, 1);
    assert_eq!(out.run.parent_run_id, Some(root.run_id()));
    assert_eq!(out.run.root_run_id, root.run_id());
    assert_ne!(out.run.run_id, root.run_id());
    assert_eq!(out.run.path.to_string(), "parent/child");
}

#[tokio::test]
async fn depth_cap_refuses_before_any_model_call() {
    let model = Arc::new(ScriptedModel::cycle([ModelResponse::text("never")]));
    let child = Agent::builder("child").shared_model(model.clone()).build();
    let sink = CollectingSink::new();
    let root = RunContext::root(
        "root",
        &RunConfig::new()
            .limits(RunLimits::new().max_depth(0))
            .sink(sink.clone()),
    );
    let err = SubAgent::new(child).invoke(&root, "x").await.unwrap_err();
    match &err {
        RunError::SubAgentDepth { depth, max_depth, path } => {
            assert_eq!((*depth, *max_depth), (1, 0));
            assert_eq!(path.to_string(), "root/child");
        }
        other => panic!("expected SubAgentDepth, got {other:?}"),
    }
    assert_eq!(model.request_count(), 0, "the refused child must not call its model");
    let events = sink.events();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::SubAgentStarted { .. })),
        "a refused child never starts"
    );
    assert!(events.iter().any(|e| matches!(
        e.kind,
        EventKind::BudgetExceeded {
            limit: LimitKind::Depth
        }
    )));
}

/// Regression: in the reference crate a depth overflow on the agent-as-tool
/// path turned into a string while the run reported success.
#[tokio::test]
async fn depth_overflow_on_the_tool_path_reaches_the_model_and_the_run_result() {
    let child_model = Arc::new(ScriptedModel::cycle([ModelResponse::text("never")]));
    let child = Agent::builder("child").shared_model(child_model.clone()).build();
    let parent_model = Arc::new(delegating_model("child", "do it"));
    let parent = Agent::builder("parent")
        .shared_model(parent_model.clone())
        .subagent(SubAgent::new(child))
        .build();
    let out = parent
        .run_with(&RunConfig::new().limits(RunLimits::new().max_depth(0)), "go")
        .await
        .unwrap();

    assert_eq!(child_model.request_count(), 0);
    // The parent model was told, in a message it can act on.
    let second = &parent_model.requests()[1];
    let Some(Message::Tool { content, is_error, .. }) = second.messages.last() else {
        panic!("expected a tool result");
    };
    assert!(*is_error);
    assert!(content.contains("max_depth 0"), "{content}");
    assert!(content.contains("parent/child"), "{content}");
    // And the run result records the failure: never a silent success.
    assert!(!out.is_clean());
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].error.kind(), ToolErrorKind::ChildRun);
    let tinyagents_core::ToolError::ChildRun(inner) = &out.failures[0].error else {
        panic!()
    };
    assert!(matches!(**inner, RunError::SubAgentDepth { depth: 1, .. }));
}

/// Regression: the reference crate had four different recursion caps. Every
/// path (direct invoke, tool, session) refuses at the same depth, and one
/// setting moves them all.
#[tokio::test]
async fn one_recursion_cap_for_every_spawn_path() {
    for (cap, limits) in [
        (RunLimits::DEFAULT_MAX_DEPTH, RunLimits::new()),
        (3, RunLimits::new().max_depth(3)),
    ] {
        let root = RunContext::root("root", &RunConfig::new().limits(limits));
        // Walk down to depth `cap` through real child contexts.
        let mut ctx = root.clone();
        for i in 0..cap {
            ctx = ctx
                .spawn_child(
                    format!("l{i}"),
                    &RunLimits::new().max_depth(u32::MAX),
                    tinyagents_core::ChildEvents::Parent,
                )
                .unwrap();
        }
        assert_eq!(ctx.depth(), cap);
        let sub = SubAgent::new(leaf("too-deep", "x"));

        let direct = sub.invoke(&ctx, "x").await.unwrap_err();
        let mut session = SubAgentSession::new(sub.clone());
        let via_session = session.send_text(&ctx, "x").await.unwrap_err();
        let tool = sub.clone().into_tool();
        let tctx = tinyagents_core::ToolContext {
            run: ctx.clone(),
            call_id: "c".into(),
        };
        let via_tool = tool.call_json(tctx, r#"{"input":"x"}"#).await.unwrap_err();

        for e in [&direct, &via_session] {
            assert!(
                matches!(e, RunError::SubAgentDepth { depth, max_depth, .. } if *depth == cap + 1 && *max_depth == cap),
                "{e:?}"
            );
        }
        let tinyagents_core::ToolError::ChildRun(e) = via_tool else {
            panic!("tool path must surface the child error")
        };
        assert!(matches!(*e, RunError::SubAgentDepth { max_depth, .. } if max_depth == cap));
        // One level shallower succeeds on every path.
        let parent_of_ok = root.clone();
        assert!(sub.invoke(&parent_of_ok, "x").await.is_ok());
    }
}

#[tokio::test]
async fn child_cannot_raise_the_depth_cap_it_inherits() {
    let greedy = Agent::builder("greedy")
        .model(delegating_model("leaf", "x"))
        .subagent(SubAgent::new(leaf("leaf", "deep")))
        .limits(RunLimits::new().max_depth(1_000))
        .build();
    let root = RunContext::root("root", &RunConfig::new().limits(RunLimits::new().max_depth(1)));
    let out = SubAgent::new(greedy).invoke(&root, "x").await.unwrap();
    // greedy runs at depth 1 (allowed); its child would be depth 2 > 1.
    assert_eq!(out.failures.len(), 1);
}

#[tokio::test]
async fn subagent_tool_reads_its_input_from_the_documented_field() {
    assert_eq!(SUBAGENT_INPUT_FIELD, "input");
    let child_model = Arc::new(ScriptedModel::cycle([ModelResponse::text("ok")]));
    let child = Agent::builder("child")
        .description("Summarises things.")
        .shared_model(child_model.clone())
        .build();
    let tool = SubAgent::new(child).into_tool();
    let spec = tool.spec();
    assert_eq!(&*spec.name, "child");
    assert!(spec.description.contains("Summarises things."));
    assert_eq!(spec.parameters["properties"][SUBAGENT_INPUT_FIELD]["type"], "string");
    assert_eq!(spec.parameters["required"][0], SUBAGENT_INPUT_FIELD);

    let root = RunContext::root("root", &RunConfig::new());
    let tctx = tinyagents_core::ToolContext {
        run: root.clone(),
        call_id: "c1".into(),
    };
    let out = tool.call_json(tctx, r#"{"input":"summarise this"}"#).await.unwrap();
    assert_eq!(&*out, "ok");
    let seen = child_model.requests();
    assert_eq!(last_text(&seen[0]), "summarise this");
    // A wrong field name is an argument error, not an empty task.
    let tctx = tinyagents_core::ToolContext {
        run: root,
        call_id: "c2".into(),
    };
    let err = tool.call_json(tctx, r#"{"task":"x"}"#).await.unwrap_err();
    assert_eq!(err.kind(), ToolErrorKind::InvalidArguments);
}

#[tokio::test]
async fn session_keeps_the_transcript_and_emits_reused_on_later_sends() {
    let model = Arc::new(ScriptedModel::new([
        ModelResponse::text("Draft: cats are great."),
        ModelResponse::text("Revised: cats are great, and so are dogs."),
    ]));
    let writer = Agent::builder("writer")
        .system("You write.")
        .shared_model(model.clone())
        .build();
    let sink = CollectingSink::new();
    let root = RunContext::root("orchestrator", &RunConfig::new().sink(sink.clone()));
    let mut session = SubAgentSession::new(SubAgent::new(writer));

    let first = session.send_text(&root, "Write about cats.").await.unwrap();
    assert_eq!(&*first.text, "Draft: cats are great.");
    // ... a human reads the draft and replies out of band ...
    let second = session.send_text(&root, "Mention dogs too.").await.unwrap();
    assert_eq!(&*second.text, "Revised: cats are great, and so are dogs.");
    assert_ne!(first.run.run_id, second.run.run_id, "each send is its own child run");
    assert_eq!(session.sends(), 2);

    // The second request carried the whole first exchange.
    let req = &model.requests()[1];
    let texts: Vec<String> = req
        .messages
        .iter()
        .map(|m| format!("{}:{}", m.role(), m.text().unwrap_or("")))
        .collect();
    assert_eq!(
        texts,
        [
            "system:You write.",
            "user:Write about cats.",
            "assistant:Draft: cats are great.",
            "user:Mention dogs too."
        ]
    );
    // And it shares the first exchange's memory rather than copying it.
    assert!(first.transcript.is_shared_prefix_of(&req.messages));

    let reused: Vec<_> = sink
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::SubAgentReused {
                name,
                child_run_id,
                sends,
            } => Some((name, child_run_id, sends)),
            _ => None,
        })
        .collect();
    assert_eq!(reused.len(), 1, "only sends after the first are reuses");
    assert_eq!(&*reused[0].0, "writer");
    assert_eq!(reused[0].1, second.run.run_id);
    assert_eq!(reused[0].2, 2);
}

#[tokio::test]
async fn nested_events_arrive_on_the_parent_sink_with_ids_depth_and_order() {
    let grandchild = leaf("grandchild", "gc");
    let child = delegator("child", grandchild);
    let root_agent = delegator("root", child);
    let sink = CollectingSink::new();
    let out = root_agent
        .run_with(&RunConfig::new().sink(sink.clone()), "go")
        .await
        .unwrap();
    let events = sink.events();

    // A total order per root.
    for w in events.windows(2) {
        assert!(w[0].seq < w[1].seq, "seq must increase: {} then {}", w[0].seq, w[1].seq);
    }
    assert!(events.iter().all(|e| e.root_run_id == out.run.run_id));

    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RunStarted { name } => Some((name.to_string(), e.depth, e.run_id, e.parent_run_id)),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 3);
    assert_eq!((started[0].0.as_str(), started[0].1, started[0].3), ("root", 0, None));
    assert_eq!((started[1].0.as_str(), started[1].1), ("child", 1));
    assert_eq!(started[1].3, Some(started[0].2));
    assert_eq!((started[2].0.as_str(), started[2].1), ("grandchild", 2));
    assert_eq!(started[2].3, Some(started[1].2));

    // SubAgentStarted / Completed are emitted by the parent and name the child.
    let sub: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SubAgentStarted {
                name,
                child_run_id,
                child_depth,
            } => Some(("start", name.to_string(), e.run_id, *child_run_id, *child_depth)),
            EventKind::SubAgentCompleted {
                name,
                child_run_id,
                child_depth,
                ok,
                ..
            } => {
                assert!(ok);
                Some(("end", name.to_string(), e.run_id, *child_run_id, *child_depth))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        sub.iter().map(|s| (s.0, s.1.as_str(), s.4)).collect::<Vec<_>>(),
        [
            ("start", "child", 1),
            ("start", "grandchild", 2),
            ("end", "grandchild", 2),
            ("end", "child", 1)
        ]
    );
    assert_eq!(sub[0].2, started[0].2, "emitted by the root");
    assert_eq!(sub[0].3, started[1].2, "names the child's run id");
    assert_eq!(sub[1].2, started[1].2);

    // The exact lifecycle order of the whole tree.
    let kinds: Vec<(u32, &str)> = events.iter().map(|e| (e.depth, e.kind.name())).collect();
    assert_eq!(
        kinds,
        [
            (0, "run_started"),
            (0, "model_call_started"),
            (0, "model_call_completed"),
            (0, "tool_call_started"),
            (0, "sub_agent_started"),
            (1, "run_started"),
            (1, "model_call_started"),
            (1, "model_call_completed"),
            (1, "tool_call_started"),
            (1, "sub_agent_started"),
            (2, "run_started"),
            (2, "model_call_started"),
            (2, "model_call_completed"),
            (2, "run_completed"),
            (1, "sub_agent_completed"),
            (1, "tool_call_completed"),
            (1, "model_call_started"),
            (1, "model_call_completed"),
            (1, "run_completed"),
            (0, "sub_agent_completed"),
            (0, "tool_call_completed"),
            (0, "model_call_started"),
            (0, "model_call_completed"),
            (0, "run_completed"),
        ]
    );
}

#[tokio::test]
async fn invoke_with_events_sends_child_events_to_the_given_sink_only() {
    let parent_sink = CollectingSink::new();
    let child_sink = CollectingSink::new();
    let root = RunContext::root("root", &RunConfig::new().sink(parent_sink.clone()));
    SubAgent::new(leaf("child", "x"))
        .invoke_with_events(&root, "x", child_sink.clone())
        .await
        .unwrap();
    assert!(child_sink.events().iter().all(|e| e.depth == 1));
    assert!(
        child_sink
            .events()
            .iter()
            .any(|e| matches!(e.kind, EventKind::RunStarted { .. }))
    );
    let parent_kinds: Vec<_> = parent_sink.events().iter().map(|e| e.kind.name()).collect();
    assert_eq!(parent_kinds, ["sub_agent_started", "sub_agent_completed"]);

    // Plain invoke discards the child's own events.
    let quiet = CollectingSink::new();
    let root = RunContext::root("root", &RunConfig::new().sink(quiet.clone()));
    SubAgent::new(leaf("child", "x")).invoke(&root, "x").await.unwrap();
    assert_eq!(quiet.len(), 2);
}

/// A chain of `n` nested sub-agents: level i calls level i+1 as a tool.
fn chain(n: usize) -> Agent {
    let mut agent = Agent::builder(format!("L{n}"))
        .model(ScriptedModel::cycle([ModelResponse::text("bottom").with_usage(Usage::call(1, 1))]).without_recording())
        .build();
    for i in (0..n).rev() {
        let next = agent.name().to_string();
        let model = ScriptedModel::from_fn(move |req| {
            Ok(if after_tools(req) {
                ModelResponse::text(last_text(req)).with_usage(Usage::call(1, 1))
            } else {
                ScriptedModel::call(&next, serde_json::json!({"input": "deeper"})).with_usage(Usage::call(1, 1))
            })
        })
        .without_recording();
        agent = Agent::builder(format!("L{i}"))
            .model(model)
            .subagent(SubAgent::new(agent))
            .limits(RunLimits::new().max_depth(u32::MAX))
            .build();
    }
    agent
}

/// Regression: the reference crate overflowed the stack at ~80 levels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_nested_subagents_complete_without_stack_overflow() {
    const N: u32 = 10_000;
    let root = chain(N as usize);
    let out = root
        .run_with(&RunConfig::new().limits(RunLimits::new().max_depth(N)), "start")
        .await
        .unwrap();
    assert_eq!(&*out.text, "bottom");
    assert!(out.is_clean());
    // N levels make 2 calls each, the bottom one call; 2 tokens per call.
    assert_eq!(out.total_usage.requests, 2 * u64::from(N) + 1);
    assert_eq!(out.total_usage.total_tokens(), 2 * (2 * u64::from(N) + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_a_deep_chain_fails_with_a_typed_error_at_the_bottom() {
    const N: u32 = 10_000;
    let root = chain(N as usize);
    let out = root
        .run_with(&RunConfig::new().limits(RunLimits::new().max_depth(N - 1)), "start")
        .await
        .unwrap();
    // The bottom agent could not be spawned; its parent recorded it, the tree says so.
    assert!(!out.is_clean());
    assert_eq!(out.descendant_failures, 1);
    assert!(out.text.contains("max_depth 9999"), "{}", out.text);
}

#[test]
fn dropping_a_ten_thousand_deep_agent_definition_does_not_recurse() {
    let c = chain(10_000);
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || drop(c))
        .unwrap()
        .join()
        .unwrap();
}
