//! The embedded model (feature `local`). Tests that need the model file
//! skip, saying why, only when it is absent (`tinyagents model pull` or
//! `TINYAGENTS_MODEL`); the bad-input tests run always.
#![cfg(feature = "local")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use common::{Deltas, request, tool};
use serde_json::{Value, json};
use tinyagents_core::{Message, Model, ModelError, ToolChoice};
use tinyagents_providers::local::{LocalConfig, LocalError, LocalModel, known_model_file};
use tinyagents_providers::pull;

fn model_path() -> Option<PathBuf> {
    match pull::resolve_model_path(None) {
        Ok(r) if r.path.is_file() => Some(r.path),
        Ok(r) => {
            eprintln!(
                "SKIPPED: no model file at {} (run `{}` or set {})",
                r.path.display(),
                pull::PULL_COMMAND,
                pull::MODEL_ENV
            );
            None
        }
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

/// One loaded model shared by the tests of this binary.
fn model() -> Option<LocalModel> {
    static MODEL: OnceLock<Option<LocalModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = model_path()?;
            Some(LocalModel::load_blocking(LocalConfig::new(path).threads(1)).unwrap())
        })
        .clone()
}

fn plan_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "goal": {"type": "string", "maxLength": 120},
            "steps": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string", "maxLength": 80}},
            "urgent": {"type": "boolean"},
        },
        "required": ["goal", "steps", "urgent"],
        "additionalProperties": false,
    })
}

#[tokio::test]
async fn constrained_generation_for_a_schema_returns_valid_json() {
    let Some(m) = model() else { return };
    let mut req = request([
        Message::system("You plan small tasks."),
        Message::user("Plan how to water the garden."),
    ]);
    req.response_format = Some(Arc::new(plan_schema()));
    let reply = m.complete(&req).await.unwrap();
    let text = reply.content.expect("a JSON reply");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert!(v["goal"].is_string(), "{v}");
    let steps = v["steps"].as_array().unwrap();
    assert!(
        (1..=3).contains(&steps.len()) && steps.iter().all(Value::is_string),
        "{v}"
    );
    assert!(v["urgent"].is_boolean(), "{v}");
    assert_eq!(v.as_object().unwrap().len(), 3, "no extra keys: {v}");
    assert!(reply.usage.input_tokens > 0 && reply.usage.output_tokens > 0);
}

#[tokio::test]
async fn structured_output_cut_at_its_cap_is_an_error_that_counts_the_spent_tokens() {
    let Some(m) = model() else { return };
    let mut req = request([Message::user("Plan how to water the garden.")]);
    req.response_format = Some(Arc::new(plan_schema()));
    req.max_output_tokens = Some(4);
    let err = m.complete(&req).await.unwrap_err();
    assert!(matches!(err, ModelError::OutputCapReached { .. }), "{err:?}");
    assert!(err.to_string().contains("output cap of 4 tokens"), "{err}");
    let spent = err.spent().expect("the spent tokens");
    assert_eq!(spent.output_tokens, 4);
    assert!(spent.input_tokens > 0);
    assert_eq!(spent.requests, 1);
}

#[tokio::test]
async fn a_forced_tool_call_is_decoded_under_the_grammar_and_parsed() {
    let Some(m) = model() else { return };
    let mut req = request([Message::user("What is the weather in Paris?")]);
    req.tools = Arc::from([tool("weather"), tool("news")]);
    req.tool_choice = ToolChoice::Tool("weather".into());
    let prompt = m.render_prompt(&req).unwrap();
    assert!(prompt.ends_with("<tool_call>"), "{prompt}");
    let reply = m.complete(&req).await.unwrap();
    assert_eq!(reply.tool_calls.len(), 1, "{reply:?}");
    let call = &reply.tool_calls[0];
    assert_eq!(&*call.name, "weather");
    let args: Value = serde_json::from_str(&call.arguments).unwrap();
    assert!(args["city"].is_string(), "{args}");

    req.tool_choice = ToolChoice::Required;
    let reply = m.complete(&req).await.unwrap();
    assert!(matches!(&*reply.tool_calls[0].name, "weather" | "news"), "{reply:?}");
}

