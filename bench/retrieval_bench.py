"""Retrieval quality and latency on docstring-to-code test sets built from installed packages.

For each package (click, jinja2, pygments) the source is copied with every function docstring
removed; the first sentence of each removed docstring is a query, and its answer is that
function's line range in the copy. The copy is indexed with the real `CodeIndex` and searched
with the real `HybridRetriever` in four modes: keyword-only, dense-only, hybrid (the default
learned fusion) and hybrid-rrf (Reciprocal Rank Fusion, the fusion before it), once
per embedder compared (`--embedders`, default the shipped code model and MiniLM, the
reference), plus any extra hybrid weightings (`--also-weights 1.5:1`). `--source-root` takes the
packages from unpacked wheels instead: the code embedder's held-out validation packages.
The same sets are also indexed with a fixed 40-line window chunker, to measure what
syntax-aware chunking buys. Latency is measured warm (models loaded, index open) on one index
holding every copy plus padding source, at >= 10,000 chunks, with the first embedder listed;
embedding throughput is compared between the embedders on the same chunks.

A result is a hit when it shows most of the answer or lies mostly inside it: the overlap is at
least half of the function's lines or at least half of the result's lines. This is fair to
both chunkers (a window that contains a small function is a hit; one chunk of a long,
split function is a hit).

Run (about 5-10 minutes on 2 cores, most of it embedding):
    nice .venv/bin/python bench/retrieval_bench.py [--max-queries 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hybrid_llm.config import Config  # noqa: E402
from hybrid_llm.finetune.docstring_queries import (  # noqa: E402
    DocstringQuery as Query,
    first_sentence as _first_sentence,
    is_hit as _is_hit,
    strip_docstrings,
    usable_queries,
)
from hybrid_llm.rag.catalog import embed_text  # noqa: E402
from hybrid_llm.rag.chunk import Chunk  # noqa: E402
from hybrid_llm.rag.chunker import CodeChunker  # noqa: E402
from hybrid_llm.rag.embedder import CodeEmbedder, MiniLMEmbedder  # noqa: E402
from hybrid_llm.rag.retriever import HybridRetriever  # noqa: E402

PACKAGES = ("click", "jinja2", "pygments")
PADDING_PACKAGES = ("rich", "pip")  # only to bring the latency index to 10,000 chunks
# The latency index must hold >= 10,000 chunks; counting before indexing runs ~1% high.
PADDING_TARGET = 10_400
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "hybrid-llm-retrieval-bench" / "embeddings.npz"
# (dense, keyword) weights, with rag.fusion: None = the configured retriever (learned fusion by
# default); "hybrid-rrf" is the previous fusion, ranks only, as the reference in the same run.
MODES = {"keyword": ((0.0, 1.0), None), "dense": ((1.0, 0.0), None), "hybrid": (None, None),
         "hybrid-rrf": (None, "rrf")}
K = 10
EMBEDDERS = {"code": CodeEmbedder, "minilm": MiniLMEmbedder}
# MiniLM's cached vectors were keyed by this before the cache knew of other models.
_LEGACY_CACHE_KEYS = {MiniLMEmbedder.name: "all-MiniLM-L6-v2 onnx int8"}


# ---------------------------------------------------------------- test sets


def build_set(package: str, destination: Path, source_root: Path | None = None) -> list[Query]:
    """Copy a package's .py files without function docstrings; return the usable queries.
    The package is the installed one, or `source_root/package` (an unpacked wheel)."""
    if source_root is None:
        source_root = Path(importlib.util.find_spec(package).submodule_search_locations[0])
    else:
        source_root = source_root / package
    queries: list[Query] = []
    for path in sorted(source_root.rglob("*.py")):
        rel_path = f"{package}/{path.relative_to(source_root).as_posix()}"
        text, found = strip_docstrings(path.read_text(encoding="utf-8"), rel_path)
        target = destination / rel_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        queries.extend(found)
    return usable_queries(queries)


# ---------------------------------------------------------------- systems under test


class LineWindowChunker:
    """The baseline: fixed windows of `lines` lines, header = path, no symbols."""

    def __init__(self, lines: int = 40):
        self.lines = lines

    def chunk(self, rel_path: str, text: str, language: str | None = None) -> list[Chunk]:
        lines = text.split("\n")
        return [
            Chunk(rel_path, "python", start + 1, min(start + self.lines, len(lines)),
                  "\n".join(lines[start:start + self.lines]), None, rel_path)
            for start in range(0, len(lines), self.lines)
            if "\n".join(lines[start:start + self.lines]).strip()
        ]


class CachingEmbedder:
    """Embeds each distinct text once, and remembers it across runs in `cache_file`: the same
    chunks appear in several indexes of one run, and re-runs while tuning should not pay
    minutes of embedding again. Query embeddings are never cached (latency includes them)."""

    def __init__(self, embedder, cache_file: Path | None):
        self.embedder = embedder
        self.cache_file = cache_file
        self.cache: dict[str, np.ndarray] = {}
        if cache_file and cache_file.exists():
            with np.load(cache_file) as stored:
                self.cache = dict(zip(stored["keys"].tolist(), stored["vectors"]))
        self.embedded = 0

    def __getattr__(self, name):
        return getattr(self.embedder, name)

    def _key(self, text: str) -> str:
        """Cached vectors are only valid for the model that made them."""
        model = _LEGACY_CACHE_KEYS.get(self.embedder.name, self.embedder.name)
        return hashlib.sha256(f"{model}\n{text}".encode()).hexdigest()

    def embed(self, texts: list[str]) -> np.ndarray:
        keys = [self._key(text) for text in texts]
        missing = {key: text for key, text in zip(keys, texts) if key not in self.cache}
        if missing:
            vectors = self.embedder.embed(list(missing.values()))
            self.cache.update(zip(missing, vectors))
            self.embedded += len(missing)
            self._save()
        if not texts:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        return np.stack([self.cache[key] for key in keys])

    def embed_query(self, text: str) -> np.ndarray:
        return self.embedder.embed_query(text)

    def _save(self) -> None:
        if self.cache_file is None:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.cache_file.with_suffix(".partial.npz")
        np.savez(partial, keys=np.array(list(self.cache)), vectors=np.stack(list(self.cache.values())))
        partial.replace(self.cache_file)


class PrefixRouter:
    """One index holding several chunkings of the same sets (for the latency index): files
    under `<prefix>/` are chunked by that prefix's chunker, with the header they had in their
    own index, so their vectors come from the cache instead of being embedded again."""

    def __init__(self, chunkers: dict[str, object]):
        self.chunkers = chunkers

    def chunk(self, rel_path: str, text: str, language: str | None = None) -> list[Chunk]:
        prefix, _, inner = rel_path.partition("/")
        chunker = self.chunkers.get(prefix)
        if chunker is None:
            return self.chunkers["padding"].chunk(rel_path, text)
        return [replace(chunk, path=rel_path) for chunk in chunker.chunk(inner, text)]


def _open_index(repo: Path, index_dir: Path, embedder, chunker):
    from hybrid_llm.rag.index import CodeIndex

    config = Config()
    config.rag.index_dir = str(index_dir)
    index = CodeIndex.open(repo, config, embedder=embedder, chunker=chunker)
    started = time.perf_counter()
    index.update()
    return index, time.perf_counter() - started


def retriever_for(index, mode: str, config: Config) -> HybridRetriever:
    """A retriever searching as `mode` says: one search alone (its weight 1, the other's 0),
    both as configured ("hybrid"), or both with another fusion or weights."""
    weights, fusion = MODES[mode]
    config = config.model_copy(deep=True)
    if weights is not None:
        config.rag.dense_weight, config.rag.keyword_weight = weights
    if fusion is not None:
        config.rag.fusion = fusion
    return HybridRetriever(index, config)


def evaluate(index, queries: list[Query], mode: str, config: Config) -> dict[str, float]:
    retriever = retriever_for(index, mode, config)
    hit1 = hit5 = reciprocal = 0.0
    for query in queries:
        results = retriever.retrieve(query.text, k=K)
        rank = next((n for n, r in enumerate(results, 1) if _is_hit(r.chunk, query)), None)
        hit1 += rank == 1
        hit5 += rank is not None and rank <= 5
        reciprocal += 1 / rank if rank else 0.0
    n = max(len(queries), 1)
    return {"hit@1": hit1 / n, "hit@5": hit5 / n, "mrr@10": reciprocal / n}


def measure_latency(index, queries: list[Query], config: Config, mode: str = "hybrid") -> dict[str, float]:
    retriever = retriever_for(index, mode, config)
    for query in queries[:10]:  # warm: caches, first-call allocations
        retriever.retrieve(query.text, k=K)
    timings = []
    for query in queries:
        started = time.perf_counter()
        retriever.retrieve(query.text, k=K)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "p50_ms": statistics.median(timings),
        "p95_ms": timings[int(0.95 * (len(timings) - 1))],
        "queries": len(timings),
    }


# ---------------------------------------------------------------- report


def _table(results: dict) -> str:
    rows = ["| embedder | set | chunker | mode | hit@1 | hit@5 | MRR@10 |",
            "|---|---|---|---|---|---|---|"]
    for key, metrics in results.items():
        embedder, package, chunker, mode = key.split("/")
        rows.append(f"| {embedder} | {package} | {chunker} | {mode} | {metrics['hit@1']:.3f} | "
                    f"{metrics['hit@5']:.3f} | {metrics['mrr@10']:.3f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES))
    parser.add_argument("--source-root", type=Path,
                        help="take each package from SOURCE_ROOT/<package> (an unpacked wheel, "
                             "e.g. the embedder's held-out validation packages), not the venv")
    parser.add_argument("--embedders", nargs="+", choices=sorted(EMBEDDERS),
                        default=["code", "minilm"],
                        help="models compared on the same sets; the first one is timed")
    parser.add_argument("--max-queries", type=int, default=300,
                        help="queries sampled per set (seeded), to keep the run short")
    parser.add_argument("--no-window", action="store_true", help="skip the 40-line baseline")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--max-chars", type=int, default=None, help="chunk budget override")
    parser.add_argument("--rrf-k", type=int, help="override rag.rrf_k for the hybrid mode")
    parser.add_argument("--dense-weight", type=float, help="override rag.dense_weight")
    parser.add_argument("--keyword-weight", type=float, help="override rag.keyword_weight")
    parser.add_argument("--also-weights", nargs="+", default=[], metavar="DENSE:KEYWORD",
                        help="extra hybrid modes with these weights, on the same indexes")
    parser.add_argument("--json", type=Path, help="also write all figures here")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="chunk embeddings kept between runs (queries are never cached)")
    parser.add_argument("--no-cache", action="store_true", help="embed everything afresh")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="retrieval-bench-"))
    os.environ["HYBRID_LLM_HOME"] = str(work / "home")

    started = time.perf_counter()
    for weights in args.also_weights:
        dense, keyword = (float(part) for part in weights.split(":"))
        MODES[f"hybrid-{weights}"] = ((dense, keyword), "rrf")  # weights only weigh RRF's ranks
    embedders = {name: CachingEmbedder(EMBEDDERS[name](), None if args.no_cache else args.cache)
                 for name in args.embedders}
    config = Config()
    for field, value in (("rrf_k", args.rrf_k), ("dense_weight", args.dense_weight),
                         ("keyword_weight", args.keyword_weight)):
        if value is not None:
            setattr(config.rag, field, value)
    chunkers = {"tree-sitter": CodeChunker(args.max_chars) if args.max_chars else CodeChunker()}
    if not args.no_window:
        chunkers["window-40"] = LineWindowChunker(40)
    results: dict[str, dict[str, float]] = {}
    sizes: dict[str, dict[str, int]] = {}
    rng = random.Random(0)
    try:
        sets = {}
        for package in args.packages:
            queries = build_set(package, work / "sets" / package, args.source_root)
            if len(queries) > args.max_queries:
                queries = rng.sample(queries, args.max_queries)
            sets[package] = queries
            sizes[package] = {"queries": len(queries)}
        for model, embedder in embedders.items():
            for package, queries in sets.items():
                for name, chunker in chunkers.items():
                    index, seconds = _open_index(work / "sets" / package,
                                                 work / "idx" / f"{model}-{package}-{name}",
                                                 embedder, chunker)
                    sizes[package][f"chunks_{name}"] = index.status().chunks
                    print(f"{model} {package} [{name}]: {index.status().chunks} chunks indexed "
                          f"in {seconds:.0f}s, {len(queries)} queries", file=sys.stderr)
                    for mode in MODES:
                        results[f"{model}/{package}/{name}/{mode}"] = evaluate(
                            index, queries, mode, config)
                    index.close()
        print(_table(results))
        _print_means(results, embedders, args.packages, chunkers)
        timed = next(iter(embedders.values()))
        latency = None if args.no_latency else _latency(work, args.packages, timed, config,
                                                         chunkers)
        if latency:
            print(f"\nlatency ({args.embedders[0]}, hybrid, warm, k={K}): p50 "
                  f"{latency['p50_ms']:.1f} ms, "
                  f"p95 {latency['p95_ms']:.1f} ms over {latency['queries']} queries at "
                  f"{latency['chunks']} chunks; reference, each search alone: dense p50 "
                  f"{latency['dense']['p50_ms']:.1f} / p95 {latency['dense']['p95_ms']:.1f} ms, "
                  f"keyword p50 {latency['keyword']['p50_ms']:.1f} / p95 "
                  f"{latency['keyword']['p95_ms']:.1f} ms; hybrid p50 / (dense + keyword) p50 = "
                  f"{latency['p50_ratio_to_sum_of_searches']:.2f}")
        throughput = _throughput(embedders, work / "sets" / args.packages[0])
        print("\nembedding throughput (chunks/s, uncached, same chunks): " + ", ".join(
            f"{model} {rate:.1f} ({rate / throughput[args.embedders[-1]]:.2f}x "
            f"{args.embedders[-1]})" for model, rate in throughput.items()))
        embedded = {model: embedder.embedded for model, embedder in embedders.items()}
        print(f"\nsets: {json.dumps(sizes)}; embedded {embedded} distinct texts; "
              f"total {time.perf_counter() - started:.0f}s")
        if args.json:
            args.json.write_text(json.dumps({"results": results, "sizes": sizes,
                                             "latency": latency, "throughput": throughput},
                                            indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _print_means(results: dict, embedders: dict, packages: list[str], chunkers: dict) -> None:
    print("\nmean over sets:")
    for model in embedders:
        for name in chunkers:
            for mode in MODES:
                rows = [results[f"{model}/{p}/{name}/{mode}"] for p in packages]
                means = {m: statistics.mean(r[m] for r in rows)
                         for m in ("hit@1", "hit@5", "mrr@10")}
                print(f"  {model:7} {name:12} {mode:12} hit@1 {means['hit@1']:.3f}  "
                      f"hit@5 {means['hit@5']:.3f}  MRR@10 {means['mrr@10']:.3f}")


def _throughput(embedders: dict, repo: Path, texts: int = 300) -> dict[str, float]:
    """Chunks per second each model embeds, on the same chunk texts, best of three rounds
    in alternating order (the machine is shared); the ratio is what a switch of model does to
    indexing."""
    chunker = CodeChunker()
    sample = [embed_text(chunk.header, chunk.text)
              for path in sorted(repo.rglob("*.py"))
              for chunk in chunker.chunk(path.relative_to(repo).as_posix(),
                                         path.read_text(encoding="utf-8"))][:texts]
    best = {model: float("inf") for model in embedders}
    for round_ in range(3):
        order = list(embedders.items())
        for model, embedder in order if round_ % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            embedder.embedder.embed(sample)
            best[model] = min(best[model], time.perf_counter() - started)
    return {model: len(sample) / seconds for model, seconds in best.items()}


def _chunk_count(chunker, path: Path, repo: Path) -> int:
    text = path.read_text(encoding="utf-8", errors="replace")
    return len(chunker.chunk(path.relative_to(repo).as_posix(), text))


def _padding_files() -> list[tuple[Path, str]]:
    """(file, path inside the padding folder) of the padding packages' sources."""
    files = []
    for package in PADDING_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec and spec.submodule_search_locations:
            root = Path(spec.submodule_search_locations[0])
            files.extend((path, f"{package}/{path.relative_to(root).as_posix()}")
                         for path in sorted(root.rglob("*.py")))
    return files


def _latency(work: Path, packages: list[str], embedder, config: Config, chunkers: dict) -> dict:
    """One index with every set in every chunking, plus padding source up to 10,000 chunks."""
    repo = work / "latency"
    queries: list[Query] = []
    for name in chunkers:
        for package in packages:
            shutil.copytree(work / "sets" / package, repo / name, dirs_exist_ok=True)
    for package in packages:
        queries.extend(build_set(package, work / "scratch" / package))
    router = PrefixRouter({**chunkers, "padding": chunkers["tree-sitter"]})
    chunks = sum(_chunk_count(router, path, repo) for path in repo.rglob("*.py"))
    for path, rel_path in _padding_files():
        if chunks >= PADDING_TARGET:
            break
        target = repo / "padding" / rel_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        chunks += _chunk_count(router, target, repo)
    index, seconds = _open_index(repo, work / "idx" / "latency", embedder, router)
    print(f"latency index: {index.status().chunks} chunks ({seconds:.0f}s)", file=sys.stderr)
    sample = random.Random(1).sample(queries, min(300, len(queries)))
    latency = measure_latency(index, sample, config)
    latency["chunks"] = index.status().chunks
    # The reference, same run and index: each search alone. Their sum is what hybrid retrieval
    # cannot avoid; the ratio shows what fusion, merging and the chunk lookup add on top.
    for mode in ("dense", "keyword"):
        latency[mode] = measure_latency(index, sample, config, mode)
    latency["p50_ratio_to_sum_of_searches"] = latency["p50_ms"] / (
        latency["dense"]["p50_ms"] + latency["keyword"]["p50_ms"])
    index.close()
    return latency


if __name__ == "__main__":
    raise SystemExit(main())
