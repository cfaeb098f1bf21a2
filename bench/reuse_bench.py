"""Reuse rate: does the answer call the codebase's own helper instead of re-writing it?

Tasks come from real packages installed here (not click, jinja2 or pygments, which the
retrieval benchmark uses): top-level functions with a docstring that call another top-level
function of the same package (the helper). Each package is copied with its task functions
removed and indexed for real; each task is asked `/code`-style, by its signature and its
docstring's first sentence, through the real `Coder` and the default model. An answer reuses
when its code calls the helper and does not define it (`reuses`, read from the syntax tree).

Three modes per task, interleaved so load changes hit them alike: `whole` (retrieved chunks
as whole bodies), `compact` (the best chunk whole, the rest as outlines) and `none` (no
retrieval). Reported per mode: reuse rate, median time to first token, median context tokens
(prompt tokens minus the same request's prompt tokens without retrieval). Greedy decoding;
answers are cut at their first complete code block or MAX_ANSWER_TOKENS (bench/ask_harness.py).

A run stops starting tasks after `--budget` seconds, so each stays short on a shared 2-core
machine; every finished task is appended to a JSON-lines file, and the next run resumes with
the tasks not in it (exit status 3 while some are left):
    until flock /work/coord/cpu.lock .venv/bin/python bench/reuse_bench.py --out r.jsonl; \
        do [ $? = 3 ] || break; done
    .venv/bin/python bench/reuse_bench.py --report r.jsonl
`--list` prints the tasks without running the model; `--packages` picks other packages.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
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
from retrieval_bench import DEFAULT_CACHE, CachingEmbedder  # noqa: E402

from hybrid_llm.config import Config, load_config  # noqa: E402

PACKAGES = ("httpx", "urllib3", "packaging", "dateutil", "tqdm", "markdown_it", "jsonschema", "pathspec")
TASKS_PER_PACKAGE = 6
MODES = ("whole", "compact", "none")
# Enough for an answer to reach its call of the helper (of 7 calls in 78 answers of up to 512
# tokens, 6 came within the first 230); the rest is never graded and costs minutes on 2 cores.
MAX_ANSWER_TOKENS = 256
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
    text = re.sub(r",?\s*\)", ")", re.sub(r"\(\s+", "(", text))  # as if written on one line
    return text.removesuffix(":").removeprefix("async ").removeprefix("def ").strip()


def _first_sentence(docstring: str) -> str:
    """The docstring's first sentence; a full stop followed by a lower-case word
    (`e.g. logging`) does not end it."""
    text = " ".join(inspect.cleandoc(docstring).split("\n\n")[0].split())
    return re.split(r"(?<=[.!?])\s+(?=[^a-z])", text)[0].strip()


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
        # A grammar rule, a bare name or a deprecation notice (`.. deprecated::`) is no
        # request a user would type.
        if (len(sentence.split()) < 4 or "=" in sentence or sentence.startswith("..")
                or not 4 <= length <= 60):
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


def all_tasks(packages: tuple[str, ...] = PACKAGES) -> list[Task]:
    return [task for package in packages for task in find_tasks(package, TASKS_PER_PACKAGE)]


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
    """The answer's code uses `helper` (calls it, or passes it: `key=helper`; plainly or as an
    attribute, `tz.enfold(...)`) and does not define it. Read from the syntax tree, so a name
    in a comment, a string or an import alone does not count; an answer cut off mid-statement
    (at max_tokens) is judged by its longest leading part that parses."""
    tree = _parse_longest_prefix(first_code_block(answer))
    used = defined = False
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined |= node.name == helper
        elif isinstance(node, ast.Name) and node.id == helper:
            used |= isinstance(node.ctx, ast.Load)
            defined |= isinstance(node.ctx, ast.Store)
        elif isinstance(node, ast.Attribute) and node.attr == helper:
            used |= isinstance(node.ctx, ast.Load)
    return used and not defined


def _parse_longest_prefix(code: str) -> ast.Module:
    lines = code.split("\n")
    for end in range(len(lines), 0, -1):
        try:
            return ast.parse("\n".join(lines[:end]))
        except SyntaxError:
            continue
    return ast.Module(body=[], type_ignores=[])


def _configs(base: Config, index_dir: Path) -> dict[str, Config]:
    configs = {}
    for mode in MODES:
        config = base.model_copy(deep=True)
        config.rag.index_dir = str(index_dir)
        config.rag.compact_context = mode == "compact"
        config.generation.temperature = 0.0
        config.generation.max_tokens = MAX_ANSWER_TOKENS
        configs[mode] = config
    return configs


def prepare(tasks: list[Task], work: Path, config: Config) -> dict[str, Path]:
    """Each package's copy without its tasks, indexed (embeddings through the shared cache,
    so the coders find the index up to date and re-runs embed nothing)."""
    from hybrid_llm.rag.embedder import default_embedder
    from hybrid_llm.rag.index import CodeIndex

    embedder = CachingEmbedder(default_embedder(), DEFAULT_CACHE)
    by_package: dict[str, list[Task]] = {}
    for task in tasks:
        by_package.setdefault(task.package, []).append(task)
    repos = {}
    for package, package_tasks in by_package.items():
        repos[package] = build_copy(package, package_tasks, work / "repos" / package).resolve()
        index = CodeIndex.open(repos[package], config, embedder=embedder)
        index.update()
        index.close()
    return repos


def _key(task: dict | Task) -> str:
    task = task if isinstance(task, dict) else asdict(task)
    return f"{task['package']}.{task['name']}"


def _done(out: Path) -> set[str]:
    if not out.exists():
        return set()
    return {_key(json.loads(line)["task"]) for line in out.read_text().splitlines() if line.strip()}


def run(tasks: list[Task], every: list[Task], work: Path, out: Path, budget_s: float) -> int:
    """Runs the `tasks` not yet in `out`, appending one line per task, until `budget_s` has
    passed; returns how many are still to run. `every` task of their packages is removed
    from the copies, whichever slice runs."""
    from hybrid_llm.coder import Coder
    from hybrid_llm.llm.provider import BackendProvider

    started = time.perf_counter()
    todo = [task for task in tasks if _key(task) not in _done(out)]
    if not todo:
        return 0
    configs = _configs(load_config(), work / "index")
    provider = BackendProvider(configs["whole"])
    provider.start_loading()
    packages = {task.package for task in todo}
    repos = prepare([task for task in every if task.package in packages], work, configs["whole"])
    coders = {mode: Coder(config, backend_provider=provider) for mode, config in configs.items()}
    try:
        for left, task in enumerate(todo):
            if time.perf_counter() - started > budget_s:
                return len(todo) - left
            row = {"task": asdict(task)}
            for mode in MODES:
                answer = ask_until_first_block(coders[mode], task.request, repo=repos[task.package],
                                               use_rag=mode != "none")
                row[mode] = {"reuses": reuses(answer.text, task.helper),
                             "ttft_ms": answer.timings["ttft_ms"],
                             "prompt_tokens": answer.timings["prompt_tokens"],
                             "sources": [s.citation for s in answer.sources],
                             "not_used": [s.citation for s in answer.unused_sources],
                             "answer": answer.text}
            with out.open("a", encoding="utf-8") as stream:
                stream.write(json.dumps(row) + "\n")
            print(f"{_key(task)} (helper {task.helper}): " + ", ".join(
                f"{mode} {'reuses' if row[mode]['reuses'] else '-'} {row[mode]['ttft_ms'] / 1000:.1f}s "
                f"{row[mode]['prompt_tokens']}tok" for mode in MODES), file=sys.stderr)
    finally:
        for coder in coders.values():
            coder.close()
        provider.close()
    return 0


def report(path: Path, work: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = list({_key(row["task"]): row for row in rows}.values())
    print(f"{len(rows)} tasks from {', '.join(sorted({r['task']['package'] for r in rows}))}")
    print("| mode | reuse rate | helper in the prompt | reuse when shown | median TTFT "
          "| median context tokens | mean context tokens |")
    print("|---|---|---|---|---|---|---|")
    context = {mode: [r[mode]["prompt_tokens"] - r["none"]["prompt_tokens"] for r in rows] for mode in MODES}
    places = {_key(r["task"]): _definitions(work / "repos" / r["task"]["package"], r["task"]["helper"])
              for r in rows}
    for mode in MODES:
        reused = sum(r[mode]["reuses"] for r in rows)
        shown = [r for r in rows if _shows(r[mode]["sources"], places[_key(r["task"])])]
        ttft = median([r[mode]["ttft_ms"] / 1000 for r in rows])
        mean = sum(context[mode]) / max(len(rows), 1)
        print(f"| {mode} | {reused}/{len(rows)} | {len(shown)} | {sum(r[mode]['reuses'] for r in shown)}"
              f"/{len(shown)} | {ttft:.1f} s | {median(context[mode]):.0f} | {mean:.0f} |")
    whole = sum(context["whole"])
    if whole:
        print(f"compact / whole context tokens: {sum(context['compact']) / whole:.2f}; "
              f"TTFT ratio compact / whole (median of per-task ratios): "
              f"{median([r['compact']['ttft_ms'] / r['whole']['ttft_ms'] for r in rows]):.2f}; "
              f"none / whole: {median([r['none']['ttft_ms'] / r['whole']['ttft_ms'] for r in rows]):.2f}")
    gated = sum(not r["whole"]["sources"] for r in rows)
    print(f"tasks the relevance gate gave no code: {gated}")


def _definitions(repo: Path, name: str) -> set[tuple[str, int]]:
    """Where the package copy defines the top-level function `name`: (path, line of `def`)."""
    found = set()
    for path in sorted(repo.rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        found |= {(path.relative_to(repo).as_posix(), node.lineno) for node in tree.body
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name}
    return found


def _shows(citations: list[str], places: set[tuple[str, int]]) -> bool:
    """Whether one of the `path:start-end` citations covers one of the places."""
    for citation in citations:
        path, _, span = citation.rpartition(":")
        start, _, end = span.partition("-")
        if any(place == path and int(start) <= line <= int(end) for place, line in places):
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES))
    parser.add_argument("--tasks", default="0:", help="slice of the task list, e.g. 0:6")
    parser.add_argument("--out", type=Path, default=Path("/tmp/reuse_bench.jsonl"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/reuse-bench"))
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds after which no new task starts (the run resumes next time)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--prepare", action="store_true", help="only copy and index the packages")
    parser.add_argument("--report", type=Path)
    args = parser.parse_args(argv)
    if args.report:
        report(args.report, args.work)
        return 0
    tasks = all_tasks(tuple(args.packages))
    start, _, end = args.tasks.partition(":")
    chosen = tasks[int(start or 0): int(end) if end else None]
    if args.list:
        for number, task in enumerate(tasks):
            print(f"{number:3} {task.package}.{task.name} -> {task.helper}: {task.request}")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["HYBRID_LLM_HOME"] = str(args.work / "home")
    if args.prepare:
        prepare(tasks, args.work, _configs(load_config(), args.work / "index")["whole"])
        return 0
    started = time.perf_counter()
    left = run(chosen, tasks, args.work, args.out, args.budget)
    print(f"{time.perf_counter() - started:.0f}s; {left} tasks left (run again to resume)", file=sys.stderr)
    return 3 if left else 0


if __name__ == "__main__":
    raise SystemExit(main())
