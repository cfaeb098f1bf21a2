"""Subcommands of the fine-tuning area: `dataset build`."""

from __future__ import annotations

import argparse
from pathlib import Path

from hybrid_llm.config import load_config
from hybrid_llm.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    dataset = subparsers.add_parser("dataset", help="build fine-tuning datasets")
    actions = dataset.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="write train/validation JSONL (TRL prompt-completion) for the Colab notebook",
        description="Examples come from answers rated /good (--from-log) and from "
        "'implement this function' tasks mined from a codebase (--from-code PATH).",
    )
    build.add_argument("--from-log", action="store_true", help="use answers rated /good")
    build.add_argument("--from-code", type=Path, metavar="PATH", help="mine function tasks from PATH")
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    build.add_argument("--validation-fraction", type=float, default=0.1, metavar="F",
                       help="share of examples held out for validation (default 0.1)")
    build.add_argument("--max-code-examples", type=int, default=5000, metavar="N",
                       help="cap on tasks mined from code (default 5000)")
    build.add_argument("--max-length", type=int, default=2048, metavar="TOKENS",
                       help="training max_length, to report how many examples exceed it (default 2048)")
    build.set_defaults(func=cmd_build)


def cmd_build(args: argparse.Namespace) -> int:
    from hybrid_llm.finetune.code_tasks import examples_from_code
    from hybrid_llm.finetune.dataset import (
        examples_from_log,
        require_examples,
        token_counter,
        write_dataset,
    )
    from hybrid_llm.finetune.request_log import RequestLog

    if not args.from_log and args.from_code is None:
        raise UserError("nothing to build from: pass --from-log, --from-code PATH, or both")
    if not 0 <= args.validation_fraction < 1:
        raise UserError("--validation-fraction must be at least 0 and below 1")
    config = load_config()
    examples = []
    if args.from_log:
        examples += examples_from_log(RequestLog.from_config(config))
    if args.from_code is not None:
        if not args.from_code.is_dir():
            raise UserError(f"--from-code {args.from_code}: not a directory")
        examples += examples_from_code(args.from_code, config, max_examples=args.max_code_examples)
    require_examples(examples)  # before loading a vocabulary to count tokens with
    count_tokens, tokenizer_name = token_counter(config)
    summary = write_dataset(
        examples,
        args.out,
        count_tokens=count_tokens,
        tokenizer_name=tokenizer_name,
        validation_fraction=args.validation_fraction,
        max_length=args.max_length,
    )
    print(summary.describe())
    return 0
