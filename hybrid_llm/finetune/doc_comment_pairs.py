"""Comment-to-code pairs: the comment written directly above a function, in any parsed language.

Docstrings are Python's way to say what a function does; most other languages put it in a
comment right above the definition (JSDoc `/** ... */`, Go's `// Name does ...`, Rust's `///`,
Javadoc), and Python code often does the same with `#` lines. Such a comment is removed from
the source, as `docstring_queries.strip_docstrings` removes docstrings, and becomes the
description of the function's line range in the stripped copy, so the code side never shows the
answer written out. The parse is the index's own tree-sitter grammar, so every language the
index parses can give pairs.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import tree_sitter

from hybrid_llm.finetune.docstring_queries import DocstringQuery, first_sentence
from hybrid_llm.rag.languages import load_language

_COMMENTS = frozenset(
    {"comment", "line_comment", "block_comment", "multiline_comment", "documentation_comment"}
)
# Functions and methods: what a request asks for. Classes and modules are left out, as the
# docstring miner leaves them out.
_FUNCTIONS = frozenset({
    "function_definition", "function_declaration", "generator_function_declaration",
    "method_definition", "method_declaration", "constructor_declaration", "function_item",
    "method", "singleton_method", "function_signature",
})
# A JavaScript function can be a value: `const f = (a) => ...`, `app.use = function use()`,
# ramda's `var add = _curry2(function add(a, b) {...})`. Its doc comment sits above the
# top-level statement holding it.
_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function"})
_HOLDERS = frozenset({"variable_declarator", "lexical_declaration", "variable_declaration",
                      "assignment_expression", "expression_statement", "call_expression",
                      "arguments"})
_TOP_LEVEL = frozenset({"program", "export_statement"})
# Between a doc comment and its function: decorators' wrappers and Rust attributes.
_WRAPPERS = frozenset({"decorated_definition", "export_statement", "template_declaration"})
_BETWEEN = frozenset({"attribute_item", "decorator", "annotation", "marker_annotation"})
# Comments that instruct a tool or mark work left, not describe the code below them.
_NOT_A_DESCRIPTION = re.compile(
    r"^(todo|fixme|xxx|hack|noqa|type:|pylint|pragma|eslint|istanbul|prettier|@ts-|"
    r"jshint|global |copyright|spdx|license|-\*-|nolint|go:|safety:|#\[)", re.IGNORECASE)
_WORD = re.compile(r"^[A-Za-z][a-z']*[.,:;]?$")
_MIN_WORD_SHARE = 0.6  # below this share of plain words, the "comment" is commented-out code


def comment_text(raw: str) -> str:
    """The words of a comment without its markers: `/** */`, `*` margins, `//`, `///`, `#`."""
    raw = re.sub(r"^/\*+!?|\*+/$", "", raw.strip())
    lines = []
    for line in raw.split("\n"):
        line = re.sub(r"^\s*(///?!?|#+|\*+(?!/))", "", line, count=1)
        lines.append(line.rstrip())
    return "\n".join(lines).strip()


def description(text: str) -> str:
    """The prose of a doc comment: what comes before its first tag (`@param`, `@returns`,
    `# Examples`), which documents arguments or shows code rather than saying what it does."""
    kept = []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("@") or stripped.startswith("# ") or stripped.startswith("```"):
            break
        kept.append(line)
    return "\n".join(kept).strip()


def is_prose(sentence: str) -> bool:
    words = sentence.split()
    if not words or _NOT_A_DESCRIPTION.match(sentence):
        return False
    return sum(bool(_WORD.match(word)) for word in words) >= _MIN_WORD_SHARE * len(words)


def strip_doc_comments(source: str, rel_path: str, language: str) -> tuple[str, list[DocstringQuery], np.ndarray]:
    """The source without the comments directly above its functions, one query per removed
    comment, and `kept_before` (old 1-based line n -> its line in the result is
    kept_before[n]), so queries mined from the source before can follow the lines."""
    tree = tree_sitter.Parser(load_language(language)).parse(source.encode("utf-8"))
    lines = source.split("\n")
    removed: set[int] = set()
    found = []
    claimed: set[int] = set()  # first rows of comments already used (nested functions)
    for anchor in _documentable(tree.root_node):
        comments = _comments_above(anchor, lines)
        if not comments or comments[0].start_point[0] in claimed:
            continue
        claimed.add(comments[0].start_point[0])
        text = "\n".join(comment_text(c.text.decode("utf-8", "replace")) for c in comments)
        prose = description(text)
        if not is_prose(first_sentence(prose)):
            continue
        first_row = comments[0].start_point[0]
        removed.update(range(first_row + 1, _last_row(comments[-1]) + 2))
        found.append((prose, anchor.start_point[0] + 1, _last_row(anchor) + 1))
    kept_before = np.cumsum([0] + [0 if n in removed else 1 for n in range(1, len(lines) + 1)])
    queries = [DocstringQuery(first_sentence(prose), rel_path, int(kept_before[start]),
                              int(kept_before[end]), prose)
               for prose, start, end in found]
    stripped = "\n".join(line for n, line in enumerate(lines, start=1) if n not in removed)
    return stripped, queries, kept_before


def follow_lines(queries: list[DocstringQuery], kept_before: np.ndarray) -> list[DocstringQuery]:
    """Queries of a source moved to their lines once `strip_doc_comments` removed comments."""
    return [replace(q, start_line=int(kept_before[q.start_line]),
                    end_line=int(kept_before[q.end_line])) for q in queries]


def _documentable(root: tree_sitter.Node):
    """Each function or method, as the node a comment above it would precede: the definition
    with its decorators or `export`, or the top-level statement holding a function value."""
    stack = [root]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        anchor = node
        if node.type in _FUNCTION_VALUES:
            while anchor.parent is not None and anchor.parent.type in _HOLDERS:
                anchor = anchor.parent
            if anchor is node or anchor.parent is None or anchor.parent.type not in _TOP_LEVEL:
                continue  # a callback or a value inside code: not what a request asks for
        elif node.type not in _FUNCTIONS:
            continue
        while anchor.parent is not None and anchor.parent.type in _WRAPPERS:
            anchor = anchor.parent
        yield anchor


def _last_row(node: tree_sitter.Node) -> int:
    """The last row holding the node's text (Rust's line comments end after their newline)."""
    row, column = node.end_point
    return row - 1 if column == 0 and row > node.start_point[0] else row


def _comments_above(anchor: tree_sitter.Node, lines: list[str]) -> list[tree_sitter.Node]:
    """The run of whole-line comments ending on the line right above `anchor` (attributes and
    annotations may sit between), each touching the next: a blank line ends the run."""
    comments: list[tree_sitter.Node] = []
    below = anchor
    node = anchor.prev_sibling
    while node is not None and (node.type in _COMMENTS or node.type in _BETWEEN):
        if not below.start_point[0] - 1 <= _last_row(node) < below.start_point[0]:
            break  # a blank line between (about something else) or code on the same line
        if node.type in _COMMENTS:
            row, column = node.start_point
            if lines[row][:column].strip():
                break  # trails code on its line: it is about that line
            comments.insert(0, node)
        below = node
        node = node.prev_sibling
    return comments
