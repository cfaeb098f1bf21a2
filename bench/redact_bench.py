"""Cost of secret redaction in the chunking pass, against chunking itself (the reference).

Every chunk written to an index goes through `hybrid_llm.redact.redact` (text and header), so
redaction adds to the pass that makes keyword search available. Both are timed in the same run
on the same chunks, and the figure is the ratio (redaction seconds / chunking seconds).

    python bench/redact_bench.py [--files 400] [--seed 3] [--root DIR]

The default corpus is a fixed sample of the installed packages' Python files (site-packages):
third-party code, mostly without secrets, as a user's codebase is.
"""

from __future__ import annotations

import argparse
import random
import sysconfig
import time
from pathlib import Path

from hybrid_llm.rag.chunker import CodeChunker
from hybrid_llm.redact import redact


def sample_files(root: Path, count: int, seed: int) -> list[tuple[str, str]]:
    paths = sorted(root.rglob("*.py"))
    random.Random(seed).shuffle(paths)
    texts = []
    for path in paths[:count]:
        try:
            texts.append((path.name, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--root", type=Path, default=Path(sysconfig.get_paths()["purelib"]))
    args = parser.parse_args()
    texts = sample_files(args.root, args.files, args.seed)
    chunker = CodeChunker()
    started = time.perf_counter()
    chunks = [chunk for name, text in texts for chunk in chunker.chunk(name, text)]
    chunked = time.perf_counter()
    redactions = sum(redact(chunk.text)[1] + redact(chunk.header)[1] for chunk in chunks)
    redacted = time.perf_counter()
    chunking, redaction = chunked - started, redacted - chunked
    megabytes = sum(len(text) for _, text in texts) / 1e6
    print(f"{len(texts)} files, {megabytes:.1f} MB, {len(chunks)} chunks, {redactions} redactions")
    print(f"chunking (reference) {chunking:.2f} s; redaction {redaction:.2f} s; "
          f"ratio {redaction / chunking:.2f}")


if __name__ == "__main__":
    main()
