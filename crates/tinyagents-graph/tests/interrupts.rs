//! Item 6: interrupts in nodes, in sub-agents two levels down and in
//! subgraphs; resume delivers the value to exactly the paused task and
//! re-runs nothing else; static interrupt-before/after.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tinyagents_core::{Message, ModelRequest, ModelResponse, tool_fn_with_context};
use tinyagents_graph::{
    END, GraphBuilder, MemoryCheckpointer, NodeContext, NodeError, Reducer, Resume, RunOptions, START, Send,
    SubAgentNode, SubgraphNode, Update, interrupt,
};
use tinyagents_harness::{Agent, SubAgent};
use tinyagents_providers::ScriptedModel;

fn opts() -> RunOptions {
    RunOptions::new()
        .checkpointer(Arc::new(MemoryCheckpointer::new()))
        .thread("t")
}

#[tokio::test]
async fn a_node_interrupt_pauses_only_its_task_and_resume_delivers_the_value() {
    let runs = Arc::new(Mutex::new(HashMap::<u64, usize>::new()));
    let r2 = runs.clone();
    let g = GraphBuilder::new("approve")
        .channel("out", Reducer::Append)
        .node("work", move |x: u64, ctx: NodeContext| {
            let runs = r2.clone();
            async move {
                *runs.lock().unwrap().entry(x).or_default() += 1;
                if x == 1 {
                    let answer = ctx.interrupt(json!({"question": "approve task 1?"}))?;
                    return Ok::<_, NodeError>(
                        Update::new().set("out", format!("1 {}", answer.as_str().unwrap_or(""))),
                    );
                }
                Ok(Update::new().set("out", x.to_string()))
            }
        })
        .conditional_edge(START, &["work"], |_: Value| {
            (0..3u64).map(|i| Send::new("work", i)).collect::<Vec<_>>()
        })
        .compile()
        .unwrap();
    let opts = opts();
    let out = g.invoke(json!({}), &opts).await.unwrap();
    assert!(out.is_interrupted());
    assert_eq!(out.interrupts.len(), 1);
    let int = &out.interrupts[0];
    assert_eq!(int.value, json!({"question": "approve task 1?"}));
    assert_eq!((int.node.as_str(), int.task_id.index), ("work", 1));
    let out = g.resume(Resume::to(int.id.clone(), "yes"), &opts).await.unwrap();
    assert!(!out.is_interrupted());
    assert_eq!(out.get("out"), Some(&json!(["0", "1 yes", "2"])));
    let runs = runs.lock().unwrap();
    assert_eq!(
        (runs[&0], runs[&1], runs[&2]),
        (1, 2, 1),
        "only the paused task ran again"
    );
}

#[tokio::test]
async fn an_interrupt_inside_a_subagent_two_levels_down_resumes_only_that_subagent() {
    // worker (level 1, a SubAgentNode) -> helper (level 2, a sub-agent tool)
    // -> tool `ask_human` -> interrupt.
    let calls: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let ask = tool_fn_with_context("ask_human", "ask a human", |ctx, args: Value| async move {
        let answer = interrupt(&ctx, json!({"ask": args["q"]})).await?;
        Ok::<_, tinyagents_core::ToolError>(answer)
    });
    let c_helper = calls.clone();
    let helper_model = ScriptedModel::from_fn(move |req: &ModelRequest| {
        let last = req.messages.last().cloned();
        c_helper.lock().unwrap().push(format!(
            "helper:{}",
            req.messages
                .iter()
                .find_map(|m| match m {
                    Message::User { content } => Some(content.to_string()),
                    _ => None,
                })
                .unwrap_or_default()
        ));
        match last {
            Some(Message::User { content }) => Ok(ScriptedModel::call("ask_human", json!({"q": content.to_string()}))),
            Some(m) => Ok(ModelResponse::text(format!("human said {}", m.text().unwrap_or("")))),
            None => Ok(ModelResponse::text("")),
        }
    });
    let helper = Agent::builder("helper").model(helper_model).tool(ask).build();
    let c_worker = calls.clone();
    let worker_model = ScriptedModel::from_fn(move |req: &ModelRequest| {
        let job = req
            .messages
            .iter()
            .find_map(|m| match m {
                Message::User { content } => Some(content.to_string()),
                _ => None,
            })
            .unwrap_or_default();
        c_worker.lock().unwrap().push(format!("worker:{job}"));
        match req.messages.last() {
            Some(Message::User { content }) if &**content == "job-1" => {
                Ok(ScriptedModel::call("helper", json!({"input": "may I?"})))
            }
            Some(Message::User { content }) => Ok(ModelResponse::text(format!("{content} done"))),
            Some(m) => Ok(ModelResponse::text(format!("job-1 done, {}", m.text().unwrap_or("")))),
            None => Ok(ModelResponse::text("")),
        }
    });
    let worker = Agent::builder("worker")
        .model(worker_model)
        .subagent(SubAgent::new(helper))
        .build();
    let g = GraphBuilder::new("team")
        .channel("results", Reducer::Append)
        .subagent_node(
            "worker",
            SubAgentNode::new(worker).output(|o, _| Ok(Update::new().set("results", &*o.text))),
        )
        .conditional_edge(START, &["worker"], |_: Value| {
            (0..3)
                .map(|i| Send::new("worker", format!("job-{i}")))
                .collect::<Vec<_>>()
        })
        .compile()
        .unwrap();
    let opts = opts();
    let out = g.invoke(json!({}), &opts).await.unwrap();
    assert!(out.is_interrupted());
    assert_eq!(out.interrupts.len(), 1);
    let int = out.interrupts[0].clone();
    assert_eq!(int.value, json!({"ask": "may I?"}));
    assert_eq!(int.depth, 2, "raised by the helper's run, two levels below the graph");
    assert_eq!(int.task_id.index, 1);
    let before: Vec<String> = calls.lock().unwrap().clone();
    assert_eq!(before.iter().filter(|c| c.starts_with("worker:job-0")).count(), 1);
    assert_eq!(before.iter().filter(|c| c.starts_with("worker:job-2")).count(), 1);
    calls.lock().unwrap().clear();
    let out = g.resume(Resume::value("yes"), &opts).await.unwrap();
    assert!(!out.is_interrupted(), "{:?}", out.interrupts);
    let after: Vec<String> = calls.lock().unwrap().clone();
    assert!(
        after.iter().all(|c| c == "worker:job-1" || c == "helper:may I?"),
        "only job-1's agents ran: {after:?}"
    );
    assert_eq!(
        out.get("results"),
        Some(&json!(["job-0 done", "job-1 done, human said yes", "job-2 done"]))
    );
}

