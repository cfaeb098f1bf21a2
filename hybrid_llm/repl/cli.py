"""How `hybrid-llm` with no subcommand starts the REPL: on a terminal, or line by line from a pipe."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Any

from hybrid_llm.config import Config, hybrid_home, load_config, private_file
from hybrid_llm.errors import UserError
from hybrid_llm.repl.commands import Commands
from hybrid_llm.repl.io import PlainIO
from hybrid_llm.repl.loop import run_loop, setup_logging
from hybrid_llm.repl.session import Session


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Top-level flags that only make sense for the REPL."""
    parser.add_argument(
        "--repo",
        metavar="PATH",
        help="the codebase to work on (default: rag.codebase_path from the config, relative to "
        "the current directory)",
    )


def run(args: argparse.Namespace) -> int:
    config = load_config()
    session = Session(config, codebase(config, args.repo))
    setup_logging()
    if sys.stdin.isatty() and sys.stdout.isatty():
        commands = terminal_commands(session)
        # Only a person at a terminal gains from loading ahead (a script would race its own
        # exit), and only once the prompt is up, so loading cannot delay it.
        commands.io.on_first_prompt = session.start_background_work
    else:
        commands = Commands(PlainIO(sys.stdin.buffer, sys.stdout, sys.stderr), session)
    try:
        return run_loop(commands.io, commands)
    finally:
        session.close()


def codebase(config: Config, repo: str | None) -> Path:
    path = Path(repo or config.rag.codebase_path).expanduser()
    if not path.is_dir():
        raise UserError(f"codebase {path} is not a directory: pass --repo PATH or set rag.codebase_path")
    return path.resolve()


def history_path() -> Path:
    return private_file(hybrid_home() / "history")  # the commands typed: owner-only


def terminal_commands(session: Session, **io_options: Any) -> Commands:
    """Commands on a prompt-toolkit + rich terminal, with completion and toolbar wired in.

    Imported here so scripts piping into the REPL never pay for prompt-toolkit's set-up.
    """
    from hybrid_llm.repl.completer import CommandCompleter
    from hybrid_llm.repl.terminal import TerminalIO
    from hybrid_llm.repl.toolbar import toolbar_text
    from hybrid_llm.repl.typeahead import TypeAhead

    io = TerminalIO(history_path(), **io_options)
    commands = Commands(io, session)
    io.completer = CommandCompleter(commands)
    settings = session.config.repl
    if settings.typeahead:
        io.typeahead = TypeAhead(session, commands.resolve, pause_s=settings.typeahead_pause_ms / 1000)
    io.toolbar = partial(toolbar_text, session, io.typeahead)
    return commands
