"""`hybrid-llm doctor`: one line per check, and an exit status scripts can rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hybrid_llm.doctor import CheckResult, check_dependency


def run_doctor(env_overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_overrides}
    return subprocess.run([sys.executable, "-m", "hybrid_llm", "doctor"], capture_output=True,
                          text=True, env=env, timeout=120)


def test_missing_model_fails_with_the_fix(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": {"path": str(tmp_path / "absent.gguf")}}))
    result = run_doctor({"HYBRID_LLM_CONFIG": str(config), "HYBRID_LLM_HOME": str(tmp_path / "home")})
    assert result.returncode == 1
    model_line = next(line for line in result.stdout.splitlines() if line.startswith("✘ model"))
    assert "hybrid-llm models pull" in model_line


def test_broken_config_fails_and_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{\n  "rag": {"enabled": tru}\n}\n')
    result = run_doctor({"HYBRID_LLM_CONFIG": str(config), "HYBRID_LLM_HOME": str(tmp_path / "home")})
    assert result.returncode == 1
    assert any(line.startswith("✘ config") and "line 2" in line for line in result.stdout.splitlines())


def test_installed_system_passes(default_model_file: Path, tmp_path: Path) -> None:
    result = run_doctor({"HYBRID_LLM_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✔ model" in result.stdout
    engine_line = next(line for line in result.stdout.splitlines() if line.startswith("✔ llama.cpp engine"))
    assert "prefill" in engine_line and "decode" in engine_line and "tok/s" in engine_line


def test_missing_required_dependency_is_a_failure_with_a_fix() -> None:
    result = check_dependency("no_such_module_xyz", "no-such-dist", True)
    assert not result.ok and result.required
    assert "install.sh" in result.line()


def test_missing_optional_dependency_is_not_a_failure() -> None:
    result = check_dependency("no_such_module_xyz", "bitsandbytes", False)
    assert not result.required
    assert result.line().startswith("–")


def test_check_line_shape() -> None:
    assert CheckResult("x", True, "1.0").line() == "✔ x: 1.0"
    assert CheckResult("x", False, "gone", "do y").line() == "✘ x: gone — fix: do y"
