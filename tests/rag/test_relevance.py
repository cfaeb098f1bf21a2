"""The relevance gate on a real indexed codebase: a copy of the installed tenacity package
(real chunker, int8 MiniLM, Chroma, FTS5), asked through the real `Coder` with the shipped
config's threshold, the tiny local Qwen2 as the model, and once through `hybrid-llm ask` with
the real default model."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from hybrid_llm.cli import main
from hybrid_llm.coder import Coder
from hybrid_llm.config import Config, load_config
from hybrid_llm.llm.provider import BackendProvider
from hybrid_llm.rag.index import CodeIndex
from tests.llm.conftest import tiny_model_dir  # noqa: F401 - the shared session fixture

pytestmark = pytest.mark.slow  # builds a real index of ~130 chunks

UNRELATED = "write a function that reverses a singly linked list in place"
RELATED = "make the exponential backoff between retry attempts wait longer"
# Short everyday requests that share words with any codebase (none is in the gate's fitting data).
EVERYDAY = (
    "open data.csv and print how many rows it has",
    "parse a date like 31/12/1999 into day, month and year",
    "write a function that returns the largest of three numbers",
    "how do I check whether a key is in a dict?",
)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(codebase, index directory), indexed once for the module."""
    root = tmp_path_factory.mktemp("tenacity-copy")
    source = Path(importlib.util.find_spec("tenacity").submodule_search_locations[0])
    shutil.copytree(source, root / "repo" / "tenacity", ignore=shutil.ignore_patterns("__pycache__"))
    index_dir = root / "index"
    config = load_config()
    config.rag.index_dir = str(index_dir)
    index = CodeIndex.open(root / "repo", config)
    index.update()
    index.close()
    return root / "repo", index_dir


@pytest.fixture(scope="module")
def provider(tiny_model_dir: Path) -> BackendProvider:  # noqa: F811
    return BackendProvider(Config.model_validate({"model": {"path": str(tiny_model_dir), "n_ctx": 2048}}))


def shipped_config(model_dir: Path, index_dir: Path) -> Config:
    """The shipped config.json (its gate threshold) with the tiny model and the module's index."""
    config = load_config()
    config.model.path, config.model.n_ctx = str(model_dir), 2048
    config.generation.max_tokens, config.generation.temperature = 4, 0.0
    config.rag.index_dir = str(index_dir)
    return config


@pytest.fixture
def coder(tiny_model_dir: Path, indexed, provider: BackendProvider):  # noqa: F811
    coder = Coder(shipped_config(tiny_model_dir, indexed[1]), backend_provider=provider)
    yield coder
    coder.close()


def test_the_shipped_config_turns_the_gate_on():
    assert load_config().rag.relevance_threshold > 0


def test_an_unrelated_request_gets_no_code_and_costs_what_no_retrieval_costs(coder: Coder, indexed):
    repo, _ = indexed
    gated = coder.ask(UNRELATED, repo=repo)
    coder.clear()
    bare = coder.ask(UNRELATED, repo=None, use_rag=False)

    assert gated.sources == []
    assert gated.unused_sources, "what was retrieved and left out is listed, not hidden"
    assert all((repo / source.path).is_file() for source in gated.unused_sources)
    assert gated.timings["prompt_tokens"] == bare.timings["prompt_tokens"]


@pytest.mark.parametrize("request_text", EVERYDAY)
def test_a_short_everyday_request_gets_no_code(coder: Coder, indexed, request_text: str):
    answer = coder.ask(request_text, repo=indexed[0])

    assert answer.sources == [] and answer.unused_sources


def test_a_request_naming_an_identifier_of_the_codebase_gets_its_definition(coder: Coder, indexed):
    answer = coder.ask("why does wait_exponential never wait longer than its max?", repo=indexed[0])

    assert "tenacity/wait.py" in {source.path for source in answer.sources}


def test_a_request_about_the_codebase_gets_its_code(coder: Coder, indexed):
    answer = coder.ask(RELATED, repo=indexed[0])

    assert "tenacity/wait.py" in {source.path for source in answer.sources}


def test_naming_a_file_brings_its_not_used_code_in(coder: Coder, indexed):
    repo, _ = indexed
    left_out = coder.ask(UNRELATED, repo=repo).unused_sources
    coder.clear()
    names = [source.path.rsplit("/", 1)[-1] for source in left_out]
    # a name only one left-out file has (`__init__.py` would name several, and bring them all)
    chosen = next(source for source, name in zip(left_out, names) if names.count(name) == 1)
    named = chosen.path.rsplit("/", 1)[-1]

    answer = coder.ask(f"{UNRELATED}, in the style of {named}", repo=repo)

    assert answer.sources and {source.path for source in answer.sources} == {chosen.path}


def test_threshold_zero_turns_the_gate_off(tiny_model_dir: Path, indexed, provider: BackendProvider):  # noqa: F811
    config = shipped_config(tiny_model_dir, indexed[1])
    config.rag.relevance_threshold = 0.0
    coder = Coder(config, backend_provider=provider)

    answer = coder.ask(UNRELATED, repo=indexed[0])

    assert answer.sources
    coder.close()


def test_ask_with_the_real_model_answers_a_generic_request_without_code_context(
    default_model_file: Path, indexed, tmp_path: Path, monkeypatch, capsys
):
    repo, index_dir = indexed
    path = tmp_path / "config.json"
    settings = json.loads((Path(__file__).resolve().parents[2] / "config.json").read_text())
    settings["model"]["path"] = str(default_model_file)
    settings["rag"]["index_dir"] = str(index_dir)
    settings["generation"].update(max_tokens=96, temperature=0)
    path.write_text(json.dumps(settings))
    monkeypatch.setenv("HYBRID_LLM_CONFIG", str(path))

    assert main(["ask", UNRELATED, "--repo", str(repo)]) == 0
    plain = capsys.readouterr().out
    assert main(["ask", UNRELATED, "--repo", str(repo), "--json"]) == 0
    with_repo = json.loads(capsys.readouterr().out)
    assert main(["ask", UNRELATED, "--no-rag", "--json"]) == 0
    without = json.loads(capsys.readouterr().out)

    assert "```" in plain and "\nSources:" not in plain
    assert "\nNot used (name a file in your request to include it):\n  tenacity/" in plain
    assert with_repo["sources"] == [] and with_repo["not_used"]
    assert with_repo["timings"]["prompt_tokens"] == without["timings"]["prompt_tokens"]
    assert "def " in with_repo["answer"] and "tenacity" not in with_repo["answer"]
