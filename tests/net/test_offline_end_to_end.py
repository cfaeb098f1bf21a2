"""The whole assistant offline, end to end: `hybrid-llm ask` indexes a real codebase, retrieves
from it and generates with the real default model, with the guard in strict mode (loopback
refused too, from the config) and nothing else changed.

The witness: every proxy variable that HTTP libraries honour (httpx, requests, urllib,
huggingface_hub) points at the counting listener, so any library that tried to go online would
knock there first; the listener must count nothing, and the guard must not have had to refuse
anything (it logs every refusal), i.e. the assistant does not even try.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid_llm.net.listener import CountingListener

PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)

DURATION_MODULE = '''"""Parsing of human-written durations."""

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in a duration such as "90s", "15m" or "2h"."""
    value, unit = text[:-1], text[-1]
    if unit not in UNITS:
        raise ValueError(f"unknown unit in {text!r}")
    return int(value) * UNITS[unit]
'''

SCHEDULER_MODULE = '''"""Runs jobs at fixed intervals."""

import time


def run_every(seconds: int, job) -> None:
    while True:
        job()
        time.sleep(seconds)
'''


@pytest.mark.slow
def test_ask_indexes_retrieves_and_generates_with_nothing_leaving(
    tmp_path: Path, listener: CountingListener, default_model_file: Path
) -> None:
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "app" / "durations.py").write_text(DURATION_MODULE)
    (repo / "app" / "scheduler.py").write_text(SCHEDULER_MODULE)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "network": {"offline_mode": True, "allow_loopback": False},
        "generation": {"max_tokens": 48, "temperature": 0},
        "model": {"n_ctx": 2048},
    }))  # fmt: skip
    proxy = f"http://127.0.0.1:{listener.ports['urllib']}"
    env = {**os.environ, "HYBRID_LLM_CONFIG": str(config), **dict.fromkeys(PROXY_VARIABLES, proxy)}
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    before = listener.counts()

    run = subprocess.run(
        [sys.executable, "-m", "hybrid_llm", "ask", "--repo", str(repo), "--json",
         "Write run_hourly(job) that uses parse_duration('1h') and run_every."],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip

    assert run.returncode == 0, run.stderr[-3000:]
    answer = json.loads(run.stdout)
    assert answer["answer"].strip()
    assert {"app/durations.py", "app/scheduler.py"} & {s["path"] for s in answer["sources"]}
    assert listener.counts() == before, "something reached the listener while offline"
    assert "offline mode refused" not in run.stderr, run.stderr[-3000:]
