"""Compact context: lower-ranked chunks reach the model as what a caller needs (signatures,
docstrings, the enclosing class), chunked by the real tree-sitter chunker."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hybrid_llm.coder import Coder
from hybrid_llm.config import load_config
from hybrid_llm.llm.code_outline import outline
from hybrid_llm.llm.prompt import CODE_RULES, PromptBuilder, format_chunk
from hybrid_llm.rag.chunk import RetrievedChunk
from hybrid_llm.rag.chunker import CodeChunker

LEDGER = '''"""Ledger entries."""

CURRENCY = "EUR"


class Ledger:
    """Double-entry book of one account."""

    owner: str

    def post(self, amount: float, memo: str = "") -> None:
        """Record a movement of `amount`.

        Negative amounts are debits.
        """
        entry = (amount, memo)
        self.entries.append(entry)
        self.balance += amount

    @property
    def overdrawn(self) -> bool:
        return self.balance < 0


def parse_amount(text: str) -> float:
    """Read "1.234,50" or "1,234.50" as a float."""
    cleaned = text.replace(" ", "")
    if cleaned.count(",") == 1 and cleaned.rfind(",") > cleaned.rfind("."):
        cleaned = cleaned.replace(".", "").replace(",", ".")
    return float(cleaned.replace(",", ""))
'''


def chunks_of(text: str, max_chars: int = 1200) -> list:
    return CodeChunker(max_chars).chunk("books/ledger.py", text)


def test_outline_keeps_signatures_docstrings_and_class_but_not_bodies():
    shown = "\n".join(outline(chunk) for chunk in chunks_of(LEDGER, max_chars=5000))

    assert 'CURRENCY = "EUR"' in shown
    assert "class Ledger:" in shown and '"""Double-entry book of one account."""' in shown
    assert "owner: str" in shown
    assert "def post(self, amount: float, memo: str = \"\") -> None:" in shown
    assert '"""Record a movement of `amount`."""' in shown, "the docstring's first paragraph"
    assert "Negative amounts" not in shown
    assert "@property" in shown and "def overdrawn(self) -> bool:" in shown
    assert "def parse_amount(text: str) -> float:" in shown
    assert "entries.append" not in shown and "cleaned" not in shown, "bodies are left out"
    assert shown.count("...") == 3


def test_a_method_chunk_is_outlined_inside_its_class():
    method = next(c for c in chunks_of(LEDGER, max_chars=200) if c.symbol == "Ledger.post")
    shown = outline(method)

    assert shown.startswith("class Ledger:\n    def post(")
    assert "self.balance" not in shown


def test_compact_prompt_shows_the_best_chunk_whole_and_fits_more_in_fewer_tokens(tiny_tokenizer):
    count = lambda text: len(tiny_tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    retrieved = [RetrievedChunk(chunk, 1.0 / rank) for rank, chunk in enumerate(chunks_of(LEDGER, 250), 1)
                 if chunk.defines]
    assert [chunk.chunk.symbol for chunk in retrieved] == ["Ledger.post", "Ledger.overdrawn", "parse_amount"]
    whole = PromptBuilder(count, context_length=4096, max_tokens=512).build("fix post", chunks=retrieved)
    compact = PromptBuilder(count, context_length=4096, max_tokens=512, full_chunks=1).build(
        "fix post", chunks=retrieved)

    message = compact.user_message
    first, *rest = retrieved
    assert first.chunk.text in message, "the best-ranked chunk is shown whole"
    for other in rest:
        assert f"### {other.chunk.citation}\n" in message, "outlined chunks keep their citation"
    assert "cleaned = text.replace" not in message and "def parse_amount(text: str) -> float:" in message
    assert len(compact.chunks) == len(whole.chunks) == len(retrieved)
    assert compact.tokens < whole.tokens


def test_a_best_chunk_too_big_to_show_whole_is_outlined_instead_of_dropped(tiny_tokenizer):
    count = lambda text: len(tiny_tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    chunk = next(c for c in chunks_of(LEDGER, 5000) if c.symbol == "Ledger")
    retrieved = [RetrievedChunk(chunk, 1.0)]
    whole, outlined = (count(format_chunk(retrieved[0], whole=flag)) for flag in (True, False))
    cap = count(CODE_RULES) + 4 + (whole + outlined) // 2  # room for the outline, not the class

    built = PromptBuilder(count, context_length=4096, max_tokens=512, full_chunks=1,
                          code_tokens=cap).build("fix post", chunks=retrieved)

    assert built.chunks == retrieved
    assert "def post(" in built.user_message and "self.entries.append" not in built.user_message


def test_an_outline_leaves_out_the_comments_that_open_a_body():
    source = '''def wait_for_socket(
    sock: object,
    timeout: float | None = None,
) -> bool:
    # We delay choosing which implementation to use until the first call,
    # so that monkeypatching select.poll after import still works.

    global wait_for_socket
    return wait_for_socket(sock, timeout)
'''
    shown = "\n".join(outline(chunk) for chunk in chunks_of(source))

    assert shown == "def wait_for_socket(\n    sock: object,\n    timeout: float | None = None,\n) -> bool:\n    ..."


PRICING = '''"""Prices for the shop."""

VAT_RATE = 0.2


def apply_discount(price: float, percent: float) -> float:
    """Return `price` reduced by `percent` (0-100), rounded to cents."""
    return round(price * (1 - percent / 100), 2)


def add_vat(price: float) -> float:
    """Return `price` with VAT added, rounded to cents."""
    return round(price * (1 + VAT_RATE), 2)
'''

CART = '''"""The shopping cart."""

from dataclasses import dataclass, field


@dataclass
class Cart:
    """Items a customer is about to buy, with their unit prices."""

    items: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, price: float) -> None:
        """Put `name` in the cart at `price`."""
        self.items[name] = price

    def subtotal(self) -> float:
        """The sum of the prices in the cart, before discounts and VAT."""
        return round(sum(self.items.values()), 2)
'''


@pytest.mark.slow
def test_the_real_model_calls_helpers_it_was_shown_only_as_outlines(tmp_path: Path, default_model_file: Path):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "pricing.py").write_text(PRICING)
    (tmp_path / "shop" / "cart.py").write_text(CART)
    config = load_config()  # the shipped settings: compact context, the relevance gate
    config.model.path, config.rag.index_dir = str(default_model_file), str(tmp_path / "index")
    config.generation.max_tokens, config.generation.temperature = 200, 0.0
    coder = Coder(config)
    try:
        answer = coder.ask("Write the function `checkout_total(cart: Cart, percent: float) -> float`: the "
                           "subtotal of the cart with the discount taken off, then VAT added.",
                           repo=tmp_path / "shop")
    finally:
        coder.close()
        coder.provider.close()

    prompt = coder.history[-1].user_message
    assert "round(price" not in prompt, "the helpers' bodies are not shown, only what a caller needs"
    code = re.search(r"```(?:python)?\n(.*?)```", answer.text, re.DOTALL).group(1)
    called = {node.func.id if isinstance(node.func, ast.Name) else node.func.attr
              for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Call)}
    defined = {node.name for node in ast.walk(ast.parse(code)) if isinstance(node, ast.FunctionDef)}
    assert {"apply_discount", "add_vat"} <= called, code
    assert not {"apply_discount", "add_vat"} & defined, code
