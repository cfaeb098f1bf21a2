"""What a caller needs of a chunk of code: signatures, docstrings and the enclosing class, with
bodies left out, as Aider's repository map shows the code it does not show whole.

Lower-ranked retrieved chunks go into the prompt this way (`rag.compact_context`): the model
needs a helper's name, parameters and purpose to call it, not its body, and on a CPU every
prompt token delays the answer. Python is outlined from its syntax tree (decorators, signature,
the docstring's first paragraph, class fields, module constants); other languages, and Python
pieces that do not parse on their own (part of a long function), keep their first lines.
"""

from __future__ import annotations

import ast
import textwrap

from hybrid_llm.rag.chunk import Chunk

_ELLIPSIS = "..."
_FALLBACK_LINES = 3
_MAX_FREE_LINE = 120  # a module constant longer than this is data, not API


def outline(chunk: Chunk) -> str:
    """The chunk's outline, inside its enclosing definitions (`class Session:`), indented."""
    enclosing = _enclosing_signatures(chunk)
    if enclosing and enclosing[-1].startswith(("def ", "async def ")):
        body = _ELLIPSIS  # a piece of a long function: its signature is what a caller needs
    else:
        body = _python_outline(chunk.text) if chunk.language == "python" else None
        body = body or _first_lines(chunk.text)
    lines = [f"{'    ' * depth}{signature}" for depth, signature in enumerate(enclosing)]
    lines.append(textwrap.indent(body, "    " * len(enclosing)))
    return "\n".join(lines)


def _enclosing_signatures(chunk: Chunk) -> list[str]:
    """The signatures the chunker wrote into the header between the path and the symbol words."""
    lines = chunk.header.split("\n")[1:]
    if chunk.symbol and lines:
        lines = lines[:-1]
    first = chunk.text.lstrip().split("\n", 1)[0].strip()
    # A chunk that starts with its own definition repeats it as the innermost scope.
    return [line for line in lines if line and not (first and line.startswith(first))]


def _first_lines(text: str) -> str:
    lines = textwrap.dedent(text).strip("\n").split("\n")
    shown = lines[:_FALLBACK_LINES]
    return "\n".join(shown + ([_ELLIPSIS] if len(lines) > len(shown) else []))


def _python_outline(text: str) -> str | None:
    source = textwrap.dedent(text)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    lines = source.split("\n")
    shown = _outline_body(tree.body, lines)
    return "\n".join(shown) if shown else None


def _outline_body(body: list[ast.stmt], lines: list[str]) -> list[str]:
    shown: list[str] = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            shown.extend(_outline_definition(node, lines))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.lineno == node.end_lineno:
            line = lines[node.lineno - 1]
            if len(line) <= _MAX_FREE_LINE:
                shown.append(line)
    return shown


def _outline_definition(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef,
                        lines: list[str]) -> list[str]:
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    first_statement = node.body[0]
    if first_statement.lineno == node.lineno:  # `def f(): return 1`: nothing to leave out
        return lines[start - 1 : node.end_lineno]
    shown = _header(lines[start - 1 : first_statement.lineno - 1])
    indent = lines[first_statement.lineno - 1][: first_statement.col_offset]
    docstring = ast.get_docstring(node)
    if docstring:
        summary = docstring.split("\n\n")[0].strip()
        shown.append(textwrap.indent(f'"""{summary}"""', indent))
    if isinstance(node, ast.ClassDef):
        members = _outline_body(node.body, lines)
        shown.extend(members)
        if not members and not docstring:
            shown.append(f"{indent}{_ELLIPSIS}")
    else:
        shown.append(f"{indent}{_ELLIPSIS}")
    return shown


def _header(lines: list[str]) -> list[str]:
    """Decorators and signature without the comments and blank lines that open the body: they
    explain the implementation, which the outline leaves out."""
    end = len(lines)
    while end > 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return lines[:end]
