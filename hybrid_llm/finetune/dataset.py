"""Training datasets in TRL's conversational prompt-completion format, from real use and real code.

Each JSONL line is `{"prompt": [system, user], "completion": [assistant]}` with ChatML roles, the
shape `trl.SFTTrainer` takes directly (it then computes the loss on the completion only). Examples
come from answers the user rated good (the exact messages the model saw) and from the user's
codebase: "implement this function" tasks whose completion is the real body. The split is by a
hash of each example, so rebuilding after the data grows keeps old examples on the same side and
validation loss stays comparable between runs.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.finetune.request_log import RequestLog
from hybrid_llm.llm.prompt import MESSAGE_OVERHEAD_TOKENS, SYSTEM_PROMPT

TRAIN_FILE = "train.jsonl"
VALIDATION_FILE = "validation.jsonl"
INFO_FILE = "dataset_info.json"


@dataclass(frozen=True)
class Example:
    """One prompt-completion pair; `origin` says where it came from (request id or path:lines)."""

    prompt: list[dict]
    completion: list[dict]
    origin: str

    def to_json(self) -> dict:
        return {"prompt": self.prompt, "completion": self.completion}

    @property
    def key(self) -> str:
        """Identity for deduplication: the content with whitespace runs collapsed."""
        text = json.dumps([m["content"] for m in self.prompt + self.completion], ensure_ascii=False)
        return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def examples_from_log(log: RequestLog) -> list[Example]:
    """Answers rated good, with the exact prompt messages the model was given."""
    examples = []
    for entry in log.entries():
        if entry.label != "good" or not entry.answer.strip():
            continue
        prompt = [
            {"role": m["role"], "content": m["content"]}
            for m in entry.messages
            if m.get("role") in ("system", "user", "assistant") and isinstance(m.get("content"), str)
        ]
        while prompt and prompt[-1]["role"] == "assistant":
            prompt.pop()  # the Coder logs the answer as the last message; it is the completion here
        if not prompt or prompt[-1]["role"] != "user":
            prompt = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": entry.prompt}]
        completion = [{"role": "assistant", "content": entry.answer}]
        examples.append(Example(prompt, completion, f"log:{entry.id}"))
    return examples


@dataclass(frozen=True)
class SplitDataset:
    train: list[Example]
    validation: list[Example]
    duplicates: int


def deduplicate(examples: list[Example]) -> tuple[list[Example], int]:
    """Keep the first of each set of identical examples; return them and how many were dropped."""
    seen: set[str] = set()
    kept = []
    for example in examples:
        if example.key not in seen:
            seen.add(example.key)
            kept.append(example)
    return kept, len(examples) - len(kept)


def split(examples: list[Example], validation_fraction: float) -> SplitDataset:
    """Deterministic split by example hash; at least one validation example once there are two."""
    unique, duplicates = deduplicate(examples)
    threshold = int(validation_fraction * 10_000)
    validation = [e for e in unique if int(e.key[:8], 16) % 10_000 < threshold]
    if not validation and len(unique) >= 2 and validation_fraction > 0:
        validation = [min(unique, key=lambda e: e.key)]
    chosen = {e.key for e in validation}
    train = [e for e in unique if e.key not in chosen]
    return SplitDataset(train, validation, duplicates)


@dataclass
class TokenStats:
    count: int
    mean: float
    p50: int
    p95: int
    max: int

    @classmethod
    def of(cls, lengths: list[int]) -> TokenStats:
        if not lengths:
            return cls(0, 0.0, 0, 0, 0)
        ordered = sorted(lengths)
        return cls(
            len(ordered),
            round(statistics.fmean(ordered), 1),
            ordered[len(ordered) // 2],
            ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
            ordered[-1],
        )

    def describe(self) -> str:
        return f"mean {self.mean:.0f}, p50 {self.p50}, p95 {self.p95}, max {self.max}"


@dataclass
class DatasetSummary:
    out_dir: Path
    train: int
    validation: int
    duplicates: int
    by_origin: dict[str, int]
    prompt_tokens: TokenStats
    completion_tokens: TokenStats
    over_max_length: int
    max_length: int
    tokenizer: str
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        origins = ", ".join(f"{n} from {o}" for o, n in sorted(self.by_origin.items()))
        lines = [
            f"wrote {self.train} train + {self.validation} validation examples to {self.out_dir} "
            f"({origins}; {self.duplicates} duplicates dropped)",
            f"prompt tokens: {self.prompt_tokens.describe()}",
            f"completion tokens: {self.completion_tokens.describe()}",
            f"{self.over_max_length} examples longer than max_length {self.max_length} (training "
            f"truncates them, and skips those whose prompt alone fills it); tokens counted with "
            f"{self.tokenizer}",
        ]
        return "\n".join(lines + self.notes)


def _message_tokens(messages: list[dict], count_tokens: Callable[[str], int]) -> int:
    return sum(count_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def require_examples(examples: list[Example]) -> None:
    if not examples:
        raise UserError("no examples: rate answers with /good, or pass --from-code PATH")


def write_dataset(
    examples: list[Example],
    out_dir: Path,
    *,
    count_tokens: Callable[[str], int],
    tokenizer_name: str,
    validation_fraction: float = 0.1,
    max_length: int = 2048,
) -> DatasetSummary:
    """Deduplicate, split and write `train.jsonl`, `validation.jsonl` and `dataset_info.json`."""
    require_examples(examples)
    data = split(examples, validation_fraction)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in ((TRAIN_FILE, data.train), (VALIDATION_FILE, data.validation)):
        tmp = out_dir / f".{name}.tmp"
        with tmp.open("w", encoding="utf-8") as handle:
            for example in part:
                handle.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
        tmp.replace(out_dir / name)
    kept = data.train + data.validation
    prompt_lengths = [_message_tokens(e.prompt, count_tokens) for e in kept]
    completion_lengths = [_message_tokens(e.completion, count_tokens) for e in kept]
    by_origin: dict[str, int] = {}
    for example in kept:
        origin = example.origin.split(":", 1)[0]
        by_origin[origin] = by_origin.get(origin, 0) + 1
    summary = DatasetSummary(
        out_dir=out_dir,
        train=len(data.train),
        validation=len(data.validation),
        duplicates=data.duplicates,
        by_origin=by_origin,
        prompt_tokens=TokenStats.of(prompt_lengths),
        completion_tokens=TokenStats.of(completion_lengths),
        over_max_length=sum(p + c > max_length for p, c in zip(prompt_lengths, completion_lengths, strict=True)),
        max_length=max_length,
        tokenizer=tokenizer_name,
    )
    info = {
        "format": "trl-conversational-prompt-completion",
        "train": summary.train,
        "validation": summary.validation,
        "duplicates": summary.duplicates,
        "by_origin": by_origin,
        "prompt_tokens": vars(summary.prompt_tokens),
        "completion_tokens": vars(summary.completion_tokens),
        "max_length": max_length,
        "over_max_length": summary.over_max_length,
        "tokenizer": tokenizer_name,
    }
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return summary


def _llama_cpp_vocab(path: Path):
    """Load only the vocabulary of a GGUF model (no weights, no context; well under a second)."""
    import logging

    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    # llama-cpp-python maps llama.cpp's warnings to ERROR, so only CRITICAL keeps the load quiet.
    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    finally:
        logger.setLevel(level)
    if not model:
        raise ValueError(f"llama.cpp cannot read {path}")
    return model, llama_cpp.llama_model_get_vocab(model)


def token_counter(config: Config) -> tuple[Callable[[str], int], str]:
    """Count with the configured model's own vocabulary when it is installed, else estimate."""
    try:
        import llama_cpp

        from hybrid_llm.llm.models import resolve_model_path

        path = resolve_model_path(config)
        if path.is_file():
            model, vocab = _llama_cpp_vocab(path)

            def count(text: str, _model=model) -> int:  # _model keeps the vocabulary alive
                data = text.encode("utf-8")
                # With no room for tokens, llama_tokenize returns minus the count it needs.
                return -llama_cpp.llama_tokenize(vocab, data, len(data), None, 0, False, False)

            return count, f"the {path.name} vocabulary"
    except (ImportError, UserError, ValueError):
        pass
    estimate = "an estimate of 4 characters per token (llama.cpp or the model is not installed)"
    return (lambda text: (len(text) + 3) // 4), estimate
