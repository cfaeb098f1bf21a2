"""The comment above a function becomes its description and leaves the code, in every language
the embedder is trained on (real tree-sitter grammars)."""

from __future__ import annotations

import pytest

from hybrid_llm.finetune.doc_comment_pairs import follow_lines, strip_doc_comments
from hybrid_llm.finetune.docstring_queries import strip_docstrings

SOURCES = {
    "javascript": ("lib/app.js", """'use strict';

/**
 * Registers a middleware function on the application's router.
 * @param {Function} fn the middleware
 * @returns {App} this
 */
app.use = function use(fn) {
  return router.add(fn);
};
"""),
    "typescript": ("src/timestamp.ts", """import { map } from './map';

/**
 * Attaches a timestamp to each item emitted by an observable.
 */
export function timestamp<T>(provider: Provider): Operator<T> {
  return map((value: T) => ({ value, timestamp: provider.now() }));
}
"""),
    "go": ("cobra/command.go", """package cobra

// HasParent determines if the command is a child command of another one.
func (c *Command) HasParent() bool {
	return c.parent != nil
}
"""),
    "rust": ("regex/src/lib.rs", """/// Returns true if and only if there is a match anywhere in the haystack.
#[inline]
pub fn is_match(&self, text: &str) -> bool {
    self.find(text).is_some()
}
"""),
    "python": ("pkg/term.py", """import os

# Compute the width of the terminal in columns, falling back to eighty.
@cache
def width():
    return os.get_terminal_size().columns
"""),
}


@pytest.mark.parametrize("language", sorted(SOURCES))
def test_a_doc_comment_becomes_the_description_of_its_function(language):
    rel_path, source = SOURCES[language]
    stripped, queries, _ = strip_doc_comments(source, rel_path, language)
    assert len(queries) == 1
    query = queries[0]
    assert query.text.split()[0] in source and "@param" not in query.docstring
    assert query.text not in stripped  # the code side never shows the answer written out
    function = stripped.split("\n")[query.start_line - 1: query.end_line]
    assert any(word in "\n".join(function) for word in ("function", "func", "fn", "def"))
    assert function[-1] == source.rstrip().split("\n")[-1]  # the whole function, to its end


def test_comments_that_are_not_descriptions_stay_in_the_code():
    source = """x = compute()  # trailing note about this line only

# TODO: make this faster before the release
def slow():
    pass

# result = old_helper(x, y)[0]
def replaced():
    pass

# Separated by a blank line, so about something else.

def unrelated():
    pass


def caller():
    # loop over the items and double each of them
    values = [double(item) for item in items]
"""
    stripped, queries, _ = strip_doc_comments(source, "m.py", "python")
    assert queries == [] and stripped == source


def test_docstring_queries_follow_their_function_when_comments_above_are_removed():
    source = '''# Parse the header line of a request into its three parts.
def parse(line):
    """Split a request line into method, path and version."""
    return line.split()


# Join the parts of a request line back into one string.
def join(parts):
    return " ".join(parts)
'''
    text, docstrings = strip_docstrings(source, "req.py")
    stripped, commented, kept_before = strip_doc_comments(text, "req.py", "python")
    lines = stripped.split("\n")
    for query in [*follow_lines(docstrings, kept_before), *commented]:
        assert lines[query.start_line - 1].startswith("def ")
    assert {q.text for q in commented} == {
        "Parse the header line of a request into its three parts.",
        "Join the parts of a request line back into one string."}
