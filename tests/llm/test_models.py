"""Model file checks on small files with their own hashes (never the 1 GB model)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.llm import models
from hybrid_llm.llm.models import ModelRegistry, ModelSpec, resolve_model_path, verify_file


def make_gguf(path: Path, size: int = 4096) -> str:
    data = b"GGUF" + bytes(range(256)) * (size // 256)
    data = data[:size]
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def small_spec(path: Path, digest: str) -> ModelSpec:
    return ModelSpec(name="tiny", filename=path.name, size=path.stat().st_size, approx_gb=0.0,
                     ram_gb=0.1, description="test model", hf_repo="none/none", sha256=digest)


def test_valid_file_verifies(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    spec = small_spec(path, make_gguf(path))
    assert verify_file(path, spec, ModelRegistry(tmp_path / "r.json"), full=True).ok


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    spec = small_spec(path, make_gguf(path))
    path.write_bytes(path.read_bytes()[:-100])
    result = verify_file(path, spec, ModelRegistry(tmp_path / "r.json"), full=True)
    assert not result.ok
    assert "wrong size" in result.message


def test_bit_flip_is_detected_even_after_a_cached_good_hash(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    spec = small_spec(path, make_gguf(path))
    registry = ModelRegistry(tmp_path / "r.json")
    assert verify_file(path, spec, registry, full=False).ok
    data = bytearray(path.read_bytes())
    data[2000] ^= 0x01
    path.write_bytes(bytes(data))
    result = verify_file(path, spec, registry, full=False)
    assert not result.ok
    assert "sha256 mismatch" in result.message


def test_not_a_gguf_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"<html>404</html>")
    assert "not a GGUF" in verify_file(path, None, ModelRegistry(tmp_path / "r.json"), full=True).message


def test_cached_hash_skips_rehash_when_file_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.gguf"
    spec = small_spec(path, make_gguf(path))
    registry = ModelRegistry(tmp_path / "r.json")
    assert verify_file(path, spec, registry, full=True).ok

    def fail(*args: object, **kwargs: object) -> str:
        raise AssertionError("re-hashed an unchanged file")

    monkeypatch.setattr(models, "sha256_file", fail)
    assert verify_file(path, spec, ModelRegistry(tmp_path / "r.json"), full=False).ok


def test_missing_model_error_names_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "models_dir", lambda: tmp_path)
    with pytest.raises(UserError) as error:
        resolve_model_path(Config())
    assert "hybrid-llm models pull" in str(error.value)
    assert "missing" in str(error.value)


def test_corrupt_model_error_names_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "models_dir", lambda: tmp_path)
    (tmp_path / models.DEFAULT_MODEL.filename).write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(UserError, match=r"wrong size.*hybrid-llm models pull"):
        resolve_model_path(Config())


def test_config_path_to_a_missing_file_names_pull(tmp_path: Path) -> None:
    config = Config.model_validate({"model": {"path": str(tmp_path / "none.gguf")}})
    with pytest.raises(UserError, match="hybrid-llm models pull"):
        resolve_model_path(config)


def test_registered_local_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / "mine.gguf"
    make_gguf(path)
    ModelRegistry().register("mine", path)
    config = Config.model_validate({"model": {"name": "mine"}})
    assert resolve_model_path(config) == path.resolve()
