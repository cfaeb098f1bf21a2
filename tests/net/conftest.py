"""Fixtures for the network guard tests: a counting listener in a separate process, and a guard
that every test starts and leaves online.

The listener is the witness: it counts connections, HTTP requests, datagrams and bytes per
port, so "blocked" means nothing arrived, not merely that an exception was raised. All traffic in
these tests goes to loopback or to a namespace the test creates itself, never anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hybrid_llm.net import guard, probes
from hybrid_llm.net.listener import CountingListener


@pytest.fixture(autouse=True)
def guard_starts_and_ends_online() -> Iterator[None]:
    """The guard is process-wide: no test may inherit another's offline mode (or leave one)."""
    guard.disable()
    yield
    guard.disable()


@pytest.fixture(scope="module")
def listener() -> Iterator[CountingListener]:
    """A counting listener on 127.0.0.1 with one port per egress probe."""
    with CountingListener(probes.probe_names(udp=False), probes.probe_names(udp=True)) as running:
        yield running
