"""Subcommands of the rag area: `index` here, `query` in query_cli; `register` adds them all.

    hybrid-llm index [PATH] [--rebuild] [--json]
    hybrid-llm index --prepare-embedder      (install time: export the ONNX embedder once)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hybrid_llm.config import load_config
from hybrid_llm.rag import query_cli


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's subcommands."""
    _add_index_parser(subparsers)
    query_cli.add_parser(subparsers)


def _add_index_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index",
        help="build or update the search index of a codebase",
        description="Index a codebase for /code: only files changed since the last run are "
        "re-chunked and re-embedded. Progress goes to stderr; Ctrl-C keeps finished files.",
    )
    parser.add_argument(
        "path", nargs="?", type=Path, help="codebase root (default: rag.codebase_path)"
    )
    parser.add_argument("--rebuild", action="store_true", help="drop the index and build it again")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    parser.add_argument(
        "--prepare-embedder",
        action="store_true",
        help="check (or export) the embedding model and exit (run by install.sh)",
    )
    parser.set_defaults(func=run_index)


def run_index(args: argparse.Namespace) -> int:
    if args.prepare_embedder:
        from hybrid_llm.rag.embedder import prepare_default_embedder

        print(f"embedder ready: {prepare_default_embedder()}", file=sys.stderr)
        return 0
    from hybrid_llm.rag.index import CodeIndex
    from hybrid_llm.rag.progress import ProgressLine

    config = load_config()
    repo = args.path or Path(config.rag.codebase_path)
    progress = ProgressLine(sys.stderr)
    with CodeIndex.open(repo, config) as index:
        summary = index.update(rebuild=args.rebuild, progress=progress)
    progress.finish()
    if args.json:
        print(json.dumps(summary.to_json()))
    else:
        _print_summary(summary)
    return 130 if summary.interrupted else 0


def _print_summary(summary) -> None:
    skipped = sum(summary.files_skipped.values())
    reasons = ", ".join(f"{name} {count}" for name, count in summary.files_skipped.most_common())
    by_count = sorted(summary.languages.items(), key=lambda item: (-item[1], item[0]))
    languages = ", ".join(f"{name} {count}" for name, count in by_count)
    lines = [
        f"files indexed   {summary.files_indexed}",
        f"files unchanged {summary.files_unchanged}",
        f"files deleted   {summary.files_deleted}",
        f"files skipped   {skipped}" + (f" ({reasons})" if reasons else ""),
        f"chunks          {summary.chunks}",
        *([f"redacted        {summary.secrets_redacted} secrets (keys, tokens, passwords)"]
          if summary.secrets_redacted else []),
        f"languages       {languages or '-'}",
        f"seconds         {summary.seconds:.2f}",
    ]
    if summary.chunks_pending:
        lines.append(f"waiting for vectors: {summary.chunks_pending} chunks (run again to finish)")
    if summary.interrupted:
        lines.append("interrupted: files finished so far are kept")
    print("\n".join(lines))
