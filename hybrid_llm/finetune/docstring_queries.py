"""Docstring-to-code pairs from Python source: the retrieval benchmark's queries and the code
embedder's training data come from the same function, so training matches what is measured.

A function's docstring is removed from the source (a docstring-only body becomes `pass`) and
becomes the description of the function's line range in the stripped copy; the code side is then
whatever chunk the index makes of that range, so the model never sees the answer written out.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass

import numpy as np

from hybrid_llm.rag.chunk import Chunk


@dataclass(frozen=True)
class DocstringQuery:
    """The first sentence of a removed docstring, the whole docstring, and where its function
    lies in the stripped source (1-based, inclusive, decorators included)."""

    text: str
    path: str
    start_line: int
    end_line: int
    docstring: str = ""


def first_sentence(docstring: str) -> str:
    paragraph = inspect.cleandoc(docstring).split("\n\n")[0]
    text = " ".join(paragraph.split())
    return re.split(r"(?<=[.!?])\s", text)[0].strip()


def strip_docstrings(source: str, rel_path: str) -> tuple[str, list[DocstringQuery]]:
    """The source without function docstrings, and one query per removed docstring."""
    tree = ast.parse(source)
    lines = source.split("\n")
    removed: set[int] = set()  # 1-based lines dropped
    replaced: dict[int, str] = {}  # 1-based line -> new text (a docstring-only body gets `pass`)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = node.body[0] if node.body else None
        if not (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str)):
            continue
        first, last = doc.lineno, doc.end_lineno or doc.lineno
        before = lines[first - 1][: doc.col_offset]
        after = lines[last - 1][doc.end_col_offset:]
        if before.strip() or after.strip():
            continue  # shares a line with code: leave it
        if len(node.body) == 1:
            replaced[first] = before + "pass"
            removed.update(range(first + 1, last + 1))
        else:
            removed.update(range(first, last + 1))
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        found.append((doc.value.value, start, node.end_lineno or node.lineno))
    kept_before = np.cumsum([0] + [0 if n in removed else 1 for n in range(1, len(lines) + 1)])
    new_lines = [replaced.get(n, line) for n, line in enumerate(lines, start=1) if n not in removed]
    queries = [
        DocstringQuery(first_sentence(doc), rel_path, int(kept_before[start]),
                       int(kept_before[end]), inspect.cleandoc(doc))
        for doc, start, end in found
    ]
    return "\n".join(new_lines), queries


def usable_queries(queries: list[DocstringQuery]) -> list[DocstringQuery]:
    """Queries with a few words (a request, not a label) and one answer (gradable)."""
    counts: dict[str, int] = {}
    for query in queries:
        counts[query.text] = counts.get(query.text, 0) + 1
    return [q for q in queries if len(q.text.split()) >= 3 and counts[q.text] == 1]


def is_hit(result: Chunk, query: DocstringQuery) -> bool:
    """A result answers a query when it shows most of the function or lies mostly inside it:
    fair to chunkers of any size (a window holding a small function, one piece of a long one)."""
    if result.path != query.path:
        return False
    overlap = min(result.end_line, query.end_line) - max(result.start_line, query.start_line) + 1
    if overlap <= 0:
        return False
    answer_lines = query.end_line - query.start_line + 1
    result_lines = result.end_line - result.start_line + 1
    return overlap >= answer_lines / 2 or overlap >= result_lines / 2
