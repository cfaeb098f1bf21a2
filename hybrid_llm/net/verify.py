"""`hybrid-llm verify-offline`: show, by trying, that no egress path gets out in the default mode.

A counting listener runs in a separate process; every probe in `probes.py` aims at its own port.
The probes run three times, each time in a fresh process, the listener always outside:

- positive control: no guard, no sandbox. Every path must reach the listener here, otherwise the
  check could not fail and proves nothing;
- layer 2 alone: the in-process guard in strict mode, outside any sandbox (what macOS and Windows
  get);
- default mode: what `hybrid-llm` runs in with the config as it is: the OS sandbox
  (`network.sandbox`, entered the same way, inherited descriptors closed) plus the guard as
  `network.allow_loopback` sets it. Without a sandbox here, the guard alone, in strict mode,
  since the listener on 127.0.0.1 plays a remote host.

A path is blocked when the listener saw nothing from it in the default mode. Then the web broker
(broker.py) is started as the REPL starts it and sent what it must refuse: any request while
offline; loopback, private and link-local URLs; file:// and other schemes; a connection to a
server the config does not name. As its own positive control, a connection to a server the
config does name must reach the listener.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hybrid_llm.config import Config, load_config
from hybrid_llm.errors import UserError
from hybrid_llm.net import broker_client, guard, probes, sandbox
from hybrid_llm.net.listener import CountingListener, read_counts

_CHILD_TIMEOUT = 300
_BROKER_TIMEOUT = 10.0
_FORWARDED = "broker: loopback server named in the config"


@dataclass(frozen=True)
class BrokerCheck:
    """One request sent to the broker, whose verdict must be `expect` ("refused" or "reached")."""

    name: str
    request: dict[str, Any]
    expect: str = "refused"
    target: str | None = None  # the listener port it aims at, whose count must (not) change
    online: bool = True


def _fetch(url: str) -> dict[str, Any]:
    return {"op": "fetch", "url": url}


_AT_LISTENER = "http://{host}:{port}/"
_CONNECT = {"op": "connect", "host": "{host}", "port": "{port}"}
BROKER_CHECKS: tuple[BrokerCheck, ...] = (
    BrokerCheck(
        "fetch while offline", _fetch(_AT_LISTENER), target="broker: fetch while offline",
        online=False,
    ),
    BrokerCheck(
        "search while offline", {"op": "search", "query": "hybrid-llm", "max_results": 1},
        online=False,
    ),
    BrokerCheck("loopback URL", _fetch(_AT_LISTENER), target="broker: loopback URL"),
    BrokerCheck(
        "localhost URL", _fetch("http://localhost:{port}/"), target="broker: localhost URL"
    ),
    BrokerCheck(
        "IPv6 loopback URL", _fetch("http://[::1]:{port}/"), target="broker: IPv6 loopback URL"
    ),
    BrokerCheck("private address (10.0.0.1)", _fetch("http://10.0.0.1/")),
    BrokerCheck("link-local (169.254.169.254)", _fetch("http://169.254.169.254/latest/meta-data/")),
    BrokerCheck("file:// URL", _fetch("file:///etc/passwd")),
    BrokerCheck(
        "non-http scheme (ftp)", _fetch("ftp://{host}:{port}/"), target="broker: non-http scheme"
    ),
    BrokerCheck("server not named in the config", _CONNECT, target="broker: unnamed server"),
    BrokerCheck("unknown request", {"op": "exec", "command": "id"}),
    BrokerCheck(
        "positive control: server named in the config", _CONNECT, expect="reached",
        target=_FORWARDED,
    ),
)  # fmt: skip


@dataclass(frozen=True)
class BrokerVerdict:
    name: str
    expect: str
    refused: bool
    reached: bool  # the listener saw it (for checks that aim at it)
    detail: str

    @property
    def passed(self) -> bool:
        if self.expect == "reached":
            return self.reached
        return self.refused and not self.reached


@dataclass(frozen=True)
class PathVerdict:
    path: str
    native: bool
    control: probes.ProbeResult  # no guard, no sandbox: must reach the listener
    layer2: probes.ProbeResult  # the guard alone, strict
    default: probes.ProbeResult  # the default mode

    @property
    def blocked(self) -> bool:
        return not self.default.reached

    @property
    def control_failed(self) -> bool:
        return self.control.applicable and not self.control.reached

    @property
    def stopped_by(self) -> str | None:
        return (self.default.layer or "not reached") if self.blocked else None


@dataclass(frozen=True)
class OfflineReport:
    paths: list[PathVerdict]
    broker: list[BrokerVerdict]
    sandbox: str | None  # the default mode's sandbox method
    sandbox_unavailable: str | None  # why the default mode has no sandbox here

    @property
    def leaks(self) -> list[PathVerdict]:
        return [p for p in self.paths if not p.blocked]

    @property
    def failures(self) -> list[str]:
        """Everything that makes the verdict "not offline" or "not proven"."""
        unproven = [p for p in self.paths if p.control_failed]
        return (
            [f"{p.path}: leaked" for p in self.leaks]
            + [f"{p.path}: positive control did not reach the listener" for p in unproven]
            + [f"broker, {b.name}: {b.detail}" for b in self.broker if not b.passed]
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "offline": not self.failures,
            "sandbox": self.sandbox,
            "sandbox_unavailable": self.sandbox_unavailable,
            "paths": [
                {
                    "path": p.path,
                    "native": p.native,
                    "verdict": "blocked" if p.blocked else "LEAKED",
                    "stopped_by": p.stopped_by,
                    "control": p.control.as_json(),
                    "layer2": p.layer2.as_json(),
                    "default": p.default.as_json(),
                }
                for p in self.paths
            ],
            "broker": [
                {"check": b.name, "expect": b.expect, "passed": b.passed, "detail": b.detail}
                for b in self.broker
            ],
            "failures": self.failures,
        }


def verify_offline(config: Config | None = None) -> OfflineReport:
    """Every probe unprotected, with layer 2 alone and in the default mode; then the broker."""
    if not hasattr(socket, "AF_UNIX"):
        raise UserError("verify-offline needs Unix domain sockets (Linux or macOS)")
    config = config or load_config()
    method, unavailable = _default_sandbox(config)
    broker_names = [check.target for check in BROKER_CHECKS if check.target]
    tcp, udp = probes.probe_names(udp=False) + broker_names, probes.probe_names(udp=True)
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
            control = _run_probe_process([*probe_command, "--guard", "off"])
            layer2 = _by_path(_run_probe_process([*probe_command, "--guard", "strict"]))
            guarded = [*probe_command, "--guard", _guard_mode(config, sandboxed=bool(method))]
            default_command = sandbox.launcher_command(guarded, method) if method else guarded
            default = _by_path(_run_probe_process(default_command))
            broker = _check_broker(config, listener)
    finally:
        listener.stop()
    verdicts = [
        PathVerdict(c.path, c.native, c, layer2[c.path], default[c.path]) for c in control
    ]
    return OfflineReport(verdicts, broker, method, unavailable)


def _default_sandbox(config: Config) -> tuple[str | None, str | None]:
    """The method the default mode gets here, tried as `enter_default_mode` would; or why none."""
    obstacle = _obstacle(config)
    if obstacle:
        return None, obstacle
    wanted = config.network.sandbox
    if wanted != "auto":
        candidates: tuple[str, ...] = (wanted,)
    elif broker_client.loopback_servers(config):
        candidates = ("namespace",)  # seccomp would cut the loopback servers in the config
    else:
        candidates = ("namespace", "seccomp")
    for method in candidates:
        trial = subprocess.run(
            sandbox.launcher_command(["true"], method), capture_output=True, check=False
        )
        if trial.returncode == 0:
            return method, None
    return None, f"the kernel refuses {' and '.join(candidates)} here"


def _obstacle(config: Config) -> str | None:
    if config.network.sandbox == "off":
        return 'network.sandbox is "off"'
    return sandbox.unavailable_reason()


def _guard_mode(config: Config, *, sandboxed: bool) -> str:
    """The guard as the config sets it; but outside a sandbox the listener on 127.0.0.1 stands in
    for a remote host, which loopback mode refuses like strict mode does (tests/net/
    test_guard_veth.py shows it on a real non-loopback address), so strict measures that."""
    return "loopback" if sandboxed and config.network.allow_loopback else "strict"


def _by_path(results: list[probes.ProbeResult]) -> dict[str, probes.ProbeResult]:
    return {result.path: result for result in results}


def _run_probe_process(command: Sequence[str]) -> list[probes.ProbeResult]:
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=_CHILD_TIMEOUT, check=False
    )
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"verify-offline: the probe process failed: {last_line}")
    return [probes.ProbeResult(**item) for item in json.loads(completed.stdout)]


def _check_broker(config: Config, listener: CountingListener) -> list[BrokerVerdict]:
    """Start a broker as the REPL does (one named loopback server: the listener) and try it."""
    forwarded = (listener.host, listener.ports[_FORWARDED])
    client = broker_client.spawn_broker(config, [forwarded], online=False)
    try:
        verdicts = [
            _check_one(client, check, listener) for check in BROKER_CHECKS if not check.online
        ]
        client.set_offline(False)
        verdicts += [_check_one(client, check, listener) for check in BROKER_CHECKS if check.online]
    finally:
        client.close()
    return verdicts


def _check_one(
    client: broker_client.BrokerClient, check: BrokerCheck, listener: CountingListener
) -> BrokerVerdict:
    port = listener.ports[check.target] if check.target else 9
    request = {
        key: _fill(value, listener.host, port) for key, value in check.request.items()
    }
    before = read_counts(listener.control_path)
    try:
        answer, fd = client.exchange(request, _BROKER_TIMEOUT)
    except UserError as exc:
        answer, fd = {"error": str(exc)}, None
    if fd is not None:
        socket.socket(fileno=fd).close()
    after = read_counts(listener.control_path)
    reached = bool(check.target) and after[check.target] != before[check.target]
    refused = bool(answer.get("refused"))
    detail = answer.get("error") or ("connection handed over" if fd is not None else "answered")
    detail = " ".join(str(detail).split())[:160]
    return BrokerVerdict(check.name, check.expect, refused, reached, detail)


def _fill(value: Any, host: str, port: int) -> Any:
    if value == "{port}":
        return port
    return value.format(host=host, port=port) if isinstance(value, str) else value


def render_table(report: OfflineReport) -> str:
    """The report as fixed-width tables: egress paths, then the broker, then a one-line summary."""
    default_title = (
        f"default mode ({report.sandbox} sandbox + guard)"
        if report.sandbox
        else "default mode (guard only)"
    )
    rows = [("egress path", "positive control", "layer 2 alone (strict)", default_title, "verdict")]
    for path in report.paths:
        verdict = "blocked" if path.blocked else "LEAKED"
        cells = (_control_cell(path.control), _cell(path.layer2), _cell(path.default))
        rows.append((path.path, *cells, verdict))
    broker_rows = [("web broker request", "expected", "result", "", "verdict")]
    for check in report.broker:
        result = "reached the listener" if check.reached else _short(check.detail)
        verdict = "ok" if check.passed else "FAILED"
        broker_rows.append((check.name, check.expect, result, "", verdict))
    lines = _table(rows) + [""] + _table(broker_rows) + ["", _summary(report)]
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths if width))
    return lines


def _short(detail: str, limit: int = 72) -> str:
    detail = detail.split("; the web broker only")[0]
    return detail if len(detail) <= limit else detail[: limit - 1] + "…"


def _control_cell(result: probes.ProbeResult) -> str:
    if not result.applicable:
        return "n/a (no connection)"
    return "reached" if result.reached else "NOT reached"


def _cell(result: probes.ProbeResult) -> str:
    if result.reached:
        return "LEAKED"
    if not result.applicable:
        return "n/a (no connection)"
    return f"blocked ({result.layer})" if result.layer else "blocked"


def _summary(report: OfflineReport) -> str:
    total, failures = len(report.paths), report.failures
    sandboxed = f"{report.sandbox} sandbox" if report.sandbox else "no sandbox"
    where = f"in the default mode, {sandboxed}"
    if not failures:
        return (
            f"offline: all {total} egress paths blocked ({where}); the web broker refused "
            f"{sum(c.expect == 'refused' for c in report.broker)} forbidden requests."
        )
    leaks = len(report.leaks)
    advice = (
        f" Only layers 1-2 apply: {report.sandbox_unavailable}."
        if report.sandbox_unavailable
        else ""
    )
    return (
        f"NOT offline: {leaks} of {total} egress paths leaked ({where}); "
        f"{len(failures)} problem(s): {failures[0]}.{advice}"
    )
