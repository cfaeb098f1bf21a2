"""Subcommands and top-level flags of the network area: `verify-offline` and `--sandbox`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from hybrid_llm.net import guard, sandbox


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify-offline",
        help="prove offline mode: try every egress path against a local counting listener",
        description=(
            "Try every known egress path (urllib, httpx, raw sockets, child processes, native "
            "code...) against a counting listener in a separate process, with the in-process "
            "guard (layer 2) and inside the OS sandbox (layer 3). Exit status 1 on any leak."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    # Outside: it starts the listener and the positive control there, and the default mode's
    # sandbox for the probes itself.
    parser.set_defaults(func=run_verify_offline, outside_sandbox=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sandbox",
        action=_SandboxAction,
        help="run in a fresh network namespace (Linux; seccomp where namespaces are refused), "
        "so native code and child processes cannot reach the network either",
    )


class _SandboxAction(argparse.Action):
    """Re-executes the whole invocation inside the sandbox as soon as the flag is parsed."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, True)
        if sandbox.active():
            return  # this is the re-executed process, already inside
        reason = sandbox.unavailable_reason()
        if reason:
            parser.error(reason)
        if option_string not in sys.orig_argv:
            parser.error("--sandbox must be given on the command line of the process")
        try:
            # The sandboxed process replaces this one and installs its own guard from the config.
            with guard.allow_network("--sandbox re-executes this command inside the sandbox"):
                sandbox.reexec_sandboxed(guard.unguarded_environ())
        except OSError as exc:
            parser.error(f"cannot start the sandbox: {exc}")


def run_verify_offline(args: argparse.Namespace) -> int:
    from hybrid_llm.net.verify import render_table, verify_offline

    report = verify_offline()
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(render_table(report))
    return 1 if report.failures else 0
