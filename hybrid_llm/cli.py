"""The `hybrid-llm` command line: one parser, with subcommands registered by each area.

Each area (`llm`, `rag`, `net`, `finetune`) owns a `cli.py` exposing `register(subparsers)`,
so adding a subcommand never means editing this file. A handler takes the parsed arguments and
returns the process exit status; a `UserError` anywhere becomes one line on stderr, exit 1.
On Linux the process then enters the network sandbox (net/sandbox.py), unless its subcommand
sets `outside_sandbox` (`models pull` needs the network, `verify-offline` measures from outside).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from hybrid_llm import __version__
from hybrid_llm.config import ConfigError
from hybrid_llm.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from hybrid_llm import doctor
    from hybrid_llm.finetune import cli as finetune_cli
    from hybrid_llm.llm import cli as llm_cli
    from hybrid_llm.net import cli as net_cli
    from hybrid_llm.rag import cli as rag_cli
    from hybrid_llm.repl import cli as repl_cli

    parser = argparse.ArgumentParser(
        prog="hybrid-llm",
        description="Offline-first coding assistant. With no subcommand, starts the REPL.",
    )
    parser.add_argument("--version", action="version", version=f"hybrid-llm {__version__}")
    repl_cli.add_arguments(parser)
    net_cli.add_arguments(parser)
    parser.set_defaults(func=repl_cli.run)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for area in (llm_cli, rag_cli, net_cli, finetune_cli, doctor):
        area.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from hybrid_llm.config import load_config
    from hybrid_llm.net import guard

    # First thing: nothing may reach the network before the guard is up (issue 7).
    config = None
    try:
        config = load_config()
        guard.install_from_config(config)
    except ConfigError:
        guard.enable()  # a broken config still starts offline; the command reports the error
    except guard.NetworkBlockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None and config is not None and not getattr(args, "outside_sandbox", False):
        # Only as the process's own entry point: main() called from Python (tests, scripts)
        # must not lock its caller into the sandbox.
        from hybrid_llm.net import sandbox

        sandbox.enter_default_mode(config)
    try:
        return int(args.func(args) or 0)
    except (UserError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: one line for the user, trace to the log
        logging.getLogger("hybrid_llm").exception("unhandled error")
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
