"""`hybrid-llm verify-offline`: show, by trying, that no egress path gets out while offline.

A counting listener runs in a separate process; every probe in `probes.py` aims at its own port.
The probes run twice, each time in a fresh process:

- layer 2: with the in-process guard in strict mode (loopback refused too), outside any sandbox;
- layer 3: inside the sandbox (`python -m hybrid_llm.net.sandbox`) with the guard off, so the
  operating system alone must stop them; the listener stays outside, as the internet would.

A path is blocked when the listener saw nothing from it. The verdict counts layer 3 only when
this invocation runs sandboxed (`hybrid-llm --sandbox verify-offline`): without the sandbox,
native code (ddgs's Rust client, ctypes, non-Python children) does leak, and we say so.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hybrid_llm.errors import UserError
from hybrid_llm.net import guard, probes, sandbox
from hybrid_llm.net.listener import CountingListener

_CHILD_TIMEOUT = 300


@dataclass(frozen=True)
class PathVerdict:
    path: str
    native: bool
    layer2: probes.ProbeResult
    layer3: probes.ProbeResult | None
    blocked: bool

    @property
    def stopped_by(self) -> str | None:
        if not self.layer2.reached:
            return f"layer 2: {self.layer2.layer or 'not reached'}"
        if self.blocked and self.layer3 is not None:
            return f"layer 3: {self.layer3.layer or 'sandbox'}"
        return None


@dataclass(frozen=True)
class OfflineReport:
    paths: list[PathVerdict]
    sandbox: str | None  # the sandbox this invocation runs in
    sandbox_unavailable: str | None  # why layer 3 could not be measured

    @property
    def leaks(self) -> list[PathVerdict]:
        return [p for p in self.paths if not p.blocked]

    def as_json(self) -> dict[str, Any]:
        return {
            "offline": not self.leaks,
            "sandbox": self.sandbox,
            "sandbox_unavailable": self.sandbox_unavailable,
            "paths": [
                {
                    "path": p.path,
                    "native": p.native,
                    "verdict": "blocked" if p.blocked else "LEAKED",
                    "stopped_by": p.stopped_by,
                    "layer2": p.layer2.as_json(),
                    "layer3": p.layer3.as_json() if p.layer3 else None,
                }
                for p in self.paths
            ],
        }


def verify_offline() -> OfflineReport:
    """Run every probe against a fresh listener, with layer 2 alone and with layer 3 alone."""
    if not hasattr(socket, "AF_UNIX"):
        raise UserError("verify-offline needs Unix domain sockets (Linux or macOS)")
    tcp, udp = probes.probe_names(udp=False), probes.probe_names(udp=True)
    unavailable = sandbox.unavailable_reason()
    try:
        listener = CountingListener(tcp, udp).start()
    except (OSError, RuntimeError) as exc:
        raise UserError(f"verify-offline cannot start its counting listener: {exc}") from None
    try:
        # The probe processes start online: some probes open a connection before going offline.
        with guard.allow_network("verify-offline starts its probe processes"):
            probe_command = [
                sys.executable, "-m", "hybrid_llm.net.probes", "--host", listener.host,
                "--ports", json.dumps(listener.ports), "--control", str(listener.control_path),
            ]  # fmt: skip
            layer2 = _run_probe_process([*probe_command, "--guard", "strict"])
            layer3 = None
            if unavailable is None:
                sandboxed_command = sandbox.launcher_command([*probe_command, "--guard", "off"])
                layer3 = {r.path: r for r in _run_probe_process(sandboxed_command)}
    finally:
        listener.stop()
    sandboxed = sandbox.active()
    verdicts = []
    for result in layer2:
        inner = layer3.get(result.path) if layer3 is not None else None
        blocked = not result.reached or bool(sandboxed and inner is not None and not inner.reached)
        verdicts.append(PathVerdict(result.path, result.native, result, inner, blocked))
    return OfflineReport(verdicts, sandboxed, unavailable)


def _run_probe_process(command: Sequence[str]) -> list[probes.ProbeResult]:
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=_CHILD_TIMEOUT, check=False
    )
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"verify-offline: the probe process failed: {last_line}")
    return [probes.ProbeResult(**item) for item in json.loads(completed.stdout)]


def render_table(report: OfflineReport) -> str:
    """The report as a fixed-width table, one egress path per line, then a one-line summary."""
    layer3_title = (
        "layer 3 (OS sandbox alone)" if report.sandbox_unavailable is None else "layer 3 (n/a)"
    )
    rows = [("egress path", "layer 2 (guard, strict)", layer3_title, "verdict")]
    for path in report.paths:
        rows.append((path.path, _cell(path.layer2), _cell(path.layer3), _verdict(path, report)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines += ["", _summary(report)]
    return "\n".join(lines)


def _cell(result: probes.ProbeResult | None) -> str:
    if result is None:
        return "-"
    if result.reached:
        return "LEAKED"
    if not result.applicable:
        return "n/a (no connection)"
    return f"blocked ({result.layer})" if result.layer else "blocked"


def _verdict(path: PathVerdict, report: OfflineReport) -> str:
    if path.blocked:
        return "blocked"
    if path.layer3 is not None and not path.layer3.reached:
        return "LEAKED (--sandbox stops it)"
    return "LEAKED"


def _summary(report: OfflineReport) -> str:
    total, leaks = len(report.paths), report.leaks
    where = f"in the {report.sandbox} sandbox" if report.sandbox else "without a sandbox"
    if not leaks:
        return f"offline: all {total} egress paths blocked ({where})."
    advice = (
        f" Only layers 1-2 exist here: {report.sandbox_unavailable}"
        if report.sandbox_unavailable
        else " Run `hybrid-llm --sandbox ...` to stop native code too."
    )
    return f"NOT offline: {len(leaks)} of {total} egress paths leaked ({where}).{advice}"
