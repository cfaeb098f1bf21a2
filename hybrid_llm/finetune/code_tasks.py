""""Implement this function" training tasks mined from a codebase with tree-sitter.

A task shows the model what it sees at run time, a cited excerpt of the user's code, with one
function's body cut out, and asks for that body; the real body is the completion. Training on
these teaches the model the codebase's own names, helpers and idioms.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import tree_sitter

from hybrid_llm.config import Config
from hybrid_llm.finetune.dataset import Example
from hybrid_llm.llm.prompt import SYSTEM_PROMPT
from hybrid_llm.rag.discovery import discover_files, read_source
from hybrid_llm.rag.languages import detect_language, load_language

# Syntax nodes that are functions with a body, per language (names as in each grammar).
_FUNCTION_NODES: dict[str, frozenset[str]] = {
    "python": frozenset({"function_definition"}),
    "javascript": frozenset({"function_declaration", "generator_function_declaration", "method_definition"}),
    "typescript": frozenset({"function_declaration", "generator_function_declaration", "method_definition"}),
    "tsx": frozenset({"function_declaration", "generator_function_declaration", "method_definition"}),
    "java": frozenset({"method_declaration", "constructor_declaration"}),
    "c": frozenset({"function_definition"}),
    "cpp": frozenset({"function_definition"}),
    "go": frozenset({"function_declaration", "method_declaration"}),
    "rust": frozenset({"function_item"}),
    "csharp": frozenset({"method_declaration", "constructor_declaration"}),
    "ruby": frozenset({"method", "singleton_method"}),
    "php": frozenset({"function_definition", "method_declaration"}),
    "kotlin": frozenset({"function_declaration"}),
    "bash": frozenset({"function_definition"}),
}
MIN_BODY_LINES = 2
MAX_BODY_LINES = 60
CONTEXT_BEFORE = 30
CONTEXT_AFTER = 15
MAX_TASKS_PER_FILE = 20


@dataclass(frozen=True)
class FunctionSite:
    """A function split into what the prompt shows and the body the model must write.

    0-based line indexes, inclusive: the header is `start..header_end` (signature, docstring,
    opening brace), the body `body_start..body_end`; a closing `}`/`end` line after the body
    stays visible in the prompt.
    """

    name: str
    start: int
    header_end: int
    body_start: int
    body_end: int
    end: int


def _body_node(node: tree_sitter.Node) -> tree_sitter.Node | None:
    body = node.child_by_field_name("body")
    if body is not None:
        return body
    return next((child for child in node.children if child.type == "function_body"), None)


def _name(node: tree_sitter.Node) -> str:
    name = node.child_by_field_name("name") or next(
        (child for child in node.children if child.type == "identifier"), None
    )
    if name is None:
        declarator = node.child_by_field_name("declarator")  # C/C++: the name sits in the declarator
        return declarator.text.decode(errors="replace").split("(")[0].strip() if declarator else "function"
    return name.text.decode(errors="replace")


def _python_docstring_end(body: tree_sitter.Node) -> int | None:
    first = body.named_children[0] if body.named_children else None
    if first is not None and first.type == "expression_statement" and first.named_children:
        if first.named_children[0].type == "string":
            return first.end_point[0]
    return None


def _site(node: tree_sitter.Node, language: str) -> FunctionSite | None:
    body = _body_node(node)
    if body is None:
        return None
    decorated = node.parent is not None and node.parent.type == "decorated_definition"
    start = (node.parent if decorated else node).start_point[0]
    end = node.end_point[0]
    if language == "python":
        docstring_end = _python_docstring_end(body)
        header_end = docstring_end if docstring_end is not None else body.start_point[0] - 1
    else:
        header_end = body.start_point[0]  # the line with the opening brace stays in the prompt
    body_start = header_end + 1
    last_line = node.text.decode(errors="replace").rsplit("\n", 1)[-1].strip()
    body_end = end - 1 if language != "python" and last_line in ("}", "end", "};") else end
    if header_end < start or not MIN_BODY_LINES <= body_end - body_start + 1 <= MAX_BODY_LINES:
        return None
    return FunctionSite(_name(node), start, header_end, body_start, body_end, end)


def find_functions(text: str, language: str) -> list[FunctionSite]:
    """Functions in `text` whose body can be cut out cleanly, in file order (nested ones too)."""
    kinds = _FUNCTION_NODES.get(language)
    if not kinds:
        return []
    tree = tree_sitter.Parser(load_language(language)).parse(text.encode("utf-8"))
    lines = text.splitlines()
    sites = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type in kinds and (site := _site(node, language)) is not None:
            body = lines[site.body_start : site.body_end + 1]
            if sum(1 for line in body if line.strip()) >= MIN_BODY_LINES:
                sites.append(site)
        stack.extend(reversed(node.children))
    return sites


def _placeholder(lines: list[str], site: FunctionSite) -> str:
    first_body_line = next(line for line in lines[site.body_start : site.body_end + 1] if line.strip())
    return first_body_line[: len(first_body_line) - len(first_body_line.lstrip())] + "..."


def function_task(path: str, language: str, lines: list[str], site: FunctionSite) -> Example:
    """The prompt shows the excerpt around the function with its body replaced by `...`."""
    first = max(0, site.start - CONTEXT_BEFORE)
    last = min(len(lines) - 1, site.end + CONTEXT_AFTER)
    shown = (
        lines[first : site.header_end + 1]
        + [_placeholder(lines, site)]
        + lines[site.body_end + 1 : last + 1]
    )
    excerpt = "\n".join(shown)
    user = (
        f"{path}:{first + 1}-{last + 1}\n```{language}\n{excerpt}\n```\n\n"
        f"Implement the body of `{site.name}` (marked `...` above). "
        "Answer with the body only, in one fenced block."
    )
    body = "\n".join(lines[site.body_start : site.body_end + 1])
    return Example(
        prompt=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
        completion=[{"role": "assistant", "content": f"```{language}\n{body}\n```"}],
        origin=f"code:{path}:{site.start + 1}-{site.end + 1}",
    )


def examples_from_code(root: Path, config: Config, *, max_examples: int = 5000) -> list[Example]:
    """Function tasks from every parsable source file under `root` (same files the index sees)."""
    discovery = discover_files(
        root, max_file_bytes=config.rag.max_file_bytes, extensions=config.rag.file_extensions or None
    )
    examples = []
    for file in discovery.files:
        language = detect_language(file.rel_path)
        if language not in _FUNCTION_NODES:
            continue
        source = read_source(file, max_file_bytes=config.rag.max_file_bytes)
        if source.text is None:
            continue
        lines = source.text.splitlines()
        sites = find_functions(source.text, language)[:MAX_TASKS_PER_FILE]
        examples.extend(function_task(file.rel_path, language, lines, site) for site in sites)
    # Sorting by a hash of the origin gives a stable sample when the codebase yields too many.
    examples.sort(key=lambda e: hashlib.sha256(e.origin.encode()).hexdigest())
    return examples[:max_examples]
