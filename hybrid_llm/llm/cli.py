"""Subcommands of the LLM area: `models ...` (provisioning), `engine ...` (the llama.cpp build)
and `ask` (one request end to end)."""

from __future__ import annotations

import argparse

from hybrid_llm.llm import ask_cli, engine_cli, models_cli


def register(subparsers: argparse._SubParsersAction) -> None:
    models_cli.register(subparsers)
    engine_cli.register(subparsers)
    ask_cli.register(subparsers)
