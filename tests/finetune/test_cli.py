"""`hybrid-llm dataset build` end to end through the real argument parser."""

from __future__ import annotations

import json

from hybrid_llm.cli import main
from hybrid_llm.config import Config
from hybrid_llm.finetune.request_log import RequestLog

CODE = '''\
def greet(name):
    message = "hello " + name
    return message.upper()
'''


def test_build_from_code_and_log(tmp_path, capsys, monkeypatch, tiny_gguf):
    # The tiny model as the configured one: tokens are counted with its vocabulary.
    (tmp_path / "config.json").write_text(json.dumps({"model": {"path": str(tiny_gguf)}}))
    monkeypatch.setenv("HYBRID_LLM_CONFIG", str(tmp_path / "config.json"))
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "greet.py").write_text(CODE)
    log = RequestLog.from_config(Config())  # the log lives in HYBRID_LLM_HOME, not in the config
    request_id = log.record(prompt="p", messages=[{"role": "user", "content": "make greet shout"}],
                            sources=[], answer="use .upper()", model="m", timings={})
    log.rate(request_id, "good")
    out = tmp_path / "ds"
    status = main(["dataset", "build", "--from-log", "--from-code", str(tmp_path / "repo"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    assert "wrote 1 train + 1 validation examples" in printed and "1 from code, 1 from log" in printed
    assert "prompt tokens: mean" in printed and "completion tokens: mean" in printed
    assert "tokens counted with the tiny-qwen2.gguf vocabulary" in printed
    rows = [json.loads(line) for name in ("train", "validation") for line in (out / f"{name}.jsonl").open()]
    assert sorted(row["completion"][0]["content"][:3] for row in rows) == ["```", "use"]


def test_build_needs_a_source(tmp_path, capsys):
    assert main(["dataset", "build", "--out", str(tmp_path / "ds")]) == 1
    assert capsys.readouterr().err.strip() == "error: nothing to build from: pass --from-log, --from-code PATH, or both"


def test_build_from_an_empty_log_says_how_to_get_examples(tmp_path, capsys):
    assert main(["dataset", "build", "--from-log", "--out", str(tmp_path / "ds")]) == 1
    assert "rate answers with /good" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()
