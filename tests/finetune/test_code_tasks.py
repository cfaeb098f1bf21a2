""""Implement this function" tasks mined from a real codebase on disk with real tree-sitter grammars."""

from __future__ import annotations

from pathlib import Path

from hybrid_llm.config import Config
from hybrid_llm.finetune.code_tasks import examples_from_code, find_functions

PYTHON = '''\
import math


def area(radius: float) -> float:
    """Area of a circle."""
    squared = radius * radius
    return math.pi * squared


class Shape:
    def scale(self, factor):
        self.width *= factor
        self.height *= factor

    def tiny(self): return 1
'''

GO = """\
package geo

func Empty() {


}

func Perimeter(w, h int) int {
\tsum := w + h
\treturn 2 * sum
}
"""


def _codebase(tmp_path: Path) -> Path:
    (tmp_path / "geo").mkdir()
    (tmp_path / "geo" / "shapes.py").write_text(PYTHON)
    (tmp_path / "geo" / "perimeter.go").write_text(GO)
    (tmp_path / "README.md").write_text("# geo\n")
    return tmp_path


def test_python_functions_split_into_header_and_body():
    sites = {site.name: site for site in find_functions(PYTHON, "python")}
    assert set(sites) == {"area", "scale"}  # `tiny` is a one-liner: no body to cut out
    area = sites["area"]
    lines = PYTHON.splitlines()
    assert lines[area.header_end].strip() == '"""Area of a circle."""'  # the docstring is context
    body = lines[area.body_start : area.body_end + 1]
    assert body == ["    squared = radius * radius", "    return math.pi * squared"]


def test_tasks_show_context_and_complete_with_the_real_body(tmp_path):
    examples = {e.origin: e for e in examples_from_code(_codebase(tmp_path), Config())}
    assert set(examples) == {"code:geo/shapes.py:4-7", "code:geo/shapes.py:11-13", "code:geo/perimeter.go:8-11"}
    area = examples["code:geo/shapes.py:4-7"]
    system, user = area.prompt
    assert system["role"] == "system" and user["role"] == "user"
    assert user["content"].startswith("geo/shapes.py:1-15\n```python\nimport math")
    assert 'def area(radius: float) -> float:\n    """Area of a circle."""\n    ...\n' in user["content"]
    assert "squared = radius * radius" not in user["content"]
    assert "Implement the body of `area`" in user["content"]
    assert area.completion == [
        {"role": "assistant", "content": "```python\n    squared = radius * radius\n    return math.pi * squared\n```"}
    ]


def test_brace_languages_keep_the_closing_brace_in_the_prompt(tmp_path):
    (go,) = [e for e in examples_from_code(_codebase(tmp_path), Config()) if e.origin.endswith(".go:8-11")]
    assert "func Perimeter(w, h int) int {\n\t...\n}" in go.prompt[1]["content"]
    assert go.completion[0]["content"] == "```go\n\tsum := w + h\n\treturn 2 * sum\n```"


def test_the_cap_keeps_a_stable_sample(tmp_path):
    root = _codebase(tmp_path)
    first = [e.origin for e in examples_from_code(root, Config(), max_examples=2)]
    assert len(first) == 2 and first == [e.origin for e in examples_from_code(root, Config(), max_examples=2)]
