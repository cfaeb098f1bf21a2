"""Fakes for the REPL tests: a scripted io, and a fake model behind the real `Coder`.

The fake backend stands in for the LLM only (the real llama.cpp model is exercised by the LLM
tests and by this area's one slow end-to-end test); everything else the REPL touches is real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from hybrid_llm.config import Config
from hybrid_llm.net.search import SearchResult
from hybrid_llm.repl.commands import Commands
from hybrid_llm.repl.session import Session

FAKE_ANSWER = "Here it is:\n\n```python\nprint('hello')\n```\n\nand a second one:\n\n```python\nx = 2\n```\n"


class FakeBackend:
    """Streams a fixed answer word by word; `delay` slows it so a test can interrupt it."""

    name = "fake"
    context_length = 4096

    def __init__(self, answer: str = FAKE_ANSWER, delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.calls: list[Sequence[dict]] = []
        self.started = threading.Event()
        self._cancelled = threading.Event()

    def stream(self, messages, *, max_tokens, temperature, top_p, top_k, stop=()) -> Iterator[str]:
        self.calls.append(list(messages))
        self._cancelled.clear()
        for piece in self.answer.split(" "):
            if self._cancelled.is_set():
                return
            self.started.set()
            yield piece + " "
            time.sleep(self.delay)

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def cancel(self) -> None:
        self._cancelled.set()

    def close(self) -> None:
        pass


class FakeProvider:
    """A `BackendProvider` whose model is always loaded: the fake backend."""

    def __init__(self, backend: FakeBackend | None = None) -> None:
        self.backend = backend or FakeBackend()
        self.model_name = "fake-model"
        self.ready = True
        self.switched_to: list[str] = []

    def start_loading(self) -> None:
        pass

    def get(self, timeout: float | None = None) -> FakeBackend:
        return self.backend

    def switch(self, name: str) -> None:
        self.switched_to.append(name)
        self.model_name = name


class RecordingSearchClient:
    """Stands in for the internet search engine: records each query, returns fixed results."""

    engine = "local-test-engine"

    def __init__(self) -> None:
        self.queries: list[str] = []

    def search(self, query: str, max_results: int) -> list[SearchResult]:
        self.queries.append(query)
        return [SearchResult("Example page", "http://127.0.0.1:9/example", "an example snippet")]


class _Status:
    def __init__(self, record: list[str]) -> None:
        self._record = record

    def update(self, message: str) -> None:
        self._record.append(message)


class ScriptedIO:
    """A `ReplIO` that reads from a list and records everything said, by kind."""

    def __init__(self, lines: Sequence[str] = (), confirm: bool = False) -> None:
        self.lines = list(lines)
        self.confirm = confirm
        self.output: list[str] = []
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.diffs: list[str] = []
        self.questions: list[str] = []
        self.status_lines: list[str] = []
        self.streamed = ""

    def read_line(self, prompt: str) -> str:
        if not self.lines:
            raise EOFError
        return self.lines.pop(0)

    def tool_output(self, *messages: str) -> None:
        self.output.extend(messages)

    def tool_warning(self, message: str) -> None:
        self.warnings.append(message)

    def tool_error(self, message: str) -> None:
        self.errors.append(message)

    def confirm_ask(self, question: str, default: bool = False) -> bool:
        self.questions.append(question)
        return self.confirm

    def show_diff(self, diff: str) -> None:
        self.diffs.append(diff)

    def answer_stream(self):
        io = self

        class _Stream:
            def feed(self, token: str) -> None:
                io.streamed += token

            def finish(self) -> None:
                io.streamed += "\n<end>\n"

        return _Stream()

    @contextmanager
    def status(self, message: str):
        self.status_lines.append(message)
        yield _Status(self.status_lines)

    @property
    def text(self) -> str:
        return "\n".join(self.output)


def offline_config(**sections: dict) -> Config:
    """The shipped defaults with retrieval off, so a test needs no embedder unless it asks."""
    raw = {"rag": {"enabled": False}, "generation": {"max_tokens": 256}}
    raw.update(sections)
    return Config.model_validate(raw)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "src").mkdir()
    (root / "src" / "util.py").write_text("def greet(name):\n    return f'hi {name}'\n")
    (root / "README.md").write_text("# demo\n")
    return root


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def search_client() -> RecordingSearchClient:
    return RecordingSearchClient()


@pytest.fixture
def session(repo: Path, provider: FakeProvider, search_client: RecordingSearchClient) -> Session:
    session = Session(offline_config(), repo, provider=provider, search_client=search_client)
    yield session
    session.close()


@pytest.fixture
def io() -> ScriptedIO:
    return ScriptedIO()


@pytest.fixture
def commands(io: ScriptedIO, session: Session) -> Commands:
    return Commands(io, session)


@pytest.fixture
def offline():
    """The real network guard, offline (loopback allowed), restored to its previous level after."""
    from hybrid_llm.net import guard

    with guard.offline_mode(allow_loopback=True):
        yield guard
