"""Reuse rate: does the answer call the codebase's own helper instead of re-writing it?

Tasks come from real packages installed here (not click, jinja2 or pygments, which the
retrieval benchmark uses): top-level functions with a docstring that call another top-level
function of the same package (the helper). Each package is copied with its task functions
removed and indexed for real; each task is asked `/code`-style, by its signature and its
docstring's first sentence, through the real `Coder` and the default model. An answer reuses
when its code calls the helper and does not define it.

Three modes per task, interleaved so load changes hit them alike: `whole` (retrieved chunks
as whole bodies), `compact` (the best chunk whole, the rest as outlines) and `none` (no
retrieval). Reported per mode: reuse rate, median time to first token, median context tokens
(prompt tokens minus the same request's prompt tokens without retrieval). Greedy decoding;
answers are cut at their first complete code block (bench/ask_harness.py).

Runs are split so each stays short on 2 cores; results are appended to a JSON-lines file:
    flock /work/coord/cpu.lock .venv/bin/python bench/reuse_bench.py --tasks 0:6 --out r.jsonl
    ... --tasks 6:12 ...
    .venv/bin/python bench/reuse_bench.py --report r.jsonl
`--list` prints the tasks without running the model.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ask_harness import ask_until_first_block, first_code_block, median  # noqa: E402
from retrieval_bench import DEFAULT_CACHE, CachingEmbedder, _first_sentence  # noqa: E402

from hybrid_llm.config import Config, load_config  # noqa: E402

PACKAGES = ("httpx", "urllib3", "packaging", "dateutil", "tqdm", "markdown_it", "jsonschema", "pathspec")
TASKS_PER_PACKAGE = 6
MODES = ("whole", "compact", "none")
_BUILTIN_NAMES = frozenset(dir(__import__("builtins")))


@dataclass(frozen=True)
class Task:
    package: str
    path: str  # inside the package copy
    name: str
    helper: str
    signature: str
    sentence: str
    start_line: int
    end_line: int

    @property
    def request(self) -> str:
        return f"Write the function `{self.signature}`: {self.sentence}"


def _package_root(package: str) -> Path:
    return Path(importlib.util.find_spec(package).submodule_search_locations[0])


def _top_level_functions(package: str) -> dict[str, list[tuple[str, ast.FunctionDef, str]]]:
    """Every top-level function of the package by name: [(path, node, source)]."""
    root = _package_root(package)
    found: dict[str, list] = {}
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        rel = f"{package}/{path.relative_to(root).as_posix()}"
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.setdefault(node.name, []).append((rel, node, source))
    return found


def _called_names(node: ast.AST) -> list[str]:
    """Names called plainly (`helper(...)`): an attribute call (`x.replace(...)`) may be any
    type's method, so it cannot say that the package's own function is used."""
    names = [call.func.id for call in ast.walk(node)
             if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)]
    return list(dict.fromkeys(names))


def _signature(node: ast.FunctionDef, source: str) -> str:
    lines = source.split("\n")[node.lineno - 1 : node.body[0].lineno - 1]
    text = " ".join(" ".join(line.split("#")[0] for line in lines).split())
    text = text.split('"""')[0].split("'''")[0].strip()
    return text.removesuffix(":").removeprefix("async ").removeprefix("def ").strip()


def find_tasks(package: str, limit: int) -> list[Task]:
    functions = _top_level_functions(package)
    unique = {name: entries[0] for name, entries in functions.items() if len(entries) == 1}
    tasks: list[Task] = []
    for name, (rel, node, source) in sorted(unique.items(), key=lambda item: (item[1][0], item[1][1].lineno)):
        docstring = ast.get_docstring(node)
        if not docstring or name.startswith("__"):
            continue
        sentence = _first_sentence(docstring)
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        # A grammar rule or a bare name is no request a user would type.
        if len(sentence.split()) < 4 or "=" in sentence or not 4 <= length <= 60:
            continue
        helpers = [called for called in _called_names(node)
                   if called in unique and called != name and len(called) > 4
                   and called not in _BUILTIN_NAMES and not called.isupper()]
        if not helpers:
            continue
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        tasks.append(Task(package, rel, name, helpers[0], _signature(node, source), sentence,
                          start, node.end_lineno or node.lineno))
    # A removed task must not be another task's helper, and one task per helper keeps variety.
    chosen: list[Task] = []
    for task in tasks:
        taken = {t.name for t in chosen} | {t.helper for t in chosen}
        if task.name in taken or task.helper in taken:
            continue
        if any(task.name == other.helper for other in tasks if other is not task and other in chosen):
            continue
        chosen.append(task)
        if len(chosen) == limit:
            break
    return chosen


def all_tasks() -> list[Task]:
    return [task for package in PACKAGES for task in find_tasks(package, TASKS_PER_PACKAGE)]


