"""`hybrid-llm query`: search a codebase from the shell; the JSON form is a contract.

    hybrid-llm query "TEXT" --repo PATH --k 10 --json
        -> [{"path", "start_line", "end_line", "symbol", "language", "score", "sources"}, ...]
    hybrid-llm query --repo PATH --batch FILE --k 10 --json
        FILE holds JSON lines {"id": ..., "query": ...}; prints {"id": ..., "results": [...]}
        per line, with the models loaded once.

The index is brought up to date first (built when missing), with progress on stderr only, so
stdout carries nothing but results and can be piped into other tools.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hybrid_llm.config import Config, load_config
from hybrid_llm.errors import UserError
from hybrid_llm.rag.chunk import RetrievedChunk


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "query",
        help="search the codebase (dense + keyword) and print the best chunks",
        description="Search a codebase with hybrid dense + keyword retrieval. The index is "
        "built or updated first (progress on stderr).",
    )
    parser.add_argument("text", nargs="?", help="what to look for, in words or identifiers")
    parser.add_argument("--repo", type=Path, help="codebase root (default: rag.codebase_path)")
    parser.add_argument("--k", type=int, help="number of results (default: rag.max_results)")
    parser.add_argument("--language", help="only chunks of this language, e.g. python")
    parser.add_argument("--path", dest="path_glob", metavar="GLOB",
                        help="only files matching this glob, e.g. 'src/*.py'")
    parser.add_argument("--batch", type=Path, metavar="FILE",
                        help="JSON lines {\"id\": ..., \"query\": ...}; '-' reads stdin")
    parser.add_argument("--json", action="store_true", help="print JSON (batch always does)")
    parser.set_defaults(func=run)


def result_json(result: RetrievedChunk) -> dict[str, Any]:
    chunk = result.chunk
    return {
        "path": chunk.path,
        "start_line": chunk.start_line,
        "end_line": chunk.end_line,
        "symbol": chunk.symbol,
        "language": chunk.language,
        "score": float(result.score),
        "sources": list(result.sources),
    }


def _read_batch(source: Path) -> list[tuple[Any, str]]:
    """All queries, validated before any search runs, so a bad line costs nothing."""
    try:
        text = sys.stdin.read() if str(source) == "-" else source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{source}: cannot read batch file: {exc}") from None
    queries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{source}:{number}: invalid JSON: {exc.msg}") from None
        if not isinstance(item, dict) or not isinstance(item.get("query"), str) or "id" not in item:
            raise UserError(f'{source}:{number}: expected {{"id": ..., "query": "..."}}')
        queries.append((item["id"], item["query"]))
    return queries


def _repo(args: argparse.Namespace, config: Config) -> Path:
    repo = (args.repo or Path(config.rag.codebase_path)).expanduser().resolve()
    if not repo.is_dir():
        raise UserError(f"{repo}: not a directory (give the codebase root with --repo)")
    return repo


def _print_human(results: list[RetrievedChunk]) -> None:
    if not results:
        print("no results")
    for result in results:
        chunk = result.chunk
        symbol = f"  {chunk.symbol}" if chunk.symbol else ""
        print(f"{chunk.citation}{symbol}  {result.score:.4f}  [{'+'.join(result.sources)}]")


def _search_all(retriever: Any, queries: list[tuple[Any, str]], args: argparse.Namespace,
                k: int) -> Iterator[tuple[Any, list[RetrievedChunk]]]:
    for query_id, text in queries:
        yield query_id, retriever.retrieve(text, k, language=args.language,
                                           path_glob=args.path_glob)


def run(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.batch is None):
        raise UserError('give either a query TEXT or --batch FILE, e.g. hybrid-llm query "parse config"')
    config = load_config()
    k = args.k if args.k is not None else config.rag.max_results
    if k < 1:
        raise UserError(f"--k must be at least 1 (got {k})")
    queries = _read_batch(args.batch) if args.batch else [(None, args.text)]
    repo = _repo(args, config)

    from hybrid_llm.rag.index import CodeIndex
    from hybrid_llm.rag.progress import ProgressLine
    from hybrid_llm.rag.retriever import HybridRetriever

    index = CodeIndex.open(repo, config)
    try:
        progress = ProgressLine(sys.stderr)
        summary = index.update(progress=progress)
        progress.finish()
        if summary.interrupted:
            print("interrupted: the index keeps the files finished so far", file=sys.stderr)
            return 130
        retriever = HybridRetriever(index, config)
        for query_id, results in _search_all(retriever, queries, args, k):
            if args.batch:
                print(json.dumps({"id": query_id, "results": [result_json(r) for r in results]}),
                      flush=True)
            elif args.json:
                print(json.dumps([result_json(r) for r in results], indent=2))
            else:
                _print_human(results)
    finally:
        index.close()
    return 0
