#!/usr/bin/env bash
# The test command of the README: every test of the workspace, examples built.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
cargo test --workspace --doc
