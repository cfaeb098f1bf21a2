"""The engine smoke test (hybrid_llm/llm/engine_check.py) and the installed build (engine_build.py).

A crash of native code must come back as one line naming its cause. The crashing and hanging
engines here are simulated by a `llama_cpp` package placed first on PYTHONPATH that kills itself
with the signal (or sleeps) when imported, exactly where the real library would run its kernels;
everything else (the CLI, the child process, the config, the model file) is real.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid_llm.llm.engine_build import (
    NO_AMX_FLAGS,
    EngineBuild,
    candidate_builds,
    compiler_accepts,
    has_amx,
    native_build,
    portable_build,
    read_record,
    wheel_dir,
)
from hybrid_llm.llm.engine_check import describe_exit, run_smoke_test
from hybrid_llm.llm.engine_info import installed_system_info


def _fake_engine(tmp_path: Path, body: str) -> Path:
    package = tmp_path / "fake_engine" / "llama_cpp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body)
    return package.parent


def _config_for(tmp_path: Path, model: Path) -> Path:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": {"path": str(model), "backend": "llama_cpp"}}))
    return config


def test_engine_killed_by_sigill_is_one_line_naming_illegal_instruction(tiny_gguf: Path, tmp_path: Path) -> None:
    fake = _fake_engine(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n")
    env = {**os.environ, "PYTHONPATH": str(fake), "HYBRID_LLM_CONFIG": str(_config_for(tmp_path, tiny_gguf))}
    result = subprocess.run([sys.executable, "-m", "hybrid_llm", "engine", "check"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "SIGILL" in lines[0] and "illegal instruction" in lines[0]
    assert "Traceback" not in result.stderr


def test_doctor_reports_a_crashing_engine_with_the_fix(tiny_gguf: Path, tmp_path: Path) -> None:
    fake = _fake_engine(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n")
    env = {**os.environ, "PYTHONPATH": str(fake), "HYBRID_LLM_CONFIG": str(_config_for(tmp_path, tiny_gguf))}
    result = subprocess.run([sys.executable, "-m", "hybrid_llm", "doctor"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 1
    engine_line = next(line for line in result.stdout.splitlines() if "llama.cpp engine" in line)
    assert engine_line.startswith("✘") and "illegal instruction" in engine_line
    assert "hybrid-llm engine install" in engine_line


def test_a_hanging_engine_is_killed_and_reported(tiny_gguf: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_engine(tmp_path, "import time\ntime.sleep(600)\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    monkeypatch.setenv("HYBRID_LLM_CONFIG", str(_config_for(tmp_path, tiny_gguf)))
    result = run_smoke_test(timeout=8)
    assert not result.ok
    assert "hung" in result.line() and "\n" not in result.line()


@pytest.mark.parametrize("signum, words", [(signal.SIGSEGV, "segmentation fault"), (signal.SIGABRT, "aborted"),
                                           (signal.SIGKILL, "out of memory")])
def test_real_child_signals_are_named(signum: signal.Signals, words: str) -> None:
    child = subprocess.run([sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(signum)})"],
                           capture_output=True, text=True)
    line = describe_exit(child.returncode, child.stderr)
    assert signum.name in line and words in line


def test_a_failing_child_reports_its_last_error_line() -> None:
    line = describe_exit(1, "loading...\nerror: UserError: model is not usable\n")
    assert line.endswith("UserError: model is not usable")


def test_wheels_are_cached_per_build_so_other_flags_are_never_reused() -> None:
    native, portable = native_build(), portable_build()
    changed = EngineBuild(native.flavor, native.description, native.cmake_args + ("-DGGML_AVX512=OFF",))
    assert len({wheel_dir(native), wheel_dir(portable), wheel_dir(changed)}) == 3
    assert wheel_dir(native) == wheel_dir(native_build())


def test_candidates_go_from_fastest_to_safest() -> None:
    flavors = [build.flavor for build in candidate_builds()]
    assert flavors[-1] == "prebuilt"
    assert flavors in (["native", "portable", "prebuilt"], ["prebuilt"])
    assert [b.flavor for b in candidate_builds("portable")][0] in ("portable", "prebuilt")


def test_native_build_excludes_amx_wherever_the_compiler_could_emit_it() -> None:
    if not (platform.machine() == "x86_64" and compiler_accepts(NO_AMX_FLAGS)):
        pytest.skip("this compiler cannot emit AMX instructions")
    build = native_build()
    assert "-DGGML_NATIVE=ON" in build.cmake_args
    assert f"-DCMAKE_CXX_FLAGS={NO_AMX_FLAGS}" in build.cmake_args
    assert f"-DCMAKE_C_FLAGS={NO_AMX_FLAGS}" in build.cmake_args


@pytest.mark.slow
def test_installed_library_is_the_verified_build_without_amx() -> None:
    """install.sh records what it installed; the library in the venv must be that build, and a
    compiled build must not contain the AMX kernels that crashed (issue 14)."""
    info, error = installed_system_info()
    assert info is not None, error
    record = read_record()
    assert record is not None, "run ./install.sh: it records the engine it verified"
    if record.flavor != "prebuilt":
        assert info == record.system_info
        assert not has_amx(info), info


@pytest.mark.slow
def test_the_install_compiled_our_patch_in_and_measured_it_exact() -> None:
    """On x86 with AVX2 a compiled engine carries engine_patch, and the install's batch check
    found its faster settings exact: that is what lets speculative decoding use them."""
    record = read_record()
    assert record is not None, "run ./install.sh: it records the engine it verified"
    if record.flavor == "prebuilt" or "AVX2 = 1" not in record.system_info:
        pytest.skip("the patch is for llama.cpp's AVX2 kernels, compiled by the install")
    assert record.wheel == wheel_dir(next(b for b in candidate_builds() if b.flavor == record.flavor)).name
    assert record.smoke.get("patched_batch_logit_difference") == 0, record.smoke


@pytest.mark.slow
def test_real_engine_passes_the_smoke_test_with_its_speed(default_model_file: Path) -> None:
    result = run_smoke_test()
    assert result.ok, result.cause
    assert result.prefill_tok_s > 0 and result.decode_tok_s > 0
    assert "tok/s" in result.line()
    # `engine check` and `doctor` do not repeat the install's batch check: they report its verdict.
    record = read_record()
    if record is not None and record.smoke.get("patched_batch_logit_difference") == 0:
        assert "speculative decoding is exact" in result.with_batch_check_of(record.smoke).line()
    assert "speculative" not in result.with_batch_check_of({}).line()
