"""A non-loopback destination the test owns: a network namespace with a veth pair, and the
counting listener on the far end (198.18.x.2, a benchmarking range no real host uses).

With loopback allowed (the default), every Python egress path must still be refused towards
that address, while loopback stays reachable (test_guard_probes.py). Needs root and `ip`; skipped
otherwise. Traffic goes only to the namespace this test creates and removes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from hybrid_llm.net import probes
from hybrid_llm.net.listener import CountingListener

# The localhost probe never uses the target address, so it says nothing about the test host;
# paths refused even with loopback allowed say nothing about a non-loopback host either.
PATHS = [
    p.name for p in probes.PROBES
    if not p.native and p.loopback_allowed and p.name != "host name lookup (localhost)"
]  # fmt: skip


def _namespaces_unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "creating a namespace with a veth pair needs root and iproute2"
    return None


pytestmark = pytest.mark.skipif(
    bool(_namespaces_unavailable()), reason=str(_namespaces_unavailable())
)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def test_host() -> Iterator[CountingListener]:
    """A listener reachable only through a veth pair into a namespace made for this test."""
    tag = f"hlt{os.getpid() % 100000}"
    namespace, outside, inside = tag, f"{tag}a", f"{tag}b"
    subnet = f"198.18.{os.getpid() % 250}"
    try:
        _ip("netns", "add", namespace)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.strip()}")
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("addr", "add", f"{subnet}.1/30", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("-n", namespace, "addr", "add", f"{subnet}.2/30", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        listener = CountingListener(
            probes.probe_names(udp=False), probes.probe_names(udp=True),
            host=f"{subnet}.2", prefix=["ip", "netns", "exec", namespace],
        )  # fmt: skip
        with listener:
            yield listener
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


def run(listener: CountingListener, path: str, mode: str) -> probes.ProbeResult:
    (result,) = probes.run_probes(
        listener.host, listener.ports, str(listener.control_path), mode=mode, names=[path]
    )
    return result


@pytest.mark.parametrize("path", PATHS)
def test_loopback_mode_refuses_a_real_non_loopback_host(
    test_host: CountingListener, path: str
) -> None:
    result = run(test_host, path, "loopback")
    assert not result.reached, f"{path} reached {test_host.host}: {result.detail}"
    assert result.layer, result.detail


@pytest.mark.parametrize("path", ["urllib", "httpx (sync)", "UDP sendto", "Python child process"])
def test_without_the_guard_the_test_host_is_reachable(
    test_host: CountingListener, path: str
) -> None:
    result = run(test_host, path, "off")
    assert result.reached, f"positive control failed: {path}: {result.detail}"
