"""Which files of a codebase get indexed, and reading them safely.

API:
- `discover_files(root, *, max_file_bytes, extensions=None) -> Discovery`: walks `root` once and
  returns `.files` (`SourceFile(rel_path, abs_path, size, mtime_ns)`, sorted by `rel_path`) and
  `.skipped`, a Counter of skip reason -> count. Decisions that need only the name and `stat`
  are made here; those that need the content are made by `read_source`.
- `read_source(file, *, max_file_bytes=None) -> SourceText`: `.text` (str) or `.skip_reason`
  ("binary", "undecodable", "too_large", "minified", "unreadable", "gone"). The indexer counts
  that reason in the same Counter, so every skipped file is accounted for exactly once.
- `contains_private_key(text) -> bool`: whether text holds a PEM/OpenSSH/PGP private-key block.
  `CodeChunker.chunk` already drops every chunk that overlaps such a block (so no caller can
  forget); the function is public for other stores of user text.

Skip reasons counted by `discover_files` (directories pruned as a whole count once, because
walking `node_modules` just to count it would cost more than indexing):
`ignored` (.gitignore / .hybridignore, nested files too, git's gitwildmatch rules),
`excluded_dir` (.git, virtual environments, node_modules, build/dist/target, caches),
`secret` (.env*, keys, certificates, credential files), `lock_file`, `minified`, `media`,
`archive`, `binary` (compiled objects, databases, model weights, by extension),
`unsupported` (no known language), `extension_filter` (not in `rag.file_extensions`),
`too_large` (over `max_file_bytes`), `empty`, `symlink_loop`, `duplicate_dir` (a directory
reached a second time through a link), `symlink_outside` (points out of the codebase: a link
to ~/.ssh must not leak into the index), `not_regular_file`, `unreadable`.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from hybrid_llm.rag.languages import detect_language
from hybrid_llm.redact import PRIVATE_KEY

IGNORE_FILES = (".gitignore", ".hybridignore")

_EXCLUDED_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", ".bzr", "node_modules", "bower_components", "jspm_packages",
        "venv", ".venv", ".env", ".virtualenv", "site-packages",
        "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", ".tox",
        ".nox", ".cache", ".parcel-cache", ".sass-cache", ".eggs", "build", "dist", "target",
        "out", "_build", ".next", ".nuxt", ".svelte-kit", ".turbo", ".gradle", ".idea",
        ".vscode", ".terraform", "coverage", "htmlcov", ".ipynb_checkpoints", "vendor", "Pods",
        "DerivedData",
    }
)

# Basename patterns, gitwildmatch syntax (matched against the file name only).
_SKIP_PATTERNS = {
    "secret": [
        ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "*.keystore",
        "*.jks", "*.kdbx", "*.ppk", "*.asc", "*.gpg", "id_rsa*", "id_dsa*", "id_ecdsa*",
        "id_ed25519*", "credentials", "credentials.*", "*[-_.]credentials.*", "secrets",
        "secrets.*", "*.secret", "*.secrets", "client_secret*.json", "service-account*.json",
        "*.tfvars", ".netrc", ".pgpass", ".npmrc", ".pypirc", ".htpasswd", ".git-credentials",
        "known_hosts", "authorized_keys",
    ],
    "lock_file": [
        "*.lock", "package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "go.sum",
        "*.lockb",
    ],
    "minified": ["*.min.js", "*.min.css", "*.min.mjs", "*-min.js", "*.map", "*.bundle.js"],
    "media": [
        "*.png", "*.jpg", "*.jpeg", "*.gif", "*.bmp", "*.ico", "*.icns", "*.webp", "*.svg",
        "*.tif", "*.tiff", "*.psd", "*.mp3", "*.mp4", "*.wav", "*.ogg", "*.flac", "*.m4a",
        "*.avi", "*.mov", "*.mkv", "*.webm", "*.pdf", "*.ttf", "*.otf", "*.woff", "*.woff2",
        "*.eot",
    ],
    "archive": [
        "*.zip", "*.tar", "*.gz", "*.tgz", "*.bz2", "*.xz", "*.zst", "*.7z", "*.rar", "*.jar",
        "*.war", "*.whl", "*.egg", "*.deb", "*.rpm", "*.dmg", "*.iso",
    ],
    "binary": [
        "*.so", "*.so.*", "*.dylib", "*.dll", "*.exe", "*.o", "*.obj", "*.a", "*.lib", "*.pyc",
        "*.pyo", "*.pyd", "*.class", "*.wasm", "*.bin", "*.dat", "*.db", "*.sqlite",
        "*.sqlite3", "*.npy", "*.npz", "*.pkl", "*.pickle", "*.pt", "*.pth", "*.ckpt",
        "*.safetensors", "*.gguf", "*.onnx", "*.h5", "*.parquet", "*.DS_Store",
    ],
}
_SKIP_SPECS = {
    reason: pathspec.GitIgnoreSpec.from_lines(patterns) for reason, patterns in _SKIP_PATTERNS.items()
}

# A line this long is generated or minified code: useless to embed and to show...
_MINIFIED_LINE_CHARS = 2000
# ...and a file is skipped when such lines hold at least this share of its text. One long data
# line in a hand-written module (a lexer's keyword list) does not make the module generated.
_MINIFIED_SHARE = 0.5


@dataclass(frozen=True)
class SourceFile:
    """A file chosen for indexing; `rel_path` uses forward slashes relative to the root."""

    rel_path: str
    abs_path: Path
    size: int
    mtime_ns: int


@dataclass
class Discovery:
    files: list[SourceFile] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class SourceText:
    """What `read_source` found: the decoded text, or why the file is skipped."""

    text: str | None = None
    skip_reason: str | None = None
    encoding: str | None = None


def contains_private_key(text: str) -> bool:
    return PRIVATE_KEY.search(text) is not None


def private_key_spans(text: str) -> list[tuple[int, int]]:
    """0-based (first line, last line) of every private-key block, so chunks over it are dropped."""
    spans = []
    for match in PRIVATE_KEY.finditer(text):
        first = text.count("\n", 0, match.start())
        spans.append((first, first + text.count("\n", match.start(), match.end())))
    return spans


def skip_reason_for_name(name: str) -> str | None:
    """Why a file is skipped from its name alone (secrets first: a `.env.zip` is still secret)."""
    for reason, spec in _SKIP_SPECS.items():
        if spec.match_file(name):
            return reason
    return None


def _normalise_extensions(extensions: list[str] | None) -> frozenset[str] | None:
    if not extensions:
        return None
    return frozenset(
        ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in extensions
    )


class _IgnoreRules:
    """The .gitignore/.hybridignore files seen on the way down, each relative to its directory.

    As in git, the deepest matching rule wins, so a nested file can re-include (`!keep.py`)
    what a parent excluded; an excluded directory is never entered.
    """

    def __init__(self) -> None:
        self._specs: list[tuple[str, pathspec.GitIgnoreSpec]] = []

    def with_directory(self, rel_dir: str, directory: Path) -> _IgnoreRules:
        specs = []
        for name in IGNORE_FILES:
            try:
                lines = (directory / name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            specs.append((rel_dir, pathspec.GitIgnoreSpec.from_lines(lines.splitlines())))
        if not specs:
            return self
        child = _IgnoreRules()
        child._specs = self._specs + specs
        return child

    def ignored(self, rel_path: str, is_dir: bool) -> bool:
        verdict = False
        for base, spec in self._specs:
            if base and not rel_path.startswith(base + "/"):
                continue
            inner = rel_path[len(base) + 1:] if base else rel_path
            result = spec.check_file(inner + "/" if is_dir else inner)
            if result.include is not None:
                verdict = result.include
        return verdict


def _is_virtualenv(directory: Path) -> bool:
    """Whether `directory` holds a Python environment; OSError when it cannot be looked into."""
    return stat.S_ISREG(_mode_or_zero(directory / "pyvenv.cfg")) or stat.S_ISDIR(
        _mode_or_zero(directory / "conda-meta")
    )


def _mode_or_zero(path: Path) -> int:
    """`path`'s mode (following links), 0 when it does not exist; PermissionError propagates,
    unlike `Path.is_file`, so a locked directory is counted as unreadable, not crashed on."""
    try:
        return path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return 0


class _Walker:
    def __init__(self, root: Path, max_file_bytes: int, extensions: frozenset[str] | None):
        self.root = root
        self.real_root = root.resolve()
        self.max_file_bytes = max_file_bytes
        self.extensions = extensions
        self.result = Discovery()
        self._active_dirs: set[tuple[int, int]] = set()
        self._seen_dirs: set[tuple[int, int]] = set()

    def skip(self, reason: str) -> None:
        self.result.skipped[reason] += 1

    def walk(self, directory: Path, rel_dir: str, rules: _IgnoreRules) -> None:
        try:
            info = directory.stat()
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError:
            self.skip("unreadable")
            return
        key = (info.st_dev, info.st_ino)
        if key in self._active_dirs:  # a symlink back to an ancestor: walking on never ends
            self.skip("symlink_loop")
            return
        if key in self._seen_dirs:  # reached again through a link: index it once
            self.skip("duplicate_dir")
            return
        self._active_dirs.add(key)
        self._seen_dirs.add(key)
        rules = rules.with_directory(rel_dir, directory)
        for entry in entries:
            rel_path = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            self.visit(entry, rel_path, rules)
        self._active_dirs.discard(key)

    def visit(self, entry: os.DirEntry, rel_path: str, rules: _IgnoreRules) -> None:
        path = Path(entry.path)
        try:
            info = path.stat()  # follows symlinks: a link is judged by what it points to
        except OSError as exc:
            self.skip("symlink_loop" if _is_link_loop(path, exc) else "unreadable")
            return
        if entry.is_symlink() and not _is_within(path.resolve(), self.real_root):
            self.skip("symlink_outside")
            return
        is_dir = stat.S_ISDIR(info.st_mode)
        if rules.ignored(rel_path, is_dir):
            self.skip("ignored")
        elif is_dir:
            self.visit_directory(entry.name, path, rel_path, rules)
        elif stat.S_ISREG(info.st_mode):
            reason = self.file_skip_reason(entry.name, rel_path, info.st_size)
            if reason:
                self.skip(reason)
            else:
                self.result.files.append(SourceFile(rel_path, path, info.st_size, info.st_mtime_ns))
        else:
            self.skip("not_regular_file")  # sockets, fifos, devices: reading could block

    def visit_directory(self, name: str, path: Path, rel_path: str, rules: _IgnoreRules) -> None:
        if name in _EXCLUDED_DIRS or name.endswith(".egg-info"):
            self.skip("excluded_dir")
            return
        try:
            is_environment = _is_virtualenv(path)
        except OSError:  # a directory we may not look into (chmod 000, another user's)
            self.skip("unreadable")
            return
        if is_environment:
            self.skip("excluded_dir")
        else:
            self.walk(path, rel_path, rules)

    def file_skip_reason(self, name: str, rel_path: str, size: int) -> str | None:
        reason = skip_reason_for_name(name)
        if reason:
            return reason
        if detect_language(rel_path) is None:
            return "unsupported"
        if self.extensions is not None and Path(name).suffix.lower() not in self.extensions:
            return "extension_filter"
        if size > self.max_file_bytes:
            return "too_large"
        if size == 0:
            return "empty"
        return None


def _is_link_loop(path: Path, exc: OSError) -> bool:
    return path.is_symlink() and exc.errno == errno.ELOOP


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def discover_files(
    root: Path, *, max_file_bytes: int, extensions: list[str] | None = None
) -> Discovery:
    """Every indexable file under `root`, plus a count of everything skipped, by reason."""
    walker = _Walker(Path(root), max_file_bytes, _normalise_extensions(extensions))
    walker.walk(Path(root), "", _IgnoreRules())
    walker.result.files.sort(key=lambda file: file.rel_path)
    return walker.result


def _decode(data: bytes) -> tuple[str, str] | None:
    """Text and encoding, or None when the bytes are not plausibly text.

    UTF-8 first (with or without BOM). Otherwise cp1252, the usual encoding of old Windows
    sources, which decodes any byte string except five undefined bytes; it is accepted only
    when the result looks like text: almost no control characters and mostly ASCII, so that a
    binary without NUL bytes or a UTF-16 file is not indexed as mojibake.
    """
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    controls = sum(1 for char in text if ord(char) < 32 and char not in "\t\n\r\f")
    non_ascii = sum(1 for char in text if ord(char) > 127)
    if controls > len(text) / 1000 or non_ascii > len(text) * 0.3:
        return None
    return text, "cp1252"


def _mostly_long_lines(text: str) -> bool:
    long_chars = sum(len(line) for line in text.splitlines() if len(line) > _MINIFIED_LINE_CHARS)
    return long_chars > 0 and long_chars >= _MINIFIED_SHARE * len(text)


def read_source(file: SourceFile, *, max_file_bytes: int | None = None) -> SourceText:
    """Read and decode a discovered file; it may have changed since discovery, so recheck."""
    try:
        with open(file.abs_path, "rb") as handle:
            data = handle.read(max_file_bytes + 1 if max_file_bytes else -1)
    except FileNotFoundError:
        return SourceText(skip_reason="gone")
    except OSError:
        return SourceText(skip_reason="unreadable")
    if max_file_bytes is not None and len(data) > max_file_bytes:
        return SourceText(skip_reason="too_large")
    if b"\0" in data:
        return SourceText(skip_reason="binary")
    decoded = _decode(data)
    if decoded is None:
        return SourceText(skip_reason="undecodable")
    text, encoding = decoded
    if _mostly_long_lines(text):
        return SourceText(skip_reason="minified")
    return SourceText(text=text, encoding=encoding)
