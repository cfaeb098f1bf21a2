"""`hybrid-llm engine check` (the smoke test in a child) and `hybrid-llm engine install`."""

from __future__ import annotations

import argparse

from hybrid_llm.errors import UserError


def engine_verdict() -> tuple[bool, str]:
    """(ok, one line): the installed engine, how it was built, and its measured speed or crash."""
    from hybrid_llm.config import load_config
    from hybrid_llm.llm.base import choose_backend
    from hybrid_llm.llm.engine_build import read_record
    from hybrid_llm.llm.engine_check import run_smoke_test
    from hybrid_llm.llm.engine_info import describe_engine

    engine = describe_engine()
    if engine is None:
        return False, "neither llama-cpp-python nor xllamacpp is installed"
    record = read_record()
    built = f"; {record.description}" if record else ""
    try:
        entry, _path = choose_backend(load_config())
    except UserError as exc:
        return True, f"{engine}{built}; not run: {exc}"
    if entry.name != "llama_cpp":
        return True, f"{engine}{built}; not used (model.backend is {entry.name})"
    smoke = run_smoke_test()
    if record and smoke.ok:  # the batch check is the install's (it takes ~15 s): its verdict
        smoke = smoke.with_batch_check_of(record.smoke)
    return smoke.ok, f"{engine}{built}; {smoke.line()}"


def cmd_engine_check(args: argparse.Namespace) -> int:
    ok, line = engine_verdict()
    print(("✔ " if ok else "✘ ") + line)
    return 0 if ok else 1


def cmd_engine_install(args: argparse.Namespace) -> int:
    from hybrid_llm.llm.engine_build import ensure_engine

    try:
        record = ensure_engine(first=args.flavor)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    print(f"engine: {record.description} ({record.reason})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    engine = subparsers.add_parser("engine", help="check or (re)install the llama.cpp engine")
    actions = engine.add_subparsers(dest="engine_command", metavar="ACTION", required=True)
    actions.add_parser(
        "check", help="load the model in a child process, generate a few tokens, report speed or crash"
    ).set_defaults(func=cmd_engine_check)
    install = actions.add_parser(
        "install", help="install the fastest llama.cpp build that passes the smoke test on this CPU"
    )
    install.add_argument("--flavor", choices=("native", "portable", "prebuilt"), default="native",
                         help="the first build to try (later ones are tried if it fails); default native")
    install.set_defaults(func=cmd_engine_install, outside_sandbox=True)  # pip downloads: the sandbox has no network
