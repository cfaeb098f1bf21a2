"""Time to first token after Enter: a request typed at 5 characters a second (the type-ahead
prepares its context meanwhile) vs the same request pasted at once, same run, same index.

Drives the real REPL through prompt-toolkit's pipe input with the real default model on a real
codebase (a copy of the installed `rich` package by default: ~1,000 tokens of retrieved code per
request with the default `rag.context_tokens`). Before each request the conversation is cleared
and the model's KV cache is reset to the system prompt, so neither run inherits the other's work.
Typed and pasted runs alternate, pasted first for odd requests and typed first for even ones.

    flock /work/coord/cpu.lock .venv/bin/python bench/typeahead_bench.py [--repo PATH] [--cps 5]

Set HYBRID_LLM_HOME to reuse an index built before (the embedding is not part of the figure).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from repl_driver import PipeRepl, cpu_model, report  # noqa: E402

REQUESTS = [
    "/code write a function that prints a table of the files in a directory with their sizes "
    "and modification times, using rich's Table and Console",
    "/code make a custom highlighter that colors IPv4 addresses and email addresses in log "
    "messages, based on RegexHighlighter",
    "/code add a helper that renders a markdown file to the terminal with syntax highlighted "
    "code blocks, using the Markdown class and a Console",
]


def default_repo(scratch: Path) -> Path:
    import rich

    target = scratch / "rich"
    if not target.exists():
        shutil.copytree(Path(rich.__file__).parent, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def run(repo: Path, cps: float, requests: list[str], *, whole_bodies: bool) -> dict:
    from hybrid_llm.config import Config
    from hybrid_llm.repl.session import Session

    config = Config.model_validate({
        "generation": {"temperature": 0, "max_tokens": 8},
        "rag": {"compact_context": not whole_bodies},
    })
    session = Session(config, repo)
    print(f"indexing {repo} …", file=sys.stderr, flush=True)
    summary = session.update_index(progress=lambda event: None)
    session.wait_for_model()
    session.coder.retrieve(session.repo, "warm up")  # loads the embedder and vector store: not part of either figure
    repl = PipeRepl(session)
    results: list[dict] = []

    def user(repl: PipeRepl) -> None:
        for number, request in enumerate(requests):
            runs = {}
            for typed in ((False, True) if number % 2 == 0 else (True, False)):
                repl.forget_conversation()
                runs["typed" if typed else "pasted"] = repl.ask(request, chars_per_second=cps if typed else None)
            runs["ratio"] = round(runs["typed"]["ttft_s"] / runs["pasted"]["ttft_s"], 3)
            runs["request"] = request
            results.append(runs)
            print(json.dumps(runs), file=sys.stderr, flush=True)

    repl.drive(user)
    session.close()
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "repo": str(repo), "chunks": summary.chunks,
        "chars_per_second": cps, "whole_bodies": whole_bodies, "results": results,
        "median_ratio": statistics.median(entry["ratio"] for entry in results),
        "median_ttft_typed_s": statistics.median(entry["typed"]["ttft_s"] for entry in results),
        "median_ttft_pasted_s": statistics.median(entry["pasted"]["ttft_s"] for entry in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, help="codebase (default: a copy of the installed rich package)")
    parser.add_argument("--cps", type=float, default=5.0, help="typing speed, characters per second")
    parser.add_argument("--requests", type=int, default=len(REQUESTS))
    parser.add_argument("--whole-bodies", action="store_true",
                        help="retrieved code whole (rag.compact_context false): ~1,000 tokens of context")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="typeahead-bench-"))
    os.environ.setdefault("HYBRID_LLM_HOME", str(scratch / "home"))
    result = run(args.repo or default_repo(scratch), args.cps, REQUESTS[: args.requests],
                 whole_bodies=args.whole_bodies)
    report(result, args.json)


if __name__ == "__main__":
    main()
