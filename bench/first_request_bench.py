"""First request on a fresh codebase of ~10,000 chunks: time to first token after Enter, served by
keyword search while the vectors are computed in the background, vs the same request once the
index is complete; and the keyword index build time alone. Same run, same model, real REPL.

Target (issue 16): first-request TTFT <= keyword index build + 1.5x the complete-index TTFT.

The complete index is built beforehand (embedding ~9,000 chunks takes minutes and is not part
of any figure here):

    HYBRID_LLM_HOME=/tmp/complete nice -n 19 hybrid-llm index /tmp/networkx
    flock /work/coord/cpu.lock .venv/bin/python bench/first_request_bench.py \\
        --repo /tmp/networkx --complete-index-dir /tmp/complete/indexes

The default codebase is a copy of the installed `networkx` package (556 files, 8,746 chunks).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from repl_driver import PipeRepl, cpu_model, report  # noqa: E402

REQUEST = "/code write a function that returns the k shortest simple paths between two nodes of a weighted graph"


def keyword_build_seconds(repo: Path, index_dir: Path) -> tuple[float, int]:
    from hybrid_llm.config import Config
    from hybrid_llm.rag.index import CodeIndex

    config = Config.model_validate({"rag": {"index_dir": str(index_dir)}})
    started = time.perf_counter()
    with CodeIndex.open(repo, config) as index:
        summary = index.update(embed=False)
    return time.perf_counter() - started, summary.chunks


def first_token_seconds(repo: Path, index_dir: Path, provider, *, background: bool) -> dict:
    """One request through the REPL on the index in `index_dir`; with `background`, as the
    terminal REPL runs it (requests do not wait for embeddings)."""
    from hybrid_llm.config import Config
    from hybrid_llm.repl.session import Session

    config = Config.model_validate({
        "rag": {"index_dir": str(index_dir)},
        "generation": {"temperature": 0, "max_tokens": 8},
    })
    session = Session(config, repo, provider=provider)
    if background:
        session.start_background_work()
    repl = PipeRepl(session)
    result: dict = {}

    def user(repl: PipeRepl) -> None:
        repl.forget_conversation()
        result.update(repl.ask(REQUEST))
        result["vectors_at_answer"] = session.vectors

    repl.drive(user)
    session.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--complete-index-dir", type=Path, required=True,
                        help="rag.index_dir holding the complete index of --repo")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="first-request-bench-"))
    os.environ.setdefault("HYBRID_LLM_HOME", str(scratch / "home"))

    from hybrid_llm.config import Config
    from hybrid_llm.llm.provider import BackendProvider

    provider = BackendProvider(Config())
    provider.get()
    keyword_s, chunks = keyword_build_seconds(args.repo, scratch / "keyword-only")
    complete = [first_token_seconds(args.repo, args.complete_index_dir, provider, background=False)]
    fresh = first_token_seconds(args.repo, scratch / "fresh", provider, background=True)
    complete.append(first_token_seconds(args.repo, args.complete_index_dir, provider, background=False))
    complete_ttft = sum(run["ttft_s"] for run in complete) / len(complete)
    bound = keyword_s + 1.5 * complete_ttft
    result = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "repo": str(args.repo), "chunks": chunks,
        "keyword_index_build_s": round(keyword_s, 2),
        "complete_index": complete, "complete_ttft_mean_s": round(complete_ttft, 2),
        "fresh_first_request": fresh,
        "target_s": round(bound, 2), "fresh_vs_target": round(fresh["ttft_s"] / bound, 3),
        "fresh_vs_complete": round(fresh["ttft_s"] / complete_ttft, 3),
    }
    report(result, args.json)


if __name__ == "__main__":
    main()
