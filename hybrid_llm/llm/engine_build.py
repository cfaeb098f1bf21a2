"""Installing a llama.cpp engine that provably runs on this CPU (`hybrid-llm engine install`).

The install tries builds from fastest to safest and keeps the first one that passes the smoke
test (hybrid_llm.llm.engine_check) in a child process:

1. **native**: `llama-cpp-python` compiled with `-march=native`, minus AMX. On current Xeons,
   `-march=native` also compiles ggml's AMX kernels, which died with SIGILL on the first request
   (issue 14; the tile configuration is lost and worker threads lack the XTILEDATA permission).
   `-mno-amx-*` keeps every other instruction set of the machine (AVX-512, VNNI).
2. **portable**: no `-march=native`; AVX2/FMA/F16C only where the CPU reports them.
3. **prebuilt**: the `xllamacpp` wheel (also the only choice without a C++ compiler).

pip reuses a cached wheel whatever `CMAKE_ARGS` says, so pip's cache is never used here: each
build goes to a wheel directory of our own whose name is a hash of everything that shaped it
(version, flags, Python, and for native builds the CPU's flags), and what got installed is
checked by reading `llama_print_system_info` in a child, not by the version number.
Compiled builds carry our patch to llama.cpp's CPU kernels (hybrid_llm.llm.engine_patch), which makes
its faster settings exact for speculative decoding; the smoke test measures whether they are.
The outcome is recorded next to the interpreter (`engine.json`) for `doctor`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hybrid_llm.llm.engine_check import SmokeResult, run_smoke_test
from hybrid_llm.llm.engine_info import built_features, installed_system_info
from hybrid_llm.llm.engine_patch import PatchError, patch_fingerprint, patch_source_tree

LLAMA_CPP_VERSION = "0.3.36"
XLLAMACPP_VERSION = "2026.10.11549"
COMMON_CMAKE_ARGS = ("-DLLAVA_BUILD=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                     "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_CURL=OFF")
NO_AMX_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
FLAVORS = ("native", "portable", "prebuilt")
RECORD_NAME = "hybrid-llm-engine.json"


@dataclass(frozen=True)
class EngineBuild:
    """One way to get an engine: a compiled flavor with its CMake arguments, or the prebuilt wheel."""

    flavor: str
    description: str
    cmake_args: tuple[str, ...] = ()

    @property
    def compiled(self) -> bool:
        return self.flavor != "prebuilt"


@dataclass
class EngineRecord:
    """What the install ended with and why; `doctor` shows it."""

    flavor: str
    description: str
    reason: str
    system_info: str = ""
    smoke: dict = field(default_factory=dict)
    # The wheel directory of a compiled build (its name hashes version, flags and our patch):
    # an engine compiled from other sources or flags is rebuilt, not kept.
    wheel: str = ""


def cpu_flags() -> set[str]:
    """The CPU's feature flags as the kernel reports them (empty where /proc/cpuinfo is absent)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return set()


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")


def compiler() -> str | None:
    return next((name for name in ("c++", "g++", "clang++", "cl") if shutil.which(name)), None)


def compiler_accepts(flags: str) -> bool:
    """Whether the C++ compiler knows these flags (an old one that does not cannot emit AMX either)."""
    cxx = compiler()
    if cxx is None:
        return False
    probe = subprocess.run([cxx, *flags.split(), "-x", "c++", "-E", "-"], input="", capture_output=True,
                           text=True)
    return probe.returncode == 0


def native_build() -> EngineBuild:
    args = ["-DGGML_NATIVE=ON"]
    if _is_x86() and compiler_accepts(NO_AMX_FLAGS):
        args += [f"-DCMAKE_C_FLAGS={NO_AMX_FLAGS}", f"-DCMAKE_CXX_FLAGS={NO_AMX_FLAGS}"]
        return EngineBuild("native", "compiled for this CPU, without AMX", tuple(args))
    return EngineBuild("native", "compiled for this CPU", tuple(args))