#[tokio::test]
async fn an_interrupt_in_a_nested_subgraph_resumes_only_the_paused_inner_task() {
    let inner_runs = Arc::new(AtomicUsize::new(0));
    let sibling_runs = Arc::new(AtomicUsize::new(0));
    let (i2, s2) = (inner_runs.clone(), sibling_runs.clone());
    let inner = GraphBuilder::new("inner")
        .channel("log", Reducer::Append)
        .node("ask", move |_: Value, ctx: NodeContext| {
            let runs = i2.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let v = ctx.interrupt("inner question")?;
                Ok::<_, NodeError>(Update::new().set("log", format!("inner got {}", v.as_str().unwrap_or(""))))
            }
        })
        .edge(START, "ask")
        .compile()
        .unwrap();
    let middle = GraphBuilder::new("middle")
        .channel("log", Reducer::Append)
        .subgraph_node("inner", SubgraphNode::new(inner))
        .edge(START, "inner")
        .compile()
        .unwrap();
    let outer = GraphBuilder::new("outer")
        .channel("log", Reducer::Append)
        .subgraph_node("middle", SubgraphNode::new(middle))
        .node("sibling", move |_: Value, _: NodeContext| {
            let runs = s2.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, NodeError>(Update::new().set("log", "sibling"))
            }
        })
        .edge(START, "middle")
        .edge(START, "sibling")
        .edge("middle", END)
        .compile()
        .unwrap();
    let opts = opts();
    let out = outer.invoke(json!({}), &opts).await.unwrap();
    assert!(out.is_interrupted());
    let int = &out.interrupts[0];
    assert_eq!(int.value, json!("inner question"));
    assert!(
        int.namespace.starts_with("middle:") && int.namespace.contains("|inner:"),
        "{}",
        int.namespace
    );
    let out = outer.resume(Resume::value("go"), &opts).await.unwrap();
    assert_eq!(out.get("log"), Some(&json!(["inner got go", "sibling"])));
    assert_eq!(inner_runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        sibling_runs.load(Ordering::SeqCst),
        1,
        "the finished sibling was not re-run"
    );
}

#[tokio::test]
async fn static_interrupt_before_and_after_pause_around_a_node() {
    let g = GraphBuilder::new("review")
        .channel("log", Reducer::Append)
        .node("draft", |_: Value, _: NodeContext| async {
            Ok::<_, NodeError>(Update::new().set("log", "draft"))
        })
        .node("publish", |_: Value, _: NodeContext| async {
            Ok::<_, NodeError>(Update::new().set("log", "publish"))
        })
        .node("notify", |_: Value, _: NodeContext| async {
            Ok::<_, NodeError>(Update::new().set("log", "notify"))
        })
        .edge(START, "draft")
        .edge("draft", "publish")
        .edge("publish", "notify")
        .interrupt_before(&["publish"])
        .interrupt_after(&["publish"])
        .compile()
        .unwrap();
    let opts = opts();
    let out = g.invoke(json!({}), &opts).await.unwrap();
    assert!(out.is_interrupted());
    assert_eq!(out.get("log"), Some(&json!(["draft"])));
    assert_eq!(out.interrupts[0].value, json!({"interrupt_before": "publish"}));
    let out = g.resume(Resume::none(), &opts).await.unwrap();
    assert!(out.is_interrupted());
    assert_eq!(out.get("log"), Some(&json!(["draft", "publish"])));
    assert_eq!(out.interrupts[0].value, json!({"interrupt_after": "publish"}));
    let out = g.resume(Resume::none(), &opts).await.unwrap();
    assert!(!out.is_interrupted());
    assert_eq!(out.get("log"), Some(&json!(["draft", "publish", "notify"])));
}
