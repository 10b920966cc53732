#!/usr/bin/env bash
# Integration test of the OpenAI-compatible provider against a server no one
# here wrote: llama.cpp's server from the PyPI package
# llama-cpp-python[server]==0.3.36 (its build takes ~6 min on 2 cores),
# serving the default SmolLM2 GGUF on 127.0.0.1. Runs the `llama_server_*`
# tests of crates/tinyagents-providers/tests/openai.rs: a chat call, a
# streamed call and a forced tool call whose result goes back to the server.
# Needs python3 with venv/pip, cmake and a C++ compiler. Stops its server on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${LLAMA_SERVER_VENV:-target/llama-server-venv}"
PORT="${LLAMA_SERVER_PORT:-18765}"
LOG="target/llama-server.log"
mkdir -p target

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
    echo "== installing llama-cpp-python[server]==0.3.36 into $VENV (compiles llama.cpp: several minutes)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check 'llama-cpp-python[server]==0.3.36'
fi

echo "== model"
MODEL="${TINYAGENTS_MODEL:-$(cargo run -q -p tinyagents-providers --example model_pull)}"
echo "$MODEL"

echo "== starting the server on 127.0.0.1:$PORT (log: $LOG)"
"$VENV/bin/python" -m llama_cpp.server --model "$MODEL" --model_alias smollm2 \
    --host 127.0.0.1 --port "$PORT" --n_ctx 2048 --n_threads 1 >"$LOG" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT

for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "the server exited; its log:" >&2
        cat "$LOG" >&2
        exit 1
    fi
    sleep 1
done

echo "== tests"
TINYAGENTS_LLAMA_SERVER="http://127.0.0.1:$PORT/v1" \
    cargo test -p tinyagents-providers --test openai -- --ignored --nocapture --test-threads 1 llama_server
