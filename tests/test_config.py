"""config.json: the shipped file parses, errors point at the exact place, env vars override."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from hybrid_llm.config import REPO_ROOT, Config, ConfigError, hybrid_home, load_config, private_file


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.json"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_parses_and_is_offline_by_default() -> None:
    config = load_config(REPO_ROOT / "config.json")
    assert config.network.offline_mode is True
    assert config.model.name == "qwen2.5-coder-1.5b-instruct-q4_k_m"
    assert config.model.alternatives.high_ram.startswith("qwen2.5-coder-7b")


def test_shipped_config_spells_out_every_field() -> None:
    """Users learn the options from the shipped file, so it must list every section."""
    shipped = json.loads((REPO_ROOT / "config.json").read_text())
    assert set(shipped) == set(Config.model_fields)
    for section, model in Config.model_fields.items():
        assert set(shipped[section]) == set(model.annotation.model_fields), section


def test_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "model": {\n    "n_ctx": 4096,\n  }\n}\n')
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    assert "line 4, column 3" in message
    assert "\n" not in message


def test_comments_are_a_syntax_error_with_position(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  // the model\n  "model": {}\n}\n')
    with pytest.raises(ConfigError, match=r"line 2, column 3"):
        load_config(path)


def test_wrong_value_names_field_path_and_what_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"model": {"backend": "gpt5"}}))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "model.backend" in message
    for allowed in ("auto", "llama_cpp", "transformers", "openai"):
        assert allowed in message
    assert "'gpt5'" in message


def test_out_of_range_number_names_the_bound(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"generation": {"temperature": 7}}))
    with pytest.raises(ConfigError, match=r"generation\.temperature.*less than or equal to 2"):
        load_config(path)


def test_unknown_field_is_refused_so_typos_are_not_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"generation": {"max_token": 10}}))
    with pytest.raises(ConfigError, match=r"unknown field 'generation\.max_token'"):
        load_config(path)


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a JSON object"):
        load_config(write(tmp_path, "[1, 2]"))


def test_partial_config_keeps_defaults_for_the_rest(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, json.dumps({"rag": {"max_results": 3}})))
    assert config.rag.max_results == 3
    assert config.generation.max_tokens == Config().generation.max_tokens


def test_env_var_points_to_another_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, json.dumps({"network": {"offline_mode": False}}))
    monkeypatch.setenv("HYBRID_LLM_CONFIG", str(path))
    assert load_config().network.offline_mode is False


def test_env_var_to_missing_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_LLM_CONFIG", str(tmp_path / "nope.json"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config()


def test_home_env_var_holds_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state" / "deep"
    monkeypatch.setenv("HYBRID_LLM_HOME", str(target))
    assert hybrid_home() == target
    assert target.is_dir()


@pytest.mark.skipif(sys.platform != "linux", reason="XDG data dirs are a Linux convention")
def test_home_defaults_to_a_per_user_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HYBRID_LLM_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert hybrid_home() == tmp_path / "xdg" / "hybrid-llm"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"rag": {"max_results": ' + "9" * 5000 + "}}", "Exceeds the limit (4300 digits)"),
        ('{"rag": {"dense_weight": Infinity}}', "Infinity is not a number JSON allows"),
        ('{"rag": {"keyword_weight": NaN}}', "NaN is not a number JSON allows"),
        ('{"rag": {"index_dir": "/etc/passwd"}}', "/etc/passwd is not a directory"),
        ('{"rag": {"index_dir": "/etc/passwd/indexes"}}', "/etc/passwd is not a directory"),
    ],
)
def test_hostile_configs_are_one_clean_line_from_the_cli(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    result = subprocess.run(
        [sys.executable, "-m", "hybrid_llm", "query", "x", "--repo", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HYBRID_LLM_CONFIG": str(path)},
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr  # one line
    assert result.stderr.startswith(f"error: {path}: ") and expected in result.stderr


def test_infinite_floats_are_refused_in_code_too() -> None:
    with pytest.raises(ValidationError, match="finite number"):
        Config.model_validate({"rag": {"dense_weight": float("inf")}})


def test_a_duplicate_key_is_one_warning_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, '{"rag": {"dense_weight": 0.5, "dense_weight": 2.0}}')
    result = subprocess.run(
        [sys.executable, "-c", "from hybrid_llm.config import load_config; "
         "print(load_config().rag.dense_weight); load_config()"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HYBRID_LLM_CONFIG": str(path)},
    )
    assert result.stdout == "2.0\n"
    assert result.stderr == (
        f"warning: {path}: key 'dense_weight' is given twice in one object; the later value is used\n"
    )


def test_state_directories_and_files_are_created_owner_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HYBRID_LLM_HOME", str(tmp_path / "new" / "home"))
    home = hybrid_home()
    assert home.stat().st_mode & 0o777 == 0o700
    loose = home / "indexes"
    loose.mkdir(mode=0o755)
    (loose / "old.sqlite3").write_text("")
    (loose / "old.sqlite3").chmod(0o644)
    assert private_file(loose / "old.sqlite3").stat().st_mode & 0o777 == 0o600  # tightened
    assert loose.stat().st_mode & 0o777 == 0o700
    assert private_file(home / "logs" / "repl.log").stat().st_mode & 0o777 == 0o600
    assert (home / "logs").stat().st_mode & 0o777 == 0o700
