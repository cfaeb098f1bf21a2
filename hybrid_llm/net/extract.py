"""Readable Markdown from a web page: the article and its code, without navigation, ads or comments.

trafilatura is best at dropping boilerplate, but it returns nothing on some pages and drops
blank lines inside code blocks, which breaks Python code. So every <pre> block of the page is
looked up verbatim in its output; when one is missing (or the output is empty) the page goes
through readability-lxml + markdownify instead, which keep <pre> text as is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import lxml.html
from lxml.etree import ParserError

_LANGUAGE_CLASS = re.compile(r"(?:language|lang|highlight)-([\w+#.-]+)")


@dataclass(frozen=True)
class ExtractedPage:
    """The page's title and its main content as Markdown ("" when nothing readable was found)."""

    title: str
    markdown: str


def extract_page(html: str, *, content_type: str = "text/html") -> ExtractedPage:
    """The readable part of a fetched page; plain-text pages are already readable."""
    if content_type == "text/plain":
        return ExtractedPage(title="", markdown=html.strip())
    tree = _parse(html)
    if tree is None:
        return ExtractedPage(title="", markdown="")
    title = " ".join((tree.findtext(".//title") or "").split())
    code_blocks = [_normalise(block) for block in _pre_texts(tree)]
    markdown = _with_trafilatura(html)
    if not markdown or not _keeps_all(markdown, code_blocks):
        markdown = _with_readability(html)
    return ExtractedPage(title=title, markdown=markdown)


def _parse(html: str) -> lxml.html.HtmlElement | None:
    try:
        return lxml.html.document_fromstring(html)
    except (ParserError, ValueError):
        return None


def _pre_texts(tree: lxml.html.HtmlElement) -> list[str]:
    return [text for pre in tree.iter("pre") if (text := "".join(pre.itertext())).strip()]


def _normalise(text: str) -> str:
    """Code as compared between page and Markdown: no trailing spaces, no outer blank lines."""
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def _keeps_all(markdown: str, code_blocks: list[str]) -> bool:
    flattened = _normalise(markdown)
    return all(block in flattened for block in code_blocks)


def _with_trafilatura(html: str) -> str:
    import trafilatura

    return (
        trafilatura.extract(
            html,
            output_format="markdown",
            include_comments=False,
            include_tables=True,
            include_links=False,
            include_formatting=True,
        )
        or ""
    ).strip()


def _with_readability(html: str) -> str:
    from markdownify import markdownify
    from readability import Document

    try:
        summary = Document(html).summary(html_partial=True)
    except Exception:  # readability raises bare Unparseable/ValueError on odd pages
        return ""
    markdown = markdownify(
        summary, heading_style="ATX", code_language_callback=_code_language, strip=["img"]
    )
    # markdownify leaves runs of blank lines between blocks; collapse them outside code only.
    return _collapse_blank_runs(markdown).strip()


def _code_language(pre: object) -> str:
    """The language a <pre> (or its <code>) declares in its class, for the Markdown fence."""
    for element in (pre, *pre.find_all("code")):  # type: ignore[attr-defined]
        classes = " ".join(element.get("class") or [])
        if match := _LANGUAGE_CLASS.search(classes):
            return match.group(1)
    return ""


def _collapse_blank_runs(markdown: str) -> str:
    lines: list[str] = []
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if not in_code and not line.strip() and lines and not lines[-1].strip():
            continue
        lines.append(line.rstrip() if not in_code else line)
    return "\n".join(lines)
