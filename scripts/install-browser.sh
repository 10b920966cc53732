#!/usr/bin/env bash
# Installs Debian's headless browser stack for the web debugger's browser
# tests (crates/tinyagents-ui/tests/browser.rs): `chromium` and
# `chromium-driver`. Does nothing when both are already there.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium and chromedriver are installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: install chromium and chromedriver yourself; the browser tests skip without them" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "not root and no sudo: cannot install chromium; the browser tests will skip" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver
chromium --version || true
chromedriver --version || true