def portable_build() -> EngineBuild:
    args = ["-DGGML_NATIVE=OFF"]
    if _is_x86():
        has_avx2 = {"avx", "avx2", "fma", "f16c"} <= cpu_flags()
        state = "ON" if has_avx2 else "OFF"
        args += [f"-DGGML_{name}={state}" for name in ("AVX", "AVX2", "FMA", "F16C")]
        args += ["-DGGML_AVX512=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
        return EngineBuild("portable", "portable build (AVX2)" if has_avx2 else "portable build (no AVX)",
                           tuple(args))
    return EngineBuild("portable", "portable build", tuple(args))


PREBUILT = EngineBuild("prebuilt", "prebuilt xllamacpp wheel (AVX2)")


def candidate_builds(first: str = "native") -> list[EngineBuild]:
    """Builds to try in order, starting at `first`; without a compiler only the prebuilt wheel."""
    if compiler() is None:
        return [PREBUILT]
    builds = [native_build(), portable_build(), PREBUILT]
    return builds[FLAVORS.index(first):]


def wheel_dir(build: EngineBuild) -> Path:
    """Our own wheel cache for exactly this build: pip's cache cannot hand back a wheel built
    with other flags, and a native wheel is never reused on a CPU with other features."""
    from platformdirs import user_cache_dir

    key_parts = [LLAMA_CPP_VERSION, build.flavor, *build.cmake_args, sys.version.split()[0], platform.machine(),
                 patch_fingerprint()]
    if build.flavor == "native":
        key_parts += sorted(cpu_flags())
    key = hashlib.sha256("\n".join(key_parts).encode()).hexdigest()[:16]
    return Path(user_cache_dir("hybrid-llm")) / "engine-wheels" / f"{build.flavor}-{key}"


def _pip(*args: str, extra_env: dict[str, str] | None = None) -> None:
    """pip, allowed onto the network: installing the engine is an explicit request (like
    `models pull`), and pip fetches the source and the binding's dependencies from the index.
    The child's environment is taken inside `allow_network`, which exports the online level:
    one taken before would carry the offline guard into pip, which then may not start its
    build backend."""
    from hybrid_llm.net import guard

    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    with guard.allow_network("engine install"):
        subprocess.run(command, check=True, env={**os.environ, **(extra_env or {})})


def build_wheel(build: EngineBuild, log) -> Path:
    """The wheel for this build, compiled now unless our cache already holds it."""
    directory = wheel_dir(build)
    wheels = sorted(directory.glob("llama_cpp_python-*.whl"))
    if wheels:
        log(f"    reusing the {build.flavor} wheel built earlier ({directory})")
        return wheels[-1]
    log(f"    compiling llama-cpp-python {LLAMA_CPP_VERSION} ({build.description}; "
        "6-7 min on 2 cores)")
    env = {"CMAKE_ARGS": shlex.join([*build.cmake_args, *COMMON_CMAKE_ARGS]),
           "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="hybrid-llm-engine-") as workdir:
        source = patched_source(Path(workdir), log)
        _pip("wheel", "--no-deps", "--no-cache-dir", "--wheel-dir", str(staging), source, extra_env=env)
    staging.rename(directory)
    return sorted(directory.glob("llama_cpp_python-*.whl"))[-1]


def patched_source(workdir: Path, log) -> str:
    """The binding's sdist unpacked under `workdir` with engine_patch applied; where the source is
    not the one the patch was written for, the plain source (batches then stay unrepacked)."""
    _pip("download", "--no-deps", "--no-binary", ":all:", "--no-cache-dir", "--dest", str(workdir),
         f"llama-cpp-python=={LLAMA_CPP_VERSION}")
    archive = next(workdir.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(archive) as tar:
        # the "data" filter (no links out, no device files) exists from Python 3.11.4 on
        tar.extractall(workdir, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    root = workdir / f"llama_cpp_python-{LLAMA_CPP_VERSION}"
    try:
        patch_source_tree(root)
    except PatchError as exc:
        log(f"    (compiling without our batch-exactness patch: {exc})")
    return str(root)


def install(build: EngineBuild, log) -> None:
    if build.compiled:
        wheel = build_wheel(build, log)
        _pip("install", str(wheel))  # brings the binding's own dependencies
        _pip("install", "--force-reinstall", "--no-deps", str(wheel))  # and exactly this build
    else:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "-y", "llama-cpp-python"],
                       check=False)
        _pip("install", f"xllamacpp=={XLLAMACPP_VERSION}")


def has_amx(system_info: str) -> bool:
    return bool({"AMX_INT8", "AMX_TILE", "AMX_BF16"} & built_features(system_info))


def verify(build: EngineBuild, model_present: bool) -> tuple[bool, str, str, SmokeResult | None]:
    """(ok, why not, system info, smoke result) for the engine installed just now."""
    info = ""
    if build.compiled:
        info, error = installed_system_info()
        if info is None:
            return False, error, "", None
        if has_amx(info):
            return False, "the installed library still contains the AMX kernels", info, None
    if not model_present:
        return True, "", info, None
    smoke = run_smoke_test(check_batches=True)
    return smoke.ok, smoke.cause, info, smoke


def record_path() -> Path:
    return Path(sys.prefix) / RECORD_NAME


def read_record() -> EngineRecord | None:
    try:
        return EngineRecord(**json.loads(record_path().read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _model_present() -> bool:
    from hybrid_llm.config import load_config
    from hybrid_llm.errors import UserError
    from hybrid_llm.llm.models import resolve_model_path

    try:
        resolve_model_path(load_config())
    except UserError:
        return False
    return True


def _still_verified(model_present: bool, log) -> EngineRecord | None:
    """The recorded engine, when it is still the installed one and still passes the smoke test."""
    record = read_record()
    if record is None:
        return None
    build = next((b for b in candidate_builds() if b.flavor == record.flavor), None)
    if build is None:
        return None
    if build.compiled and record.wheel != wheel_dir(build).name:
        return None
    ok, _why, info, smoke = verify(build, model_present)
    if not ok or (build.compiled and info != record.system_info):
        return None
    log(f"==> llama.cpp engine already installed and verified: {record.description}"
        + (f"; {smoke.line()}" if smoke else ""))
    if smoke:  # what this check measured replaces the older figures
        record.smoke = asdict(smoke)
        record_path().write_text(json.dumps(asdict(record), indent=2))
    return record


def ensure_engine(first: str = "native", log=print) -> EngineRecord:
    """Install the fastest build that passes the smoke test; raise RuntimeError if none does."""
    model_present = _model_present()
    if first == "native" and (record := _still_verified(model_present, log)) is not None:
        return record
    if not model_present:
        log("    (the model is not present yet: each build is checked by loading the library only)")
    failures: list[str] = []
    for build in candidate_builds(first):
        log(f"==> llama.cpp engine: {build.description}")
        started = time.monotonic()
        try:
            install(build, log)
        except subprocess.CalledProcessError as exc:
            failures.append(f"{build.flavor}: install failed (exit status {exc.returncode})")
            log(f"    ✘ {failures[-1]}")
            continue
        ok, why, info, smoke = verify(build, model_present)
        if not ok:
            failures.append(f"{build.flavor}: {why}")
            log(f"    ✘ {failures[-1]}")
            continue
        reason = "; ".join(failures) if failures else "the first choice passed the smoke test"
        record = EngineRecord(build.flavor, build.description, reason, info,
                              asdict(smoke) if smoke else {}, wheel_dir(build).name if build.compiled else "")
        record_path().write_text(json.dumps(asdict(record), indent=2))
        log(f"    ✔ {build.description} passed the smoke test"
            + (f": {smoke.line()}" if smoke else "") + f" ({time.monotonic() - started:.0f} s)")
        if failures:
            log(f"    ended with the {build.flavor} engine because: {reason}")
        return record
    raise RuntimeError("no llama.cpp engine runs on this machine: " + "; ".join(failures))
