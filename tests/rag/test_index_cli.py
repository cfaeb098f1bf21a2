"""`hybrid-llm index` run as a real subprocess on real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hybrid_llm", "index", *args]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(_command(*args), capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def main():\n    return 'hello'\n")
    (root / "src" / "util.js").write_text("export function add(a, b) {\n  return a + b;\n}\n")
    (root / ".env").write_text("TOKEN=abc\n")
    return root


def test_json_summary_has_exactly_the_documented_shape(repo):
    result = _run(str(repo), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert list(summary) == [
        "files_indexed", "files_unchanged", "files_deleted", "files_skipped", "chunks",
        "secrets_redacted", "languages", "seconds",
    ]
    assert summary["files_indexed"] == 2
    assert summary["files_skipped"] == {"secret": 1}
    assert summary["languages"] == {"javascript": 1, "python": 1}
    assert summary["chunks"] == 2
    assert summary["secrets_redacted"] == 0
    assert isinstance(summary["seconds"], float) and summary["seconds"] > 0
    assert "embedding" in result.stderr  # progress goes to stderr, never stdout

    (repo / "src" / "app.py").unlink()
    again = json.loads(_run(str(repo), "--json").stdout)
    assert (again["files_indexed"], again["files_unchanged"], again["files_deleted"]) == (0, 1, 1)


def test_human_summary_and_rebuild(repo):
    (repo / "src" / "settings.py").write_text('GITHUB_TOKEN = "ghp_' + "x1Y2z3" * 6 + '"\n')
    _run(str(repo))
    result = _run(str(repo), "--rebuild")
    assert result.returncode == 0, result.stderr
    assert "files indexed   3" in result.stdout
    assert "files skipped   1 (secret 1)" in result.stdout
    assert "languages       python 2, javascript 1" in result.stdout
    assert "redacted        1 secrets (keys, tokens, passwords)" in result.stdout


def test_path_defaults_to_the_configured_codebase(repo, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"rag": {"codebase_path": str(repo)}}))
    result = _run("--json", env={**os.environ, "HYBRID_LLM_CONFIG": str(config)})
    assert json.loads(result.stdout)["files_indexed"] == 2


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_keeps_finished_files(repo):
    # Enough chunks of realistic length for embedding to outlast a 2 s progress line.
    body = "".join(f"    total_{line} = values.get('key_{line}', {line}) * factor + offset\n" for line in range(30))
    for number in range(1500):
        (repo / "src" / f"gen{number}.py").write_text(
            f"def generated_{number}(values, factor, offset):\n{body}    return factor\n")
    process = subprocess.Popen(_command(str(repo)), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        done, total = _counts(line) if line.startswith("embedding") else (0, 0)
        if 0 < done < total:  # in the middle of embedding
            process.send_signal(signal.SIGINT)
            break
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "interrupted: files finished so far are kept" in stdout
    assert "waiting for vectors" in stdout

    resumed = json.loads(_run(str(repo), "--json").stdout)
    assert resumed["files_unchanged"] == 1502 and resumed["files_indexed"] == 0


def _counts(progress_line: str) -> tuple[int, int]:
    """(done, total) from a progress line such as `embedding [###---] 256/1500 chunks ...`."""
    done, total = progress_line.split("]", 1)[1].split()[0].split("/")
    return int(done), int(total)


def test_missing_path_is_a_one_line_error(tmp_path):
    result = _run(str(tmp_path / "nope"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "not a directory" in result.stderr


def test_prepare_embedder_is_idempotent():
    for _ in range(2):
        result = _run("--prepare-embedder")
        assert result.returncode == 0, result.stderr
        assert "code-minilm-l6-int8.onnx" in result.stderr  # the shipped model, nothing exported


def test_unreadable_directory_is_counted_and_indexing_goes_on(unprivileged_user):
    prefix, scratch = unprivileged_user
    root = scratch / "repo"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "hidden.py").write_text("def hidden():\n    return 1\n")
    (root / "app.py").write_text("def main():\n    return 'hello'\n")
    (root / "locked").chmod(0)
    env = {**os.environ, "HYBRID_LLM_HOME": str(scratch / "home")}
    index = subprocess.run([*prefix, *_command(str(root), "--json")], capture_output=True,
                           text=True, timeout=300, env=env)
    assert index.returncode == 0, index.stderr
    summary = json.loads(index.stdout)
    assert summary["files_indexed"] == 1 and summary["files_skipped"]["unreadable"] == 1
    query = subprocess.run(
        [*prefix, sys.executable, "-m", "hybrid_llm", "query", "main", "--repo", str(root), "--json"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert query.returncode == 0, query.stderr
    assert "app.py" in query.stdout
