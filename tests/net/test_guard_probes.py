"""Every egress path against the counting listener, with the guard in strict mode (loopback
refused too): the listener must count nothing. With the guard off, the same probes must reach
it, so a probe that silently does nothing cannot pass as "blocked".

Native code is invisible to the in-process guard: those probes are expected to leak here
(`xfail(strict=True)`, so a future fix is noticed) and are tested under the sandbox in
test_sandbox.py.
"""

from __future__ import annotations

import pytest

from hybrid_llm.net import guard, probes
from hybrid_llm.net.listener import CountingListener

PYTHON_PATHS = [p.name for p in probes.PROBES if not p.native]
NATIVE_PATHS = [
    pytest.param(
        p.name,
        marks=[
            pytest.mark.xfail(strict=True, reason="native code bypasses Python: layer 3 only"),
            pytest.mark.skipif(not p.available(), reason=f"{p.name} not available here"),
        ],
    )
    for p in probes.PROBES
    if p.native
]


def run(listener: CountingListener, path: str, mode: str) -> probes.ProbeResult:
    (result,) = probes.run_probes(
        listener.host, listener.ports, str(listener.control_path), mode=mode, names=[path]
    )
    return result


@pytest.mark.parametrize("path", PYTHON_PATHS + NATIVE_PATHS)
def test_strict_guard_blocks_every_egress_path(listener: CountingListener, path: str) -> None:
    result = run(listener, path, "strict")
    assert not result.reached, f"{path} reached the listener through the guard: {result.detail}"
    assert result.layer, f"{path} was not stopped by a known layer: {result.detail}"
    assert not guard.is_offline()  # the probe restored the level


@pytest.mark.parametrize("path", [p.name for p in probes.PROBES if p.available()])
def test_without_the_guard_every_probe_reaches_the_listener(
    listener: CountingListener, path: str
) -> None:
    result = run(listener, path, "off")
    assert result.reached, f"positive control failed: {path}: {result.detail}"


def test_references_captured_before_the_guard_are_stopped_by_the_audit_hook(
    listener: CountingListener,
) -> None:
    result = run(listener, "_socket.socket (bypasses the patches)", "strict")
    assert result.layer == guard.LAYER_AUDIT


@pytest.mark.parametrize(
    "path", [p.name for p in probes.PROBES if not p.native and p.loopback_allowed]
)
def test_loopback_mode_lets_every_path_reach_a_local_server(
    listener: CountingListener, path: str
) -> None:
    """`network.allow_loopback` (the default) must not break a local model server. (The other
    paths run in loopback mode in every guarded test, and must not reach it.)"""
    result = run(listener, path, "loopback")
    assert result.reached, f"{path} could not reach loopback in loopback mode: {result.detail}"
