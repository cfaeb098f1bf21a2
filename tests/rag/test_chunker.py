"""CodeChunker on real source files with the real tree-sitter grammars (no fakes)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from hybrid_llm.rag.chunker import CodeChunker, detect_language
from tests.rag.samples import SAMPLES

# language -> [(symbol, definition's own lines, lines of what encloses it)]
# A small budget forces every class to be split at its methods, so the symbol paths show.
EXPECTED = {
    "python": [("Greeter.greet", (7, 9), (4, 9)), ("main", (12, 14), (12, 14))],
    "javascript": [("Greeter.greet", (4, 7), (3, 8)), ("main", (10, 13), (10, 13))],
    "typescript": [("Greeter.greet", (6, 9), (5, 10)), ("main", (12, 15), (12, 15))],
    "tsx": [("Greeter.greet", (4, 7), (3, 8)), ("main", (10, 13), (10, 13))],
    "java": [("Greeter.greet", (4, 7), (3, 13)), ("Greeter.main", (9, 12), (3, 13))],
    "c": [("greet", (8, 12), (8, 12)), ("main", (14, 18), (14, 18))],
    "cpp": [("demo.Greeter.greet", (7, 10), (4, 12)), ("main", (14, 18), (14, 18))],
    "go": [("Greeter.Greet", (9, 12), (9, 12)), ("main", (14, 17), (14, 17))],
    "rust": [("Greeter.greet", (8, 11), (7, 12)), ("main", (14, 17), (14, 17))],
    "csharp": [("Demo.Greeter.Greet", (7, 11), (3, 19)), ("Demo.Greeter.Main", (13, 17), (3, 19))],
    "ruby": [("Greeter.greet", (4, 7), (3, 8)), ("main", (10, 13), (10, 13))],
    "php": [("Greeter.greet", (5, 9), (1, 10)), ("main", (12, 16), (12, 16))],
    "kotlin": [("Greeter.greet", (4, 7), (3, 8)), ("main", (10, 13), (10, 13))],
    "bash": [("greet", (4, 7), (4, 7)), ("main", (9, 12), (9, 14))],
}


def _lines_by_symbol(chunks) -> dict[str | None, tuple[int, int]]:
    spans: dict[str | None, tuple[int, int]] = {}
    for chunk in chunks:
        first, last = spans.get(chunk.symbol, (chunk.start_line, chunk.end_line))
        spans[chunk.symbol] = (min(first, chunk.start_line), max(last, chunk.end_line))
    return spans


def _assert_whole_lines_in_order(chunks, text: str) -> None:
    lines = text.splitlines()
    previous_end = 0
    for chunk in chunks:
        assert previous_end < chunk.start_line <= chunk.end_line <= len(lines)
        assert chunk.text == "\n".join(lines[chunk.start_line - 1:chunk.end_line])
        previous_end = chunk.end_line


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_every_language_yields_its_symbols_and_line_ranges(language: str) -> None:
    path, text = SAMPLES[language]
    chunks = CodeChunker(max_chars=60).chunk(path, text)

    assert detect_language(path) == language
    assert {chunk.language for chunk in chunks} == {language}
    _assert_whole_lines_in_order(chunks, text)
    spans = _lines_by_symbol(chunks)
    for symbol, (first, last), (outer_first, outer_last) in EXPECTED[language]:
        assert symbol in spans, f"{language}: no chunk named {symbol}: {spans}"
        start, end = spans[symbol]
        assert outer_first <= start <= first and last <= end <= outer_last, (symbol, spans)


def test_default_budget_keeps_small_class_whole_and_definitions_apart() -> None:
    path, text = SAMPLES["python"]

    chunks = CodeChunker().chunk(path, text)

    assert [(c.symbol, c.start_line, c.end_line) for c in chunks] == [
        ("Greeter", 1, 9),
        ("main", 12, 14),
    ]
    assert chunks[0].header == "app/greeter.py\ngreeter"  # path, then the symbol in words


def test_large_function_is_split_within_budget_with_signature_in_header() -> None:
    body = "".join(f"    total += compute_value_{i}(items[{i}], scale)\n" for i in range(80))
    text = f"class Report:\n    def summarize(self, items, scale):\n        total = 0\n{body}        return total\n"
    text = text.replace("\n    total", "\n        total")

    chunks = CodeChunker(max_chars=600).chunk("report.py", text)

    assert len(chunks) > 3
    _assert_whole_lines_in_order(chunks, text)
    assert chunks[0].start_line == 1 and chunks[-1].end_line == len(text.splitlines())
    for chunk in chunks:
        size = sum(not char.isspace() for char in chunk.text)
        assert size <= 600 or chunk.start_line == chunk.end_line
        assert chunk.symbol == "Report.summarize"
    assert chunks[-1].header == (
        "report.py\nclass Report:\ndef summarize(self, items, scale):\nreport summarize"
    )


def test_small_neighbours_merge_but_definitions_do_not_by_default() -> None:
    text = "import os\nimport sys\n\nLIMIT = 3\n\n\ndef one():\n    return 1\n\n\ndef two():\n    return 2\n"

    separate = CodeChunker().chunk("m.py", text)
    merged = CodeChunker(merge_definitions=True).chunk("m.py", text)

    assert [(c.symbol, c.start_line, c.end_line) for c in separate] == [
        ("one", 1, 8),
        ("two", 11, 12),
    ]
    assert [(c.start_line, c.end_line) for c in merged] == [(1, 12)]


def test_a_big_table_does_not_swallow_the_small_method_after_it() -> None:
    """A lexer-style class: a token table, a two-line method, a longer method. The table and
    the first method fit the budget together, but merged, the chunk named after the method
    would embed as the table (MiniLM reads only its first 256 tokens)."""
    rules = "".join(f"        'state{n}': [(r'[a-z]+{n}', Name.Builtin), (r'\\s+', Text)],\n"
                    for n in range(18))
    steps = "".join(f"        text = text.replace('{n}', 'step {n}')\n" for n in range(8))
    text = (f"class RubyLexer(Lexer):\n    tokens = {{\n{rules}    }}\n\n"
            "    def analyse_text(text):\n        return shebang_matches(text, r'ruby')\n\n"
            f"    def normalise(self, text):\n{steps}        return text\n")

    chunks = CodeChunker().chunk("lexers/ruby.py", text)

    assert [(c.symbol, c.defines) for c in chunks] == [
        ("RubyLexer", False), ("RubyLexer.analyse_text", True), ("RubyLexer.normalise", True)]
    assert chunks[1].text.split("\n")[0].strip() == "def analyse_text(text):"
    # a few lines of free code still join the definition next to them
    small = CodeChunker().chunk("m.py", "import os\n\n\ndef cwd():\n    return os.getcwd()\n")
    assert [(c.start_line, c.end_line, c.defines) for c in small] == [(1, 5, True)]


def test_text_files_fall_back_to_line_windows() -> None:
    text = "".join(f"- item number {i} with some words\n" for i in range(200))

    chunks = CodeChunker(max_chars=300, max_window_lines=40).chunk("docs/list.md", text)

    assert chunks[0].language == "markdown"
    _assert_whole_lines_in_order(chunks, text)
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 200
    assert all(chunk.end_line - chunk.start_line < 40 for chunk in chunks)
    assert all(sum(not c.isspace() for c in chunk.text) <= 300 for chunk in chunks)


def test_file_that_does_not_parse_falls_back_to_windows() -> None:
    text = "".join(f"}} ) ] garbage {i} ((( def class\n" for i in range(30))

    chunks = CodeChunker(max_chars=200).chunk("broken.py", text)

    assert chunks and all(chunk.symbol is None for chunk in chunks)
    _assert_whole_lines_in_order(chunks, text)
    assert chunks[-1].end_line == 30


def test_chunks_with_a_private_key_block_are_dropped() -> None:
    key = "-----BEGIN RSA PRIVATE KEY-----\n" + "QUJD" * 10 + "\n-----END RSA PRIVATE KEY-----"
    text = f'def load():\n    return 1\n\n\nKEY = """\n{key}\n"""\n\n\ndef after():\n    return 2\n'
    chunker = CodeChunker(max_chars=40)

    chunks = chunker.chunk("keys.py", text)

    assert all("PRIVATE KEY" not in chunk.text and "QUJD" not in chunk.text for chunk in chunks)
    assert {"load", "after"} <= {chunk.symbol for chunk in chunks}
    assert chunker.dropped_secret_chunks >= 1


def test_crlf_and_empty_files() -> None:
    assert CodeChunker().chunk("empty.py", "") == []
    chunks = CodeChunker().chunk("win.py", "def f():\r\n    return 1\r\n")
    assert [(c.symbol, c.start_line, c.end_line, c.text) for c in chunks] == [
        ("f", 1, 2, "def f():\n    return 1")
    ]


def test_grammars_load_with_the_network_blocked() -> None:
    """A fresh interpreter whose sockets raise loads every grammar and chunks every sample."""
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network blocked by test")

        socket.socket = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from hybrid_llm.rag.chunker import CodeChunker
        from tests.rag.samples import SAMPLES

        chunker = CodeChunker(max_chars=60)
        for language, (path, text) in SAMPLES.items():
            symbols = {chunk.symbol for chunk in chunker.chunk(path, text)}
            names = {symbol.split(".")[-1].lower() for symbol in symbols if symbol}
            assert "main" in names, language
        print("ok", len(SAMPLES))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok {len(SAMPLES)}"
