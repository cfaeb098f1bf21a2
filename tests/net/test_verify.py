"""`hybrid-llm verify-offline` (hybrid_llm/net/verify.py) as users run it: a real subprocess, a
real counting listener, every probe. Without the sandbox, native code leaks and the command says
so with exit status 1; under `--sandbox` everything is blocked and it exits 0.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hybrid_llm.net import probes, sandbox

NATIVE = {p.name for p in probes.PROBES if p.native and p.available()}
PYTHON = {p.name for p in probes.PROBES if not p.native}


def hybrid_llm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hybrid_llm", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_without_the_sandbox_native_code_is_reported_as_leaking() -> None:
    run = hybrid_llm("verify-offline")
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[:2] == ["egress", "path"]
    rows = {name: line for line in lines for name in PYTHON | NATIVE if line.startswith(name + " ")}
    assert set(rows) == PYTHON | NATIVE
    for name in PYTHON:
        assert "LEAKED" not in rows[name] and "blocked (" in rows[name], rows[name]
    for name in NATIVE:
        assert rows[name].split("  ")[-1].startswith("LEAKED"), rows[name]
    assert "blocked (audit hook)" in rows["_socket.socket (bypasses the patches)"]
    assert lines[-1].startswith(f"NOT offline: {len(NATIVE)} of {len(rows)} egress paths leaked")


@pytest.mark.skipif(bool(sandbox.unavailable_reason()), reason=str(sandbox.unavailable_reason()))
def test_under_the_sandbox_every_path_is_blocked() -> None:
    run = hybrid_llm("--sandbox", "verify-offline", "--json")
    report = json.loads(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert report["offline"] is True and report["sandbox"] in ("namespace", "seccomp")
    paths = {p["path"]: p for p in report["paths"]}
    assert set(paths) == PYTHON | NATIVE
    for name, path in paths.items():
        assert path["verdict"] == "blocked" and path["stopped_by"], (name, path)
    for name in NATIVE:
        assert paths[name]["layer2"]["reached"], f"{name}: layer 2 alone was expected to leak"
        assert paths[name]["stopped_by"].startswith("layer 3"), paths[name]
