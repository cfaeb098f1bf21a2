"""Configuration: the shape of config.json, its validation, and where mutable state lives.

Users edit config.json by hand, so every error must point at the exact place: a JSON syntax
error names file, line and column; a schema error names the field path and what is allowed.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CONFIG_ENV = "HYBRID_LLM_CONFIG"
HOME_ENV = "HYBRID_LLM_HOME"
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A config file that cannot be used; the message is one line meant for the user."""


class _Section(BaseModel):
    # Unknown keys are refused: a typo such as "max_token" must not be silently ignored.
    # Infinity and NaN pass every range check, then break scores (`query --json` printed
    # `"score": Infinity`, which is not JSON).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelAlternatives(_Section):
    low_ram: str = "qwen2.5-coder-1.5b-instruct-q4_k_m"
    medium_ram: str = "qwen2.5-coder-3b-instruct-q4_k_m"
    high_ram: str = "qwen2.5-coder-7b-instruct-q4_k_m"


class ServerSettings(_Section):
    """An OpenAI-compatible server (vLLM, llama.cpp server, Ollama) used when backend=openai."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout: float = Field(120.0, gt=0)


class ModelSettings(_Section):
    name: str = "qwen2.5-coder-1.5b-instruct-q4_k_m"
    alternatives: ModelAlternatives = ModelAlternatives()
    backend: Literal["auto", "llama_cpp", "transformers", "openai"] = "auto"
    path: str | None = None
    adapter: str | None = None
    n_ctx: int = Field(4096, ge=512, le=131072)
    # Save the system prompt's KV state under HYBRID_LLM_HOME once per model, adapter and n_ctx,
    # and load it at start instead of processing the system prompt again (llama.cpp only).
    prompt_state_cache: bool = True
    threads: int | None = Field(None, ge=1, le=512)
    server: ServerSettings = ServerSettings()


class RagSettings(_Section):
    enabled: bool = True
    codebase_path: str = "."
    max_results: int = Field(8, ge=1, le=100)
    # Prompt tokens that retrieved code may fill. On 2 CPU cores every 1,000 prompt tokens
    # cost ~25 s before the first answer token (bench/llm_bench.py); raise it on a GPU server.
    context_tokens: int = Field(1000, ge=0)
    file_extensions: list[str] = Field(default_factory=list)
    index_dir: str | None = None
    chroma_url: str | None = None
    max_file_bytes: int = Field(1_000_000, ge=1)
    max_chunks_per_file: int = Field(5, ge=1)
    # How the two searches' candidates are ranked when both are on: "learned" (rag/fusion.py:
    # similarity, keyword score, name and file evidence, fitted weights) or "rrf" (ranks only,
    # with rrf_k, dense_weight, keyword_weight and non_definition_factor below).
    fusion: Literal["learned", "rrf"] = "learned"
    rrf_k: int = Field(60, ge=1)
    dense_weight: float = Field(1.0, ge=0)
    keyword_weight: float = Field(1.0, ge=0)
    # Fused score multiplier for chunks holding no whole definition (imports, data tables, the
    # pieces of a very long function); 1 ranks them like definitions. See retriever.py.
    non_definition_factor: float = Field(0.8, gt=0, le=1)
    # REPL: serve requests with keyword search while vectors are computed between requests;
    # false: a request waits until every chunk is embedded.
    background_embedding: bool = True
    # Retrieved code scoring below this (rag/relevance.py) stays out of the prompt and is
    # listed as "not used"; 0 sends every retrieved chunk. Calibrated by bench/relevance_bench.py.
    relevance_threshold: float = Field(0.25, ge=0, le=1)
    # The best `full_chunks` chunks go into the prompt whole, the rest as outlines (signatures,
    # docstrings, enclosing class), within `compact_tokens` instead of `context_tokens`: about
    # as many chunks in half the tokens (bench/reuse_bench.py). false: whole bodies only.
    compact_context: bool = True
    full_chunks: int = Field(1, ge=1)
    compact_tokens: int = Field(500, ge=0)

    @field_validator("index_dir")
    @classmethod
    def _index_dir_is_a_directory(cls, value: str | None) -> str | None:
        """A file given as index_dir (or on its way) fails here, not as a traceback later."""
        if value:
            path = Path(value).expanduser()
            existing = next(p for p in (path, *path.parents) if p.exists() or p == Path(p.anchor))
            if not existing.is_dir():
                raise ValueError(f"{existing} is not a directory")
        return value



class GenerationSettings(_Section):
    max_tokens: int = Field(1024, ge=1, le=32768)
    # Greedy by default: it passed more HumanEval problems than 0.2 (bench/humaneval_bench.py)
    # and makes answers reproducible.
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(40, ge=0)
    # Speculative decoding (llama.cpp): auto, off, lookup (prompt lookup), draft (draft model).
    speculative: Literal["auto", "off", "lookup", "draft"] = "auto"


class NetworkSettings(_Section):
    offline_mode: bool = True
    verify_no_leaks: bool = True
    allow_loopback: bool = True
    # Linux: run inside the OS network sandbox, with a web broker outside it (net/sandbox.py).
    sandbox: Literal["auto", "namespace", "seccomp", "off"] = "auto"


class WebSettings(_Section):
    backend: str = "duckduckgo"
    max_results: int = Field(5, ge=1, le=50)
    timeout: float = Field(10.0, gt=0, le=300)
    region: str = "us-en"
    fetch_pages: int = Field(3, ge=0, le=10)
    cache_ttl_hours: float = Field(24.0, ge=0)


class ReplSettings(_Section):
    # While a request is typed, retrieve for the text so far and process its context into the
    # model's KV cache, so that at Enter only the request's own tokens remain.
    typeahead: bool = True
    # The text so far is prepared this long after a change (and as often while typing goes on).
    typeahead_pause_ms: int = Field(300, ge=50, le=5000)


class LoggingSettings(_Section):
    log_requests: bool = True


class Config(_Section):
    model: ModelSettings = ModelSettings()
    rag: RagSettings = RagSettings()
    generation: GenerationSettings = GenerationSettings()
    network: NetworkSettings = NetworkSettings()
    web: WebSettings = WebSettings()
    repl: ReplSettings = ReplSettings()
    logging: LoggingSettings = LoggingSettings()


def config_path() -> Path:
    """The config file in use: $HYBRID_LLM_CONFIG, else config.json at the repository root."""
    override = os.environ.get(CONFIG_ENV)
    return Path(override).expanduser() if override else REPO_ROOT / "config.json"


def hybrid_home() -> Path:
    """Directory for all mutable state (indexes, history, logs, caches), created on demand.

    Never inside the user's codebase: $HYBRID_LLM_HOME, else the per-user data directory.
    """
    override = os.environ.get(HOME_ENV)
    if override:
        home = Path(override).expanduser()
    else:
        from platformdirs import user_data_dir

        home = Path(user_data_dir("hybrid-llm", appauthor=False))
    if not home.is_dir() or not override:
        # Ours to lock down: created here, or the default location (tightened for installs
        # made before it was private). An existing directory named by HYBRID_LLM_HOME may be
        # shared on purpose, so only what is created inside it is made private.
        private_directory(home)
    return home


# Owner-only modes for everything under HYBRID_LLM_HOME: indexes hold the user's code, logs
# their prompts, the history their commands.
_PRIVATE_DIR = 0o700
_PRIVATE_FILE = 0o600


def private_directory(path: Path) -> Path:
    """`path` with its missing parents created owner-only (0700); an existing one is tightened."""
    missing = [part for part in (path, *path.parents) if not part.exists()]
    for part in reversed(missing):
        part.mkdir(mode=_PRIVATE_DIR, exist_ok=True)
    _tighten(path)
    return path


def private_file(path: Path) -> Path:
    """Create `path` owner-only (0600) if missing, tighten it if not, in a private directory.

    Called before a library opens the file with its own default mode (SQLite, logging,
    prompt-toolkit's history); SQLite gives its -wal and -shm files the database's mode.
    """
    private_directory(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _PRIVATE_FILE))
    _tighten(path)
    return path


def restrict_to_owner(tree: Path) -> None:
    """Remove group and other access from everything under `tree` that is ours, for files that
    another library created with the default umask (Chroma's segments, lock files)."""
    for directory, subdirectories, files in os.walk(tree):
        for name in (*subdirectories, *files):
            _tighten(Path(directory) / name)
    _tighten(tree)


def _tighten(path: Path) -> None:
    try:
        info = path.lstat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077 and not stat.S_ISLNK(info.st_mode):
            path.chmod(stat.S_IMODE(info.st_mode) & ~0o077)
    except FileNotFoundError:  # removed meanwhile (a lock file, a temporary segment)
        pass


def models_dir() -> Path:
    """Where model files live: `models/` at the repository root, as the install script expects."""
    return REPO_ROOT / "models"


def _format_location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _describe_validation_error(path: Path, error: ValidationError) -> str:
    first = error.errors()[0]
    field = _format_location(first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown field '{field}'"
    given = first.get("input")
    return f"{path}: field '{field}': {first['msg']} (got {given!r})"


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows (use a finite number)")


def _parse_json(text: str, source: Path) -> tuple[object, list[str]]:
    """The JSON value and the keys given twice in one object (JSON keeps the last silently)."""
    duplicates: list[str] = []

    def object_pairs(pairs: list[tuple[str, object]]) -> dict:
        counts = Counter(key for key, _ in pairs)
        duplicates.extend(key for key, count in counts.items() if count > 1)
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=object_pairs, parse_constant=_refuse_constant), duplicates
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise ConfigError(f"{source}: arrays or objects nested too deeply to be a config") from None
    except ValueError as exc:  # a 5,000-digit integer, Infinity, NaN
        reason = str(exc).split(";")[0]  # not Python's advice to raise its digit limit
        raise ConfigError(f"{source}: invalid value: {reason}") from None


def parse_config(text: str, source: Path) -> Config:
    """Parse and validate config text; raise ConfigError with a one-line, pinpointed message.

    A key given twice is a warning (one line on stderr, once per process): the file still
    loads, with the later value, as JSON readers do.
    """
    raw, duplicates = _parse_json(text, source)
    for key in duplicates:
        _warn_once(f"warning: {source}: key '{key}' is given twice in one object; the later value is used")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a JSON object")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(source, exc)) from None


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    # Every command loads the config more than once (the CLI, then the subcommand).
    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr)


def load_config(path: Path | None = None) -> Config:
    """Load the config file in use; a missing file means all defaults."""
    source = path or config_path()
    if not source.exists():
        if path is not None or os.environ.get(CONFIG_ENV):
            raise ConfigError(f"{source}: config file not found")
        return Config()
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read config: {exc}") from None
    return parse_config(text, source)
