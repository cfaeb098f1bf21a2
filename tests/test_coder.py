"""`Coder.ask` end to end on real parts: a repository written to disk, the real index and
hybrid retriever, the tiny Qwen2 (built locally) as the model, and the real request log."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hybrid_llm.coder import Coder
from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.finetune.request_log import RequestLog
from hybrid_llm.llm.provider import BackendProvider
from hybrid_llm.net.passage import WebPassage
from tests.llm.conftest import tiny_model_dir  # noqa: F401 - the shared session fixture

TIMING_KEYS = {"retrieval_ms", "prompt_tokens", "ttft_ms", "completion_tokens", "decode_tok_per_s", "total_ms"}

REPO_FILES = {
    "billing/tax.py": '''"""Tax rules."""


def vat(amount: float, rate: float = 0.2) -> float:
    """Value added tax on a net amount, rounded to cents."""
    return round(amount * rate, 2)


def gross(amount: float) -> float:
    return round(amount + vat(amount), 2)
''',
    "billing/invoice.py": '''from billing.tax import gross


class Invoice:
    def __init__(self, lines):
        self.lines = lines

    def total(self) -> float:
        return gross(sum(price for _, price in self.lines))
''',
    "README.md": "# Shop\n\nA tiny shop.\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    for rel, text in REPO_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def provider(tiny_model_dir: Path) -> BackendProvider:
    """One loaded model for the whole module; each test has its own Coder and conversation."""
    return BackendProvider(Config.model_validate({"model": {"path": str(tiny_model_dir), "n_ctx": 2048}}))


@pytest.fixture
def config(tiny_model_dir: Path) -> Config:
    return Config.model_validate({
        "model": {"path": str(tiny_model_dir), "n_ctx": 2048},
        "generation": {"max_tokens": 24, "temperature": 0.0},
        "rag": {"max_results": 4},
    })


def test_ask_retrieves_streams_times_and_logs(config: Config, provider: BackendProvider, repo: Path):
    log = RequestLog.from_config(config)
    coder = Coder(config, backend_provider=provider, request_log=log)
    pieces: list[str] = []

    answer = coder.ask("compute the gross amount with vat", repo=repo, on_token=pieces.append)

    assert answer.text and "".join(pieces) == answer.text
    assert answer.sources, "retrieved chunks were put in the prompt"
    for source in answer.sources:
        lines = (repo / source.path).read_text().splitlines()
        assert 1 <= source.start_line <= source.end_line <= len(lines)
    assert any(s.path == "billing/tax.py" for s in answer.sources)
    assert TIMING_KEYS <= set(answer.timings)
    assert 0 < answer.timings["ttft_ms"] <= answer.timings["total_ms"]
    assert answer.timings["prompt_tokens"] > 50
    assert answer.timings["completion_tokens"] > 0
    assert not answer.cancelled
    logged = [entry for entry in log.entries() if entry.id == answer.request_id]
    assert len(logged) == 1
    prompt_text = logged[0].messages[-2]["content"]
    for source in answer.sources:
        assert f"### {source.citation}\n" in prompt_text, "sources are exactly what the prompt showed"


def test_conversation_carries_over_and_clear_forgets_it(config: Config, provider: BackendProvider):
    log = RequestLog.from_config(config)
    coder = Coder(config, backend_provider=provider, request_log=log)
    first = coder.ask("write a function that adds two numbers", repo=None)
    second = coder.ask("now make it subtract", repo=None)

    messages = {entry.id: entry.messages for entry in log.entries()}[second.request_id]
    assert [m["content"] for m in messages[1:3]] == ["write a function that adds two numbers", first.text]
    assert len(coder.history) == 2
    coder.clear()
    assert coder.history == ()


def test_no_rag_means_no_retrieval_and_no_sources(config: Config, provider: BackendProvider, repo: Path):
    answer = Coder(config, backend_provider=provider).ask("compute vat", repo=repo, use_rag=False)
    assert answer.sources == [] and answer.timings["retrieval_ms"] == 0


def test_web_passages_are_cited_by_url(config: Config, provider: BackendProvider):
    passage = WebPassage("https://docs.python.org/3/library/decimal.html", "decimal", "Use Decimal for money.")
    answer = Coder(config, backend_provider=provider).ask("round money safely", repo=None, web_passages=[passage])
    assert answer.web_sources == ["https://docs.python.org/3/library/decimal.html"]


def test_cancel_keeps_the_partial_answer(config: Config, provider: BackendProvider):
    config.generation.max_tokens = 1000
    coder = Coder(config, backend_provider=provider)
    pieces: list[str] = []

    def on_token(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            threading.Thread(target=coder.cancel).start()

    answer = coder.ask("write a long story", repo=None, on_token=on_token)

    assert answer.cancelled
    assert answer.text == "".join(pieces) and len(pieces) >= 3
    assert answer.timings["completion_tokens"] < 200
    again = coder.ask("and now?", repo=None)
    assert not again.cancelled and again.text


def test_missing_model_is_a_user_error_naming_models_pull(tmp_path: Path):
    config = Config.model_validate({"model": {"path": str(tmp_path / "gone.gguf")}})
    with pytest.raises(UserError, match="hybrid-llm models pull"):
        Coder(config).ask("hello", repo=None)


def test_index_is_refreshed_before_each_request(config: Config, provider: BackendProvider, repo: Path):
    coder = Coder(config, backend_provider=provider)
    coder.ask("compute vat", repo=repo)
    (repo / "billing" / "shipping.py").write_text(
        "def shipping_cost(weight_kg: float) -> float:\n    return round(4.5 + 1.2 * weight_kg, 2)\n"
    )

    answer = coder.ask("shipping_cost for a parcel by weight", repo=repo)

    assert "billing/shipping.py" in {source.path for source in answer.sources}
    coder.close()
