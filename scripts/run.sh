#!/usr/bin/env bash
# The README's main job: build the `tinyagents` CLI and run it on its embedded
# default (no API key, no network). Arguments go to `tinyagents run`, e.g.
#   ./scripts/run.sh "Why is Rust a good fit for agent runtimes?"
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required: install Rust from https://rustup.rs" >&2
    exit 1
fi
exec cargo run --quiet --release -p tinyagents-cli -- run "$@"