def build_copy(package: str, tasks: list[Task], destination: Path) -> Path:
    """The package without its task functions (each replaced by nothing)."""
    root = _package_root(package)
    target = destination / package
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(root, target, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    by_file: dict[str, list[Task]] = {}
    for task in tasks:
        by_file.setdefault(task.path, []).append(task)
    for rel, file_tasks in by_file.items():
        path = destination / rel
        lines = path.read_text(encoding="utf-8").split("\n")
        for task in sorted(file_tasks, key=lambda t: -t.start_line):
            del lines[task.start_line - 1 : task.end_line]
        path.write_text("\n".join(lines), encoding="utf-8")
    return destination


def reuses(answer: str, helper: str) -> bool:
    """The answer's code calls `helper` (plainly or as an attribute) and does not define it."""
    code = first_code_block(answer)
    calls = re.search(rf"(?<![\w]){re.escape(helper)}\s*\(", code.replace(f"def {helper}", ""))
    return calls is not None and re.search(rf"\bdef\s+{re.escape(helper)}\b", code) is None


def _configs(base: Config, index_dir: Path) -> dict[str, Config]:
    configs = {}
    for mode in MODES:
        config = base.model_copy(deep=True)
        config.rag.index_dir = str(index_dir)
        config.rag.compact_context = mode == "compact"
        config.generation.temperature = 0.0
        config.generation.max_tokens = 512
        configs[mode] = config
    return configs


def prepare(packages: list[str], work: Path, config: Config) -> dict[str, Path]:
    """Each package's copy without its tasks, indexed (embeddings through the shared cache,
    so the coders find the index up to date and re-runs embed nothing)."""
    from hybrid_llm.rag.embedder import default_embedder
    from hybrid_llm.rag.index import CodeIndex

    embedder = CachingEmbedder(default_embedder(), DEFAULT_CACHE)
    by_package: dict[str, list[Task]] = {}
    for task in all_tasks():
        by_package.setdefault(task.package, []).append(task)
    repos = {}
    for package in packages:
        repos[package] = build_copy(package, by_package[package], work / "repos" / package).resolve()
        index = CodeIndex.open(repos[package], config, embedder=embedder)
        index.update()
        index.close()
    return repos


def run(tasks: list[Task], work: Path, out: Path) -> None:
    from hybrid_llm.coder import Coder
    from hybrid_llm.llm.provider import BackendProvider

    configs = _configs(load_config(), work / "index")
    provider = BackendProvider(configs["whole"])
    provider.start_loading()
    repos = prepare(list(dict.fromkeys(task.package for task in tasks)), work, configs["whole"])
    coders = {mode: Coder(config, backend_provider=provider) for mode, config in configs.items()}
    try:
        for package, repo in repos.items():
            for task in (t for t in tasks if t.package == package):
                row = {"task": asdict(task)}
                for mode in MODES:
                    answer = ask_until_first_block(coders[mode], task.request, repo=repo,
                                                   use_rag=mode != "none")
                    row[mode] = {"reuses": reuses(answer.text, task.helper),
                                 "ttft_ms": answer.timings["ttft_ms"],
                                 "prompt_tokens": answer.timings["prompt_tokens"],
                                 "sources": [s.citation for s in answer.sources],
                                 "not_used": [s.citation for s in answer.unused_sources],
                                 "answer": answer.text}
                with out.open("a", encoding="utf-8") as stream:
                    stream.write(json.dumps(row) + "\n")
                print(f"{task.package}.{task.name} (helper {task.helper}): " + ", ".join(
                    f"{mode} {'reuses' if row[mode]['reuses'] else '-'} {row[mode]['ttft_ms'] / 1000:.1f}s "
                    f"{row[mode]['prompt_tokens']}tok" for mode in MODES), file=sys.stderr)
    finally:
        for coder in coders.values():
            coder.close()
        provider.close()


def report(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = list({row["task"]["package"] + "." + row["task"]["name"]: row for row in rows}.values())
    print(f"{len(rows)} tasks from {', '.join(sorted({r['task']['package'] for r in rows}))}")
    print("| mode | reuse rate | median TTFT | median context tokens | mean context tokens |")
    print("|---|---|---|---|---|")
    context = {mode: [r[mode]["prompt_tokens"] - r["none"]["prompt_tokens"] for r in rows] for mode in MODES}
    for mode in MODES:
        rate = sum(r[mode]["reuses"] for r in rows) / max(len(rows), 1)
        ttft = median([r[mode]["ttft_ms"] / 1000 for r in rows])
        mean = sum(context[mode]) / max(len(rows), 1)
        print(f"| {mode} | {rate:.3f} | {ttft:.1f} s | {median(context[mode]):.0f} | {mean:.0f} |")
    whole = sum(context["whole"])
    if whole:
        print(f"compact / whole context tokens: {sum(context['compact']) / whole:.2f}; "
              f"TTFT ratio compact / whole (median of per-task ratios): "
              f"{median([r['compact']['ttft_ms'] / r['whole']['ttft_ms'] for r in rows]):.2f}; "
              f"none / whole: {median([r['none']['ttft_ms'] / r['whole']['ttft_ms'] for r in rows]):.2f}")
    gated = sum(not r["whole"]["sources"] for r in rows)
    print(f"tasks the relevance gate gave no code: {gated}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="0:", help="slice of the task list, e.g. 0:6")
    parser.add_argument("--out", type=Path, default=Path("/tmp/reuse_bench.jsonl"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/reuse-bench"))
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--prepare", action="store_true", help="only copy and index the packages")
    parser.add_argument("--report", type=Path)
    args = parser.parse_args(argv)
    if args.report:
        report(args.report)
        return 0
    tasks = all_tasks()
    start, _, end = args.tasks.partition(":")
    chosen = tasks[int(start or 0): int(end) if end else None]
    if args.list:
        for number, task in enumerate(tasks):
            print(f"{number:3} {task.package}.{task.name} -> {task.helper}: {task.request}")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["HYBRID_LLM_HOME"] = str(args.work / "home")
    if args.prepare:
        prepare(list(PACKAGES), args.work, _configs(load_config(), args.work / "index")["whole"])
        return 0
    started = time.perf_counter()
    run(chosen, args.work, args.out)
    print(f"{len(chosen)} tasks in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
