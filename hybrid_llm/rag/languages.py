"""Which languages we index, how a path maps to one, and their tree-sitter grammars.

API:
- `detect_language(rel_path) -> str | None`: the language name for a path ("python", "tsx",
  "markdown", ...), or None when the file type is not indexed at all.
- `LANGUAGES: dict[str, LanguageSpec]`: every indexed language; `spec.parsed` says whether a
  tree-sitter grammar exists for it (the others are chunked by line windows).
- `load_language(name) -> tree_sitter.Language`: the grammar, loaded once per process.

Grammars come from the per-language wheels (`tree-sitter-python`, ...), which ship the compiled
parser inside the wheel: `tree-sitter-language-pack` 1.x downloads grammars on first use and
fails offline, so it is deliberately not used.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import PurePosixPath

import tree_sitter


@dataclass(frozen=True)
class LanguageSpec:
    """One language: its file types and, when parsed, which syntax nodes are definitions.

    `definitions` name functions/classes/etc. (each becomes a symbol in the symbol path);
    `wrappers` are nodes that only decorate one definition (`export`, decorators, templates),
    so a chunk of the wrapper is named after the definition inside it.
    """

    name: str
    extensions: tuple[str, ...] = ()
    filenames: tuple[str, ...] = ()
    grammar: tuple[str, str] | None = None  # (module, function returning the language pointer)
    definitions: frozenset[str] = frozenset()
    wrappers: frozenset[str] = frozenset()

    @property
    def parsed(self) -> bool:
        return self.grammar is not None


_JS_DEFINITIONS = frozenset(
    {
        "function_declaration",
        "generator_function_declaration",
        "class_declaration",
        "method_definition",
        "lexical_declaration",  # `const f = () => ...`: a definition only when it binds a function
        "variable_declaration",
    }
)
_TS_DEFINITIONS = _JS_DEFINITIONS | {
    "abstract_class_declaration",
    "interface_declaration",
    "type_alias_declaration",
    "enum_declaration",
    "internal_module",
    "function_signature",
    "abstract_method_signature",
}
_JS_WRAPPERS = frozenset({"export_statement"})


def _spec(name: str, extensions: tuple[str, ...], grammar: tuple[str, str] | None = None,
          definitions: set[str] | frozenset[str] = frozenset(),
          wrappers: set[str] | frozenset[str] = frozenset(),
          filenames: tuple[str, ...] = ()) -> LanguageSpec:
    return LanguageSpec(name, extensions, filenames, grammar, frozenset(definitions),
                        frozenset(wrappers))


_PARSED = [
    _spec("python", (".py", ".pyi", ".pyw"), ("tree_sitter_python", "language"),
          {"function_definition", "class_definition"}, {"decorated_definition"}),
    _spec("javascript", (".js", ".jsx", ".mjs", ".cjs"), ("tree_sitter_javascript", "language"),
          _JS_DEFINITIONS, _JS_WRAPPERS),
    _spec("typescript", (".ts", ".mts", ".cts"), ("tree_sitter_typescript", "language_typescript"),
          _TS_DEFINITIONS, _JS_WRAPPERS),
    _spec("tsx", (".tsx",), ("tree_sitter_typescript", "language_tsx"),
          _TS_DEFINITIONS, _JS_WRAPPERS),
    _spec("java", (".java",), ("tree_sitter_java", "language"),
          {"class_declaration", "interface_declaration", "enum_declaration", "record_declaration",
           "annotation_type_declaration", "method_declaration", "constructor_declaration"}),
    _spec("c", (".c", ".h"), ("tree_sitter_c", "language"),
          {"function_definition", "struct_specifier", "union_specifier", "enum_specifier"}),
    _spec("cpp", (".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx", ".h++", ".ipp"),
          ("tree_sitter_cpp", "language"),
          {"function_definition", "class_specifier", "struct_specifier", "union_specifier",
           "enum_specifier", "namespace_definition"}, {"template_declaration"}),
    _spec("go", (".go",), ("tree_sitter_go", "language"),
          {"function_declaration", "method_declaration", "type_declaration"}),
    _spec("rust", (".rs",), ("tree_sitter_rust", "language"),
          {"function_item", "impl_item", "struct_item", "enum_item", "union_item", "trait_item",
           "mod_item", "macro_definition"}),
    _spec("csharp", (".cs",), ("tree_sitter_c_sharp", "language"),
          {"class_declaration", "struct_declaration", "interface_declaration", "enum_declaration",
           "record_declaration", "method_declaration", "constructor_declaration",
           "property_declaration", "namespace_declaration", "file_scoped_namespace_declaration"}),
    _spec("ruby", (".rb", ".rake", ".gemspec"), ("tree_sitter_ruby", "language"),
          {"method", "singleton_method", "class", "module"},
          filenames=("Rakefile", "Gemfile")),
    _spec("php", (".php",), ("tree_sitter_php", "language_php"),
          {"class_declaration", "interface_declaration", "trait_declaration", "enum_declaration",
           "function_definition", "method_declaration", "namespace_definition"}),
    _spec("kotlin", (".kt", ".kts"), ("tree_sitter_kotlin", "language"),
          {"class_declaration", "object_declaration", "function_declaration",
           "companion_object"}),
    _spec("bash", (".sh", ".bash"), ("tree_sitter_bash", "language"), {"function_definition"}),
]

# Indexed as text and chunked by line windows: no grammar ships for them offline.
_TEXT = [
    _spec("markdown", (".md", ".markdown", ".mdx")),
    _spec("rst", (".rst",)),
    _spec("text", (".txt",)),
    _spec("yaml", (".yml", ".yaml")),
    _spec("toml", (".toml",)),
    _spec("json", (".json", ".jsonc")),
    _spec("ini", (".ini", ".cfg", ".conf")),
    _spec("sql", (".sql",)),
    _spec("html", (".html", ".htm")),
    _spec("css", (".css", ".scss", ".sass", ".less")),
    _spec("xml", (".xml",)),
    _spec("proto", (".proto",)),
    _spec("graphql", (".graphql", ".gql")),
    _spec("lua", (".lua",)),
    _spec("swift", (".swift",)),
    _spec("scala", (".scala",)),
    _spec("r", (".r",)),
    _spec("perl", (".pl", ".pm")),
    _spec("dart", (".dart",)),
    _spec("vue", (".vue",)),
    _spec("svelte", (".svelte",)),
    _spec("groovy", (".groovy", ".gradle")),
    _spec("zsh", (".zsh",)),
    _spec("powershell", (".ps1",)),
    _spec("dockerfile", (".dockerfile",), filenames=("Dockerfile", "Containerfile")),
    _spec("makefile", (".mk",), filenames=("Makefile", "GNUmakefile", "makefile")),
    _spec("cmake", (".cmake",), filenames=("CMakeLists.txt",)),
]

LANGUAGES: dict[str, LanguageSpec] = {spec.name: spec for spec in _PARSED + _TEXT}
_BY_FILENAME = {name: spec.name for spec in LANGUAGES.values() for name in spec.filenames}
_BY_EXTENSION = {ext: spec.name for spec in LANGUAGES.values() for ext in spec.extensions}


def detect_language(rel_path: str) -> str | None:
    """Language of a file from its name (exact file names first, then the extension)."""
    name = PurePosixPath(rel_path).name
    if name in _BY_FILENAME:
        return _BY_FILENAME[name]
    return _BY_EXTENSION.get(PurePosixPath(name).suffix.lower())


@functools.cache
def load_language(name: str) -> tree_sitter.Language:
    """The compiled grammar for a parsed language; raises KeyError for text-only languages."""
    grammar = LANGUAGES[name].grammar
    if grammar is None:
        raise KeyError(f"no tree-sitter grammar for {name}")
    module, function = grammar
    return tree_sitter.Language(getattr(importlib.import_module(module), function)())
