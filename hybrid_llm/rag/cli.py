"""Subcommands of this area; `register` is called by hybrid_llm.cli."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's subcommands (filled in by the issue that owns the area)."""
