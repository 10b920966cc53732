//! Provider overhead: parsing a 1 MB streamed reply (SSE → JSON chunks →
//! reassembled reply with deltas), OpenAI and Anthropic formats.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

/// An OpenAI-format stream of about `bytes` bytes; returns (body, events).
fn openai_stream(bytes: usize) -> (String, u64) {
    let mut out = String::with_capacity(bytes + 1024);
    let mut n = 0u64;
    while out.len() < bytes {
        let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test",
            "choices": [{"index": 0, "delta": {"content": "token "}, "finish_reason": null}]});
        out.push_str("data: ");
        out.push_str(&chunk.to_string());
        out.push_str("\n\n");
        n += 1;
    }
    out.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    (out, n + 2)
}

fn anthropic_stream(bytes: usize) -> (String, u64) {
    let mut out = String::with_capacity(bytes + 1024);
    out.push_str(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10}}}\n\n",
    );
    out.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    let mut n = 2u64;
    while out.len() < bytes {
        out.push_str("event: content_block_delta\ndata: ");
        out.push_str(
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "token "}})
                .to_string(),
        );
        out.push_str("\n\n");
        n += 1;
    }
    out.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    (out, n + 1)
}

/// Splits a body into 4 KiB network-sized chunks.
fn chunks(body: &str) -> Vec<Result<bytes::Bytes, std::convert::Infallible>> {
    body.as_bytes()
        .chunks(4096)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut g = c.benchmark_group("parse_1mb_stream");
    g.sample_size(20);
    let (body, events) = openai_stream(1 << 20);
    eprintln!("openai: {} bytes, {events} events", body.len());
    g.throughput(Throughput::Elements(events));
    g.bench_function("openai_chat_completions", |b| {
        b.iter(|| {
            let stream = futures::stream::iter(chunks(&body));
            let reply = rt
                .block_on(tinyagents_providers::openai::decode_stream(stream, &|_| {}))
                .unwrap();
            assert!(reply.content.is_some());
        })
    });
    let (body, events) = anthropic_stream(1 << 20);
    eprintln!("anthropic: {} bytes, {events} events", body.len());
    g.throughput(Throughput::Elements(events));
    g.bench_function("anthropic_messages", |b| {
        b.iter(|| {
            let stream = futures::stream::iter(chunks(&body));
            let reply = rt
                .block_on(tinyagents_providers::anthropic::decode_stream(stream, &|_| {}))
                .unwrap();
            assert!(reply.content.is_some());
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