#[tokio::test]
async fn each_generated_token_is_fed_to_the_grammar_exactly_once() {
    // Regression guard for the double-accept trap: accepting a token after
    // `sample()` feeds it twice, which derails the grammar (and aborts in C).
    let Some(m) = model() else { return };
    let req = request([Message::user("Plan how to bake bread.")]);
    let prompt = m.render_prompt(&req).unwrap();
    let mut streamed = String::new();
    let g = m
        .generate_blocking(&prompt, Some(&plan_schema()), 256, &mut |t| streamed.push_str(t))
        .unwrap();
    assert!(g.grammar_complete);
    assert_eq!(g.grammar_tokens, g.generated_tokens);
    assert_eq!(streamed, g.text);
    serde_json::from_str::<Value>(&g.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", g.text));
}

#[tokio::test]
async fn streaming_reports_the_reply_token_by_token() {
    let Some(m) = model() else { return };
    let mut req = request([Message::user("Say hello.")]);
    req.max_output_tokens = Some(24);
    let deltas = Deltas::default();
    let d = deltas.clone();
    let reply = m.complete_streaming(&req, &move |x| d.push(x)).await.unwrap();
    assert!(deltas.all().len() > 1, "several deltas");
    assert_eq!(deltas.text().trim(), reply.content.as_deref().unwrap_or(""));
    assert!(reply.usage.output_tokens <= 24);
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_window_is_a_context_length_error() {
    let Some(path) = model_path() else { return };
    let m = LocalModel::load(LocalConfig::new(path).context_size(128))
        .await
        .unwrap();
    let req = request([Message::user("tide pools ".repeat(200))]);
    let err = m.complete(&req).await.unwrap_err();
    assert!(matches!(err, ModelError::ContextLength { .. }), "{err:?}");
    assert!(err.to_string().contains("context window"), "{err}");
}

#[tokio::test]
async fn a_truncated_gguf_is_refused_with_a_clear_error() {
    let Some(path) = model_path() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let err = LocalModel::load(LocalConfig::new(&cut)).await.unwrap_err();
    assert_eq!(err, LocalError::Load(cut));
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_gguf_or_missing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("model.gguf");
    std::fs::write(&text, "this is not a model").unwrap();
    let err = LocalModel::load(LocalConfig::new(&text)).await.unwrap_err();
    assert_eq!(err, LocalError::NotGguf(text));
    let err = LocalModel::load(LocalConfig::new(dir.path().join("missing.gguf")))
        .await
        .unwrap_err();
    assert!(matches!(err, LocalError::Open { .. }), "{err:?}");
}

#[test]
fn an_unknown_model_id_lists_the_known_ones() {
    assert_eq!(known_model_file("smollm2").unwrap(), pull::DEFAULT_MODEL_FILE);
    let err = known_model_file("gpt-5-local").unwrap_err();
    assert!(err.to_string().contains("smollm2-135m-instruct"), "{err}");
}

#[tokio::test]
async fn an_agent_on_the_local_model_streams_its_tokens_as_run_events() {
    use tinyagents_core::{CollectingSink, EventKind, RunConfig};
    let Some(m) = model() else { return };
    let agent = tinyagents_harness::Agent::builder("planner")
        .system("You plan small tasks.")
        .model(m)
        .response_format(plan_schema())
        .build();
    let sink = CollectingSink::new();
    let out = agent
        .run_with(&RunConfig::new().sink(sink.clone()), "Plan a picnic.")
        .await
        .unwrap();
    serde_json::from_str::<Value>(&out.text).unwrap();
    let deltas = sink
        .events()
        .iter()
        .filter(|e| e.run_id == out.run.run_id && matches!(e.kind, EventKind::ModelDelta { .. }))
        .count();
    assert!(deltas > 1, "tokens arrived as events");
}
