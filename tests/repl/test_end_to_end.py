"""The whole assistant through the REPL: a real index, the real default model, real output.

Runs `python -m hybrid_llm` with commands piped to stdin, exactly as a script would. Slow: it
loads the 1.1 GB GGUF model and the embedder on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid_llm.config import REPO_ROOT
from hybrid_llm.repl.codeblocks import extract_code_blocks

PRICING = '''"""Prices for the shop."""


def apply_discount(price: float, percent: float) -> float:
    """Return `price` reduced by `percent` (0-100), rounded to cents."""
    return round(price * (1 - percent / 100), 2)
'''

INVENTORY = '''"""Stock levels."""

STOCK = {"apple": 3, "pear": 0}


def in_stock(item: str) -> bool:
    """True when at least one `item` is left."""
    return STOCK.get(item, 0) > 0
'''

TASK = (
    "Write a short Python script main.py that imports apply_discount from the pricing module "
    "and prints the discounted price of 80.0 at 25 percent. Do not redefine apply_discount."
)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    repo = tmp_path / "shop"
    repo.mkdir()
    (repo / "pricing.py").write_text(PRICING)
    (repo / "inventory.py").write_text(INVENTORY)
    return repo


@pytest.mark.slow
def test_code_reuses_a_function_of_the_indexed_repo(shop: Path, tmp_path: Path, default_model_file: Path) -> None:
    # Temperature 0 so the run is repeatable; a small token budget keeps it to a minute or two.
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "model": {"path": str(default_model_file)},
        "generation": {"temperature": 0, "max_tokens": 300},
    }))
    result = subprocess.run(
        [sys.executable, "-m", "hybrid_llm", "--repo", str(shop)],
        input=f"/index\n/code {TASK}\n".encode(),
        capture_output=True,
        timeout=1500,
        cwd=REPO_ROOT,
        env={**os.environ, "HYBRID_LLM_CONFIG": str(config)},
    )
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, err
    assert not [line for line in err.splitlines() if line.startswith("error:")], err

    answer, _, sources = out.partition("\nSources:\n")
    assert re.search(r"^  pricing\.py:\d+-\d+$", sources, re.MULTILINE), out

    blocks = [block.text for block in extract_code_blocks(answer) if "apply_discount(" in block.text]
    assert blocks, out
    code = blocks[0]
    assert re.search(r"^\s*(from pricing import [^\n]*apply_discount|import pricing)", code, re.MULTILINE), code
    assert "def apply_discount" not in code
    # The code runs against the real module and prints the right price.
    (shop / "main.py").write_text(code)
    run = subprocess.run([sys.executable, "main.py"], cwd=shop, capture_output=True, text=True, timeout=60)
    assert "60.0" in run.stdout, (code, run.stdout, run.stderr)
