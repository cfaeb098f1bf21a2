"""Extraction of real HTML pages (tests/net/pages/) with the real trafilatura and readability."""

from __future__ import annotations

from hybrid_llm.net.extract import extract_page
from tests.net.local_web import PAGES

STREAMING_CODE = '''import httpx


def count_bytes(url: str) -> int:
    total = 0

    with httpx.stream("GET", url) as response:
        for chunk in response.iter_bytes():
            total += len(chunk)

    return total'''

BOILERPLATE = [
    "Pricing",  # navigation
    "CheapWidgets",  # ad banner and sponsored sidebar
    "SpamBot",  # comments
    "3 Comments",
    "Copyright 2026",  # footer
    "var ads",  # script
]


def test_code_block_with_blank_lines_survives_intact() -> None:
    page = extract_page((PAGES / "streaming.html").read_text())

    assert f"```python\n{STREAMING_CODE}\n```" in page.markdown


def test_boilerplate_is_dropped_and_the_article_kept() -> None:
    page = extract_page((PAGES / "streaming.html").read_text())

    assert page.title == "httpx streaming guide - Example Docs"
    assert "# Streaming responses with httpx" in page.markdown
    assert "keeps memory use flat" in page.markdown
    assert "## Limits" in page.markdown
    for junk in BOILERPLATE:
        assert junk not in page.markdown


def test_second_page_keeps_its_code_and_drops_its_boilerplate() -> None:
    page = extract_page((PAGES / "timeouts.html").read_text())

    code = 'timeout = httpx.Timeout(10.0, connect=60.0)\n\nclient = httpx.Client(timeout=timeout)'
    assert code in page.markdown
    assert "five seconds of network inactivity" in page.markdown
    for junk in ["Sign up", "ACME Cloud", "first!!!", "Cookie settings"]:
        assert junk not in page.markdown


def test_markup_characters_in_code_are_unescaped() -> None:
    html = (
        "<html><body><article><h1>Comparisons</h1><p>Compare values with the operators"
        " below; this paragraph is long enough to count as the article text.</p>"
        "<pre>if a &lt; b and c &gt; d:\n\n    print(a &amp; b)</pre></article></body></html>"
    )
    assert "if a < b and c > d:\n\n    print(a & b)" in extract_page(html).markdown


def test_plain_text_passes_through() -> None:
    page = extract_page("  line one\n\nline two\n", content_type="text/plain")

    assert page.markdown == "line one\n\nline two"


def test_page_without_content_gives_empty_markdown() -> None:
    assert extract_page("").markdown == ""
    assert extract_page("<html><body>  </body></html>").markdown == ""
