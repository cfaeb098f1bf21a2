"""The request log: what is written, redaction on disk, ratings, switching it off, crash safety."""

from __future__ import annotations

import json

import pytest

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.finetune.request_log import RequestLog, default_log_path

PLANTED_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAn0planted\n-----END RSA PRIVATE KEY-----"
PLANTED_TOKEN = "ghp_" + "Zq8" * 12


def _record(log: RequestLog, prompt: str = "add retries to fetch()", answer: str = "```python\n...\n```"):
    return log.record(
        prompt=prompt,
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": prompt}],
        sources=["net/fetch.py:10-40"],
        answer=answer,
        model="qwen2.5-coder-1.5b-instruct-q4_k_m",
        timings={"first_token_s": 0.8, "total_s": 4.1},
    )


def test_from_config_logs_under_hybrid_home(hybrid_home):
    log = RequestLog.from_config(Config())
    request_id = _record(log)
    assert log.path == hybrid_home / "logs" / "requests.jsonl" == default_log_path()
    (entry,) = list(log.entries())
    assert entry.id == request_id and entry.label is None
    assert entry.sources == ["net/fetch.py:10-40"] and entry.model.startswith("qwen2.5")
    assert entry.timings["total_s"] == 4.1 and entry.messages[1]["content"] == "add retries to fetch()"


def test_planted_private_key_and_token_never_reach_the_file(tmp_path):
    log = RequestLog(tmp_path / "requests.jsonl")
    _record(log, prompt=f"why is my deploy failing?\n{PLANTED_KEY}", answer=f"set GITHUB_TOKEN={PLANTED_TOKEN}")
    on_disk = (tmp_path / "requests.jsonl").read_text()
    assert "MIIEowIBAAKCAQEAn0planted" not in on_disk and PLANTED_TOKEN not in on_disk
    assert "[REDACTED:private-key]" in on_disk and "[REDACTED:github-token]" in on_disk
    (entry,) = list(log.entries())
    assert entry.redactions == 3  # prompt, the user message copy, and the answer
    assert entry.prompt.startswith("why is my deploy failing?")


def test_ratings_label_requests_and_the_latest_wins(tmp_path):
    log = RequestLog(tmp_path / "requests.jsonl")
    first, second = _record(log, "one"), _record(log, "two")
    assert log.last_id() == second
    log.rate(second, "bad")
    log.rate(second, "good")
    log.rate(first, "bad")
    labels = {entry.id: entry.label for entry in RequestLog(tmp_path / "requests.jsonl").entries()}
    assert labels == {first: "bad", second: "good"}


def test_last_id_of_a_new_session_is_the_newest_in_the_file(tmp_path):
    _record(RequestLog(tmp_path / "requests.jsonl"), "old")
    newest = _record(RequestLog(tmp_path / "requests.jsonl"), "newer")
    assert RequestLog(tmp_path / "requests.jsonl").last_id() == newest


def test_bad_ratings_are_refused_with_a_message(tmp_path):
    log = RequestLog(tmp_path / "requests.jsonl")
    request_id = _record(log)
    with pytest.raises(UserError, match="unknown rating 'great'"):
        log.rate(request_id, "great")
    with pytest.raises(UserError, match="no logged request with id nope"):
        log.rate("nope", "good")


def test_switched_off_logging_writes_nothing(hybrid_home):
    config = Config.model_validate({"logging": {"log_requests": False}})
    log = RequestLog.from_config(config)
    assert _record(log) is None
    assert not default_log_path().exists()
    with pytest.raises(UserError, match="logging.log_requests"):
        log.rate("x", "good")


def test_a_line_cut_short_by_a_crash_loses_only_that_line(tmp_path):
    path = tmp_path / "requests.jsonl"
    log = RequestLog(path)
    kept = _record(log, "kept")
    with path.open("a") as handle:
        handle.write('{"type": "request", "id": "torn", "prompt": "half a rec')  # crash mid-write
    after = _record(RequestLog(path), "after the crash")
    assert [entry.id for entry in RequestLog(path).entries()] == [kept, after]
    assert all(json.loads(line) for line in path.read_text().splitlines()[-1:])
