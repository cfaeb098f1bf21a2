"""`hybrid-llm query`: the JSON contract on a real small repository, real index and models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_llm.cli import main
from tests.rag.samples import SAMPLES


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for path, text in SAMPLES.values():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / "net").mkdir()
    (root / "net" / "http.py").write_text(
        "def parse_http_response(raw):\n    head, _, body = raw.partition('\\n\\n')\n"
        "    return head, body\n"
    )
    return root


def _assert_result_shape(result: dict) -> None:
    assert set(result) == {"path", "start_line", "end_line", "symbol", "language", "score", "sources"}
    assert isinstance(result["path"], str) and not result["path"].startswith("/")
    assert isinstance(result["start_line"], int) and isinstance(result["end_line"], int)
    assert 1 <= result["start_line"] <= result["end_line"]
    assert result["symbol"] is None or isinstance(result["symbol"], str)
    assert isinstance(result["language"], str)
    assert isinstance(result["score"], float)
    assert result["sources"] and set(result["sources"]) <= {"dense", "keyword"}


def test_query_json_contract_and_progress_only_on_stderr(repo: Path, capsys) -> None:
    status = main(["query", "parse_http_response", "--repo", str(repo), "--k", "4", "--json"])

    captured = capsys.readouterr()
    assert status == 0
    results = json.loads(captured.out)  # stdout is nothing but the JSON list
    assert 1 <= len(results) <= 4
    for result in results:
        _assert_result_shape(result)
    assert results[0]["path"] == "net/http.py"
    assert (results[0]["start_line"], results[0]["end_line"]) == (1, 3)
    assert results[0]["symbol"] == "parse_http_response" and results[0]["language"] == "python"
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert "embedding" in captured.err  # the index was built first, visibly, on stderr


def test_batch_prints_one_line_per_query_in_order(repo: Path, tmp_path: Path, capsys) -> None:
    batch = tmp_path / "queries.jsonl"
    batch.write_text('{"id": 1, "query": "greet someone by name"}\n\n'
                     '{"id": "two", "query": "parseHttpResponse"}\n')

    status = main(["query", "--repo", str(repo), "--batch", str(batch), "--k", "3", "--json",
                   "--language", "python"])

    lines = capsys.readouterr().out.splitlines()
    assert status == 0 and len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["id"] == 1 and second["id"] == "two"
    for result in first["results"] + second["results"]:
        _assert_result_shape(result)
        assert result["language"] == "python"
    assert len(second["results"]) <= 3
    assert second["results"][0]["path"] == "net/http.py"


def test_bad_input_is_one_clear_line(repo: Path, tmp_path: Path, capsys) -> None:
    batch = tmp_path / "bad.jsonl"
    batch.write_text('{"id": 1, "query": "ok"}\n{"id": 2, "text": "no query field"}\n')

    assert main(["query", "--repo", str(repo), "--batch", str(batch)]) == 1
    assert capsys.readouterr().err.strip() == (
        f'error: {batch}:2: expected {{"id": ..., "query": "..."}}'
    )
    assert main(["query", "x", "--repo", str(tmp_path / "missing")]) == 1
    assert "not a directory" in capsys.readouterr().err
    assert main(["query", "--repo", str(repo)]) == 1
    assert "give either a query TEXT or --batch FILE" in capsys.readouterr().err
