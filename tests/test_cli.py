"""Entry points: the console script and `python -m hybrid_llm` behave the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hybrid_llm import __version__
from hybrid_llm.config import REPO_ROOT


def test_python_m_prints_version() -> None:
    result = subprocess.run([sys.executable, "-m", "hybrid_llm", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.strip() == f"hybrid-llm {__version__}"


def test_console_script_prints_version() -> None:
    script = Path(sys.executable).parent / "hybrid-llm"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.stdout.strip() == f"hybrid-llm {__version__}"


def test_run_sh_passes_arguments_through() -> None:
    result = subprocess.run([str(REPO_ROOT / "run.sh"), "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_config_error_is_one_line_on_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{")
    env_cmd = [sys.executable, "-m", "hybrid_llm", "models", "path"]
    result = subprocess.run(env_cmd, capture_output=True, text=True,
                            env={"HYBRID_LLM_CONFIG": str(bad), "HYBRID_LLM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {bad}: invalid JSON at line 1, column 2")


def test_models_path_prints_the_default_model_location() -> None:
    result = subprocess.run([sys.executable, "-m", "hybrid_llm", "models", "path"], capture_output=True, text=True)
    assert result.stdout.strip() == str(REPO_ROOT / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
