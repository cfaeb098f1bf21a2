"""`hybrid-llm ask "PROMPT" [--repo PATH] [--json] [--no-rag]`: one request end to end, no REPL.

The answer streams to stdout; index progress goes to stderr, so `ask ... > answer.md` captures
only the answer. Ctrl-C stops generation (within 200 ms) and keeps what was written.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from hybrid_llm.coder import NOT_USED_TITLE, Answer, Coder
from hybrid_llm.config import Config, load_config
from hybrid_llm.errors import UserError

JSON_TIMINGS = ("retrieval_ms", "prompt_tokens", "ttft_ms", "completion_tokens", "decode_tok_per_s", "total_ms")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ask",
        help="answer one coding request with the local model and exit",
        description="Retrieve relevant code from the repository, ask the model, print the answer.",
    )
    parser.add_argument("prompt", help="the request, e.g. \"add a --verbose flag to the CLI\"")
    # SUPPRESS: `hybrid-llm --repo P ask ...` (the top-level flag) must not be reset to None.
    parser.add_argument("--repo", metavar="PATH", default=argparse.SUPPRESS,
                        help="codebase to retrieve from (default: rag.codebase_path)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: answer, sources, timings")
    parser.add_argument("--no-rag", action="store_true", help="do not retrieve code")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config()
    use_rag = not args.no_rag and config.rag.enabled
    repo = _codebase(config, getattr(args, "repo", None)) if use_rag else None
    coder = Coder(config, request_log=_request_log(config), index_progress=_IndexProgressLine(sys.stderr))
    on_token = None if args.json else _write_through(sys.stdout)
    answer = _ask_interruptibly(coder, args.prompt, repo=repo, use_rag=use_rag, on_token=on_token)
    if args.json:
        print(json.dumps(answer_json(answer), ensure_ascii=False))
    else:
        _print_sources(answer, sys.stdout)
    coder.close()
    coder.provider.close()
    return 130 if answer.cancelled else 0


def answer_json(answer: Answer) -> dict[str, Any]:
    """The `--json` shape: answer, sources and not_used [{path, start_line, end_line}], six
    timings."""
    return {
        "answer": answer.text,
        "sources": [
            {"path": s.path, "start_line": s.start_line, "end_line": s.end_line} for s in answer.sources
        ],
        "not_used": [
            {"path": s.path, "start_line": s.start_line, "end_line": s.end_line} for s in answer.unused_sources
        ],
        "timings": {key: answer.timings.get(key, 0) for key in JSON_TIMINGS},
    }


def _ask_interruptibly(coder: Coder, prompt: str, **options: Any) -> Answer:
    """Run the request on a worker thread so Ctrl-C reaches us even inside llama.cpp's C code."""
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["answer"] = coder.ask(prompt, **options)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
            result["error"] = exc

    worker = threading.Thread(target=work, name="ask", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        coder.cancel()
        worker.join()
    if "error" in result:
        raise result["error"]
    return result["answer"]


def _codebase(config: Config, repo: str | None) -> Path:
    path = Path(repo or config.rag.codebase_path).expanduser()
    if not path.is_dir():
        raise UserError(f"codebase {path} is not a directory: pass --repo PATH or use --no-rag")
    return path.resolve()


def _request_log(config: Config):
    from hybrid_llm.finetune.request_log import RequestLog

    return RequestLog.from_config(config)


def _write_through(stream: TextIO):
    def write(piece: str) -> None:
        stream.write(piece)
        stream.flush()

    return write


def _print_sources(answer: Answer, stream: TextIO) -> None:
    stream.write("\n")
    if answer.cancelled:
        stream.write("[cancelled]\n")
    if answer.sources:
        stream.write("\nSources:\n" + "".join(f"  {s.citation}\n" for s in answer.sources))
    if answer.unused_sources:
        stream.write(f"\n{NOT_USED_TITLE}\n" + "".join(f"  {s.citation}\n" for s in answer.unused_sources))
    if answer.web_sources:
        stream.write("\nWeb:\n" + "".join(f"  {url}\n" for url in answer.web_sources))
    stream.flush()


class _IndexProgressLine:
    """Index progress as short stderr lines, at most one a second (a first index takes minutes)."""

    def __init__(self, stream: TextIO, interval: float = 1.0) -> None:
        self._stream = stream
        self._interval = interval
        self._last = 0.0

    def __call__(self, progress: Any) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        count = f" {progress.done}/{progress.total}" if progress.total else ""
        self._stream.write(f"indexing: {progress.phase}{count}\n")
        self._stream.flush()
