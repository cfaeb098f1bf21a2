#!/usr/bin/env bash
# Starts the assistant from the environment install.sh made; arguments pass through.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -x "$ROOT/.venv/bin/hybrid-llm" ]; then
    echo "error: not installed yet: run ./install.sh first" >&2
    exit 1
fi
exec "$ROOT/.venv/bin/hybrid-llm" "$@"
