//! The embedded model (feature `local`): load time, prompt and generation
//! speed, the cost of grammar-constrained decoding per token, peak RSS.
//!
//! Needs the model file (`tinyagents model pull`, or `TINYAGENTS_MODEL`);
//! without it the benchmark prints why and measures nothing. Thread count:
//! `TINYAGENTS_THREADS` (default 2 here, to compare with the figures).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tinyagents_providers::local::{Generation, LocalConfig, LocalModel};
use tinyagents_providers::pull;

fn threads() -> u32 {
    std::env::var("TINYAGENTS_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2)
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn plan_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "goal": {"type": "string", "maxLength": 80},
            "agents": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": 30}, "task": {"type": "string", "maxLength": 80}},
                "required": ["name", "task"], "additionalProperties": false,
            }},
        },
        "required": ["goal", "agents"], "additionalProperties": false,
    })
}

fn prompt(model: &LocalModel, task: &str) -> String {
    use tinyagents_core::{Message, ModelRequest, RunId, ToolChoice};
    let req = ModelRequest {
        agent: "bench".into(),
        run_id: RunId::new(),
        depth: 0,
        turn: 0,
        messages: [
            Message::system("You plan work for a team of helpers. Answer with a JSON plan."),
            Message::user(task),
        ]
        .into_iter()
        .collect(),
        tools: std::sync::Arc::from([]),
        tool_choice: ToolChoice::Auto,
        response_format: None,
        max_output_tokens: None,
    };
    model.render_prompt(&req).unwrap()
}

fn summarize(label: &str, runs: &[Generation]) {
    let gen_tokens: u32 = runs.iter().map(|g| g.generated_tokens).sum();
    let gen_time: Duration = runs.iter().map(|g| g.gen_time).sum();
    let prompt_tokens: u32 = runs.iter().map(|g| g.prompt_tokens).sum();
    let prompt_time: Duration = runs.iter().map(|g| g.prompt_time).sum();
    eprintln!(
        "{label}: prompt {:.0} tok/s ({prompt_tokens} tokens), generation {:.1} tok/s ({gen_tokens} tokens, {:.2} ms/token)",
        f64::from(prompt_tokens) / prompt_time.as_secs_f64(),
        f64::from(gen_tokens) / gen_time.as_secs_f64(),
        gen_time.as_secs_f64() * 1000.0 / f64::from(gen_tokens.max(1)),
    );
}

fn bench(c: &mut Criterion) {
    let path = match pull::resolve_model_path(None) {
        Ok(r) if r.path.is_file() => r.path,
        _ => {
            eprintln!("local benchmark skipped: no model file (run `tinyagents model pull` or set TINYAGENTS_MODEL)");
            return;
        }
    };
    // No repeat penalty: free and constrained decoding then differ only by
    // the grammar.
    let config = LocalConfig::new(&path).threads(threads()).repeat_penalty(1.0);
    let mut g = c.benchmark_group("local");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("load", |b| {
        b.iter(|| LocalModel::load_blocking(config.clone()).unwrap())
    });

    let model = LocalModel::load_blocking(config.clone()).unwrap();
    let long_task = "Write a short report on the history of the Rust programming language, its ownership model, \
        its package manager, and its community. "
        .repeat(6);
    let p = prompt(&model, &long_task);
    let n_prompt = model.count_tokens(&p) as u64;
    g.throughput(Throughput::Elements(n_prompt));
    g.bench_function("prompt_eval", |b| {
        b.iter(|| model.generate_blocking(&p, None, 1, &mut |_| {}).unwrap())
    });

    g.finish();

    // Generation is measured by hand: a run takes seconds, and a schema-
    // constrained run stops where the JSON ends, so tokens/s and ms/token
    // from the runs' own timings are the figures that compare.
    let p = prompt(&model, "Plan a team that writes a blog post about tide pools.");
    let schema = plan_schema();
    // Interleaved, so load from other work falls on both alike; the free
    // run may generate as many tokens as the constrained one did (a token's
    // cost grows with its position, so equal lengths compare fairly).
    let runs = 5;
    let mut free = Vec::new();
    let mut constrained = Vec::new();
    for _ in 0..runs {
        let mut cap = 64;
        if let Ok(g) = model.generate_blocking(&p, Some(&schema), 400, &mut |_| {}) {
            cap = g.generated_tokens;
            constrained.push(g);
        }
        free.push(model.generate_blocking(&p, None, cap, &mut |_| {}).unwrap());
    }
    eprintln!(
        "constrained runs that completed their JSON: {}/{runs}",
        constrained.len()
    );
    summarize("free", &free);
    summarize("constrained", &constrained);
    let per_token = |runs: &[Generation]| {
        let t: Duration = runs.iter().map(|g| g.gen_time).sum();
        let n: u32 = runs.iter().map(|g| g.generated_tokens).sum();
        t.as_secs_f64() / f64::from(n.max(1))
    };
    let overhead = per_token(&constrained) / per_token(&free) - 1.0;
    eprintln!(
        "constrained decoding overhead: {:+.1}% per token; peak RSS {:.0} MB; threads {}",
        overhead * 100.0,
        peak_rss_mb().unwrap_or(f64::NAN),
        threads()
    );
    if let Some(last) = constrained.last() {
        let valid = serde_json::from_str::<serde_json::Value>(&last.text).is_ok();
        eprintln!("constrained output valid JSON: {valid}: {}", last.text);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
