"""Dataset builder output: TRL's conversational prompt-completion format, split, dedup, stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_llm.errors import UserError
from hybrid_llm.finetune.dataset import (
    INFO_FILE,
    TRAIN_FILE,
    VALIDATION_FILE,
    Example,
    examples_from_log,
    split,
    write_dataset,
)
from hybrid_llm.finetune.request_log import RequestLog


def _example(i: int) -> Example:
    return Example(
        prompt=[{"role": "system", "content": "sys"}, {"role": "user", "content": f"write f{i}"}],
        completion=[{"role": "assistant", "content": f"```python\ndef f{i}():\n    return {i}\n```"}],
        origin=f"code:m.py:{i}-{i + 1}",
    )


def _write(examples, out: Path, **kwargs):
    return write_dataset(examples, out, count_tokens=lambda t: len(t.split()), tokenizer_name="words", **kwargs)


def test_rated_good_answers_become_examples_with_the_messages_the_model_saw(tmp_path):
    log = RequestLog(tmp_path / "requests.jsonl")
    messages = [{"role": "system", "content": "SYSTEM"}, {"role": "user", "content": "ctx + add a cache"}]
    good = log.record(prompt="add a cache", messages=messages, sources=[], answer="use lru_cache",
                      model="m", timings={})
    bad = log.record(prompt="explain", messages=messages, sources=[], answer="no idea", model="m", timings={})
    log.record(prompt="unrated", messages=messages, sources=[], answer="x", model="m", timings={})
    log.rate(good, "good")
    log.rate(bad, "bad")
    (example,) = examples_from_log(log)
    assert example.prompt == messages
    assert example.completion == [{"role": "assistant", "content": "use lru_cache"}]
    assert example.origin == f"log:{good}"


def test_a_logged_answer_message_is_the_completion_not_part_of_the_prompt(tmp_path):
    log = RequestLog(tmp_path / "requests.jsonl")
    sent = [{"role": "system", "content": "SYSTEM"}, {"role": "user", "content": "ctx + add a cache"}]
    request_id = log.record(prompt="add a cache", messages=sent + [{"role": "assistant", "content": "lru"}],
                            sources=[], answer="lru", model="m", timings={})
    log.rate(request_id, "good")
    (example,) = examples_from_log(log)
    assert example.prompt == sent and example.completion[0]["content"] == "lru"


def test_split_is_deterministic_disjoint_and_drops_duplicates():
    examples = [_example(i) for i in range(200)]
    duplicate = Example(
        prompt=[{"role": "system", "content": "sys"}, {"role": "user", "content": "write   f3"}],
        completion=examples[3].completion,
        origin="log:dup",
    )
    first = split(examples + [duplicate], 0.1)
    again = split(list(reversed(examples)), 0.1)
    assert first.duplicates == 1
    assert {e.key for e in first.validation} == {e.key for e in again.validation}
    assert not {e.key for e in first.train} & {e.key for e in first.validation}
    assert len(first.train) + len(first.validation) == 200
    assert 8 <= len(first.validation) <= 35


def test_a_growing_dataset_keeps_old_examples_on_their_side():
    before = split([_example(i) for i in range(100)], 0.1)
    after = split([_example(i) for i in range(300)], 0.1)
    assert {e.key for e in before.validation} <= {e.key for e in after.validation}


def test_small_datasets_still_get_a_validation_example():
    data = split([_example(1), _example(2)], 0.1)
    assert len(data.validation) == 1 and len(data.train) == 1


def test_written_files_and_summary(tmp_path):
    summary = _write([_example(i) for i in range(30)] + [_example(0)], tmp_path / "ds", max_length=12)
    train = [json.loads(line) for line in (tmp_path / "ds" / TRAIN_FILE).read_text().splitlines()]
    validation = (tmp_path / "ds" / VALIDATION_FILE).read_text().splitlines()
    assert len(train) == summary.train and len(validation) == summary.validation
    assert summary.train + summary.validation == 30 and summary.duplicates == 1
    assert set(train[0]) == {"prompt", "completion"}
    info = json.loads((tmp_path / "ds" / INFO_FILE).read_text())
    assert info["by_origin"] == {"code": 30} and info["completion_tokens"]["max"] > 0
    assert "prompt tokens: mean" in summary.describe() and "1 duplicates dropped" in summary.describe()
    assert summary.over_max_length == 30  # every example has more than 12 words


def test_no_examples_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="/good"):
        _write([], tmp_path / "ds")


def test_output_is_what_trl_sft_trainer_trains_on(tmp_path, tiny_model_dir):
    """Load with `datasets`, check TRL's format detection, and run SFTTrainer's own data prep:
    the loss must cover exactly the completion tokens."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    from trl.data_utils import is_conversational

    _write([_example(i) for i in range(20)], tmp_path / "ds")
    data = load_dataset("json", data_files={s: str(tmp_path / "ds" / f"{s}.jsonl") for s in ("train", "validation")})
    assert is_conversational(data["train"][0])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        args=SFTConfig(output_dir=str(tmp_path / "out"), max_length=256, use_cpu=True, bf16=False,
                       activation_checkpointing=False, report_to="none"),
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        processing_class=tokenizer,
    )
    row = trainer.train_dataset[0]
    learned = [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != -100]
    text = tokenizer.decode(learned)
    assert text.startswith("```python\ndef f") and text.rstrip().endswith("```<|im_end|>")
    assert "write f" not in text  # the prompt is context, not a target
    assert len(trainer.eval_dataset) == len(data["validation"])


def test_tokens_are_counted_with_the_configured_models_vocabulary(tiny_model_dir, tiny_gguf):
    from transformers import AutoTokenizer

    from hybrid_llm.config import Config
    from hybrid_llm.finetune.dataset import token_counter

    count, name = token_counter(Config.model_validate({"model": {"path": str(tiny_gguf)}}))
    text = "def area(radius):\n    return 3.14 * radius ** 2\n"
    assert name == "the tiny-qwen2.gguf vocabulary"
    assert count(text) == len(AutoTokenizer.from_pretrained(tiny_model_dir)(text)["input_ids"])


def test_without_a_model_tokens_are_estimated(tmp_path):
    from hybrid_llm.config import Config
    from hybrid_llm.finetune.dataset import token_counter

    count, name = token_counter(Config.model_validate({"model": {"name": "not-installed"}}))
    assert name.startswith("an estimate") and count("x" * 40) == 10
