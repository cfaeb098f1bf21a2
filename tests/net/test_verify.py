"""`hybrid-llm verify-offline` (hybrid_llm/net/verify.py) as users run it: a real subprocess, a
real counting listener, every probe, a real web broker. With no flags it measures the default
mode: on Linux every path is blocked and the command exits 0, while the positive control (no
guard, no sandbox) reaches the listener on every path. With `network.sandbox: "off"` native code
leaks and the command says so with exit status 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid_llm.net import probes, sandbox

NATIVE = {p.name for p in probes.PROBES if p.native and p.available()}
PYTHON = {p.name for p in probes.PROBES if not p.native}


def hybrid_llm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hybrid_llm", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


@pytest.mark.skipif(bool(sandbox.unavailable_reason()), reason=str(sandbox.unavailable_reason()))
def test_the_default_mode_blocks_every_path_and_the_broker_refuses() -> None:
    run = hybrid_llm("verify-offline", "--json")
    report = json.loads(run.stdout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert report["offline"] is True and report["sandbox"] in ("namespace", "seccomp")
    paths = {p["path"]: p for p in report["paths"]}
    assert set(paths) == PYTHON | NATIVE
    for name, path in paths.items():
        assert path["verdict"] == "blocked" and path["stopped_by"], (name, path)
        assert path["control"]["reached"], f"{name}: the positive control must reach the listener"
    for name in NATIVE:
        assert paths[name]["layer2"]["reached"], f"{name}: layer 2 alone was expected to leak"
    checks = {c["check"]: c for c in report["broker"]}
    assert all(c["passed"] for c in checks.values()), checks
    assert {"loopback URL", "private address (10.0.0.1)", "file:// URL", "fetch while offline"} <= set(checks)
    assert checks["positive control: server named in the config"]["expect"] == "reached"


def test_without_the_sandbox_native_code_is_reported_as_leaking(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"network": {"sandbox": "off"}}))
    run = hybrid_llm("verify-offline", env={**os.environ, "HYBRID_LLM_CONFIG": str(config)})
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[:2] == ["egress", "path"]
    assert "default mode (guard only)" in lines[0]
    rows = {name: line for line in lines for name in PYTHON | NATIVE if line.startswith(name + " ")}
    assert set(rows) == PYTHON | NATIVE
    for name in PYTHON:
        assert not rows[name].endswith("LEAKED"), rows[name]
    for name in NATIVE:
        assert rows[name].split("  ")[-1] == "LEAKED", rows[name]
    assert lines[-1].startswith(f"NOT offline: {len(NATIVE)} of {len(rows)} egress paths leaked")
    assert 'network.sandbox is "off"' in lines[-1]
