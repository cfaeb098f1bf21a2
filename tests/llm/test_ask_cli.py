"""`hybrid-llm ask` through the real command line entry point: the tiny Qwen2 (built locally) for
the output shapes and errors, the real default model end to end on a small repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hybrid_llm.cli import main


def use_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: dict) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": model, "generation": {"max_tokens": 16, "temperature": 0}}))
    monkeypatch.setenv("HYBRID_LLM_CONFIG", str(path))


def test_json_output_has_the_documented_shape(tiny_model_dir: Path, tmp_path: Path, monkeypatch, capsys):
    use_config(tmp_path, monkeypatch, {"path": str(tiny_model_dir)})

    status = main(["ask", "write hello world in python", "--json", "--no-rag"])

    out = json.loads(capsys.readouterr().out)
    assert status == 0
    assert set(out) == {"answer", "sources", "not_used", "timings"}
    assert out["answer"] and out["sources"] == [] and out["not_used"] == []
    assert set(out["timings"]) == {"retrieval_ms", "prompt_tokens", "ttft_ms", "completion_tokens",
                                   "decode_tok_per_s", "total_ms"}
    assert out["timings"]["completion_tokens"] > 0


def test_plain_output_streams_the_answer(tiny_model_dir: Path, tmp_path: Path, monkeypatch, capsys):
    use_config(tmp_path, monkeypatch, {"path": str(tiny_model_dir)})

    assert main(["ask", "write hello world", "--no-rag"]) == 0

    captured = capsys.readouterr()
    assert captured.out.strip()
    assert "Sources:" not in captured.out


def test_missing_model_is_one_line_naming_models_pull(tmp_path: Path, monkeypatch, capsys):
    use_config(tmp_path, monkeypatch, {"name": "qwen2.5-coder-7b-instruct-q4_k_m"})
    monkeypatch.setattr("hybrid_llm.llm.models.models_dir", lambda: tmp_path / "models")

    status = main(["ask", "hello", "--no-rag"])

    err = capsys.readouterr().err.strip()
    assert status == 1
    assert err.startswith("error: ") and "\n" not in err
    assert "hybrid-llm models pull" in err


def test_corrupt_model_is_one_line_naming_models_pull(tmp_path: Path, monkeypatch, capsys):
    fake = tmp_path / "half.gguf"
    fake.write_bytes(b"GGUF" + b"\0" * 64)  # right magic, truncated download
    use_config(tmp_path, monkeypatch, {"path": str(fake)})

    status = main(["ask", "hello", "--no-rag"])

    err = capsys.readouterr().err.strip()
    assert status == 1 and "\n" not in err
    assert "hybrid-llm models pull" in err


SHOP_REPO = {
    "shop/pricing.py": '''"""Prices and discounts."""


def apply_discount(price: float, percent: float) -> float:
    """Price after a percentage discount, rounded to cents."""
    if not 0 <= percent <= 100:
        raise ValueError("percent must be between 0 and 100")
    return round(price * (1 - percent / 100), 2)
''',
    "shop/cart.py": '''from shop.pricing import apply_discount


class Cart:
    def __init__(self) -> None:
        self.items: list[tuple[str, float]] = []

    def add(self, name: str, price: float) -> None:
        self.items.append((name, price))

    def subtotal(self) -> float:
        return round(sum(price for _, price in self.items), 2)
''',
}
CITATION = re.compile(r"([\w./-]+\.py):(\d+)-(\d+)")


@pytest.mark.slow
def test_real_model_answers_with_code_and_cites_only_real_sources(default_model_file, tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    for rel, text in SHOP_REPO.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"generation": {"max_tokens": 256, "temperature": 0}}))
    monkeypatch.setenv("HYBRID_LLM_CONFIG", str(path))

    status = main(["ask", "Add a Cart.total(percent) method that applies a discount to the subtotal.",
                   "--repo", str(repo), "--json"])

    out = json.loads(capsys.readouterr().out)
    assert status == 0
    assert "```" in out["answer"], out["answer"]
    assert out["sources"], "retrieval put code in the prompt"
    cited = [(m[1], int(m[2]), int(m[3])) for m in CITATION.finditer(out["answer"])]
    cited += [(s["path"], s["start_line"], s["end_line"]) for s in out["sources"]]
    for rel, start, end in cited:
        assert (repo / rel).is_file(), f"{rel} cited but not in the repo"
        assert 1 <= start <= end <= len((repo / rel).read_text().splitlines())
    assert out["timings"]["ttft_ms"] > 0 and out["timings"]["completion_tokens"] > 0
