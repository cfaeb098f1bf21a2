"""Type-ahead: the request being typed is prepared in the model's KV cache, and Enter uses it.

The real REPL (prompt-toolkit on a pipe, as a user types), the real default model, the real
index of a small repo. Slow: it loads the 1.1 GB model.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prompt_toolkit.input import create_pipe_input

from hybrid_llm.config import Config
from hybrid_llm.llm.speculative import common_prefix_length
from hybrid_llm.repl.session import Session
from hybrid_llm.repl.typeahead import complete_last_word, request_of, words_of
from tests.repl.test_end_to_end import shop  # noqa: F401 - the fixture: pricing.py, inventory.py
from tests.repl.test_terminal import CTRL_C, CTRL_D, Terminal

FIRST = "/code print apply_discount of 80.0 at 25 percent"
SECOND = "/code use in_stock to check whether any pears are left"
# Retrieval ranks pricing.py first for the first part, and inventory.py first once the last
# words name `in_stock`.
TYPED, LAST_WORDS = "/code print the discounted price of apples ", "if in_stock"
BACKSPACE = "\x7f"


def _wait_for(condition, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextmanager
def ready_session(shop: Path, model_file: Path, rag: dict) -> Iterator[Session]:
    """A session on `shop` with the real default model loaded and the index built."""
    config = Config.model_validate({
        "model": {"path": str(model_file)},
        "generation": {"temperature": 0, "max_tokens": 8},
        "rag": rag,
        "repl": {"typeahead_pause_ms": 200},
    })
    session = Session(config, shop)
    try:
        session.update_index(progress=lambda event: None)
        session.wait_for_model()
        yield session
    finally:
        session.close()


class Spy:
    """Records what the real backend is asked (it still does all the work)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.prefilling = threading.Event()
        self.prefills = 0
        self.streamed: list[list[dict]] = []
        self.cached_at_request: list[list[int]] = []
        prefill, stream = backend.prefill, backend.stream

        def spied_prefill(messages, **options):
            self.prefills += 1
            self.prefilling.set()
            try:
                return prefill(messages, **options)
            finally:
                self.prefilling.clear()

        def spied_stream(messages, **options):
            self.streamed.append(list(messages))
            self.cached_at_request.append(list(backend._llama._input_ids))
            return stream(messages, **options)

        backend.prefill, backend.stream = spied_prefill, spied_stream


def test_the_word_being_typed_is_completed_from_the_code_retrieved_so_far() -> None:
    words = words_of(["class ReprHighlighter(RegexHighlighter):", "console = Console()\nconsole.print(x)"])
    assert complete_last_word("based on RegexHigh", words) == "based on RegexHighlighter"
    assert complete_last_word("with a Consol", words) == "with a Console", "case as typed, the commonest word"
    for finished in ("with a Console ", "print it.", "print x", "print zzz"):
        assert complete_last_word(finished, words) == finished


def test_request_of_knows_what_will_reach_the_model(commands) -> None:
    resolve = commands.resolve
    assert request_of("make it async", resolve) == "make it async"
    assert request_of("/co write a test", resolve) == "write a test"
    assert request_of("/help", resolve) is None and request_of("/code ", resolve) is None
    assert request_of("/nosuch thing", resolve) is None and request_of("{", resolve) is None


@pytest.mark.slow
def test_typing_prepares_the_context_and_enter_uses_it(shop: Path, default_model_file: Path) -> None:
    observed: dict = {}
    # One result, so that each request's context is one file.
    with ready_session(shop, default_model_file, {"max_results": 1}) as session:
        spy = Spy(session.provider.get())
        with create_pipe_input() as pipe:
            terminal = Terminal(session, pipe)
            typeahead = terminal.commands.io.typeahead
            buffer = terminal.commands.io._prompt.default_buffer

            def user() -> None:
                try:
                    for key in FIRST:
                        pipe.send_text(key)
                        time.sleep(0.02)
                    _wait_for(lambda: typeahead.state == "context ready")
                    observed["first"] = json.dumps(typeahead._messages)
                    pipe.send_text(BACKSPACE * len(FIRST))  # a cleared line drops it
                    _wait_for(lambda: buffer.text == "" and typeahead.state == "")
                    pipe.send_text(SECOND[:10])
                    _wait_for(spy.prefilling.is_set)
                    # Keystrokes while the model is busy preparing go straight into the line.
                    pipe.send_text(SECOND[10:])
                    _wait_for(lambda: buffer.text == SECOND)
                    observed["typed_while_preparing"] = spy.prefilling.is_set()
                    _wait_for(lambda: typeahead.state == "context ready" and typeahead._retrieved_for == SECOND)
                    observed["second"] = json.dumps(typeahead._messages)
                    observed["prefills"] = spy.prefills
                    pipe.send_text("\r")
                    _wait_for(lambda: session.last_answer is not None)
                    pipe.send_text("something else" + CTRL_C)  # Ctrl-C drops what was typed
                    time.sleep(0.5)
                    observed["after_ctrl_c"] = (typeahead.state, spy.prefills)
                finally:
                    pipe.send_text(CTRL_D)

            threading.Thread(target=user, daemon=True).start()
            assert terminal.run("") == 0

        assert "pricing.py" in observed["first"] and "inventory.py" not in observed["first"]
        assert "inventory.py" in observed["second"] and "pricing.py" not in observed["second"]
        assert observed["typed_while_preparing"]
        assert observed["after_ctrl_c"][0] == "" and observed["after_ctrl_c"][1] == observed["prefills"]

        # Enter sent the prepared prompt: all of it but the end of the request was cached.
        prompt = spy.backend._chat.tokens(spy.streamed[-1])
        cached = common_prefix_length(spy.cached_at_request[-1], prompt)
        assert json.dumps(spy.streamed[-1]) == observed["second"]
        assert "inventory.py" in spy.streamed[-1][-1]["content"]
        assert len(prompt) - cached <= 8, (len(prompt), cached)
        assert session.last_answer.text


@pytest.mark.slow
def test_last_words_that_re_rank_the_code_leave_only_the_request_to_process(
    shop: Path, default_model_file: Path
) -> None:
    observed: dict = {}
    with ready_session(shop, default_model_file, {"max_results": 2, "compact_context": False}) as session:
        spy = Spy(session.provider.get())
        with create_pipe_input() as pipe:
            terminal = Terminal(session, pipe)
            typeahead = terminal.commands.io.typeahead

            def user() -> None:
                try:
                    pipe.send_text(TYPED)
                    _wait_for(lambda: typeahead.state == "context ready" and typeahead._retrieved_for == TYPED)
                    observed["prepared"] = typeahead.prepared_messages[-1]["content"]
                    pipe.send_text(LAST_WORDS + "\r")  # faster than the type-ahead's pause
                    _wait_for(lambda: session.last_answer is not None)
                    observed["typed_sources"] = [source.citation for source in session.last_answer.sources]
                    session.last_answer = None
                    pipe.send_text("/clear\r" + TYPED + LAST_WORDS + "\r")  # the same request, pasted
                    _wait_for(lambda: session.last_answer is not None)
                    observed["pasted_sources"] = [source.citation for source in session.last_answer.sources]
                finally:
                    pipe.send_text(CTRL_D)

            threading.Thread(target=user, daemon=True).start()
            assert terminal.run("") == 0

        def files(message: str) -> list[str]:
            return re.findall(r"^### (\w+\.py):", message, re.MULTILINE)

        typed, pasted = (messages[-1]["content"] for messages in spy.streamed)
        # The last words re-ranked the code: inventory.py is now the best source ...
        assert files(observed["prepared"]) == ["pricing.py", "inventory.py"]
        assert observed["typed_sources"][0].startswith("inventory.py") and observed["typed_sources"] == observed["pasted_sources"]
        # ... yet the typed request keeps the prepared layout, so only its last words were left
        # to process; pasted, the same code is laid out best first.
        assert files(typed) == ["pricing.py", "inventory.py"] and files(pasted) == ["inventory.py", "pricing.py"]
        assert sorted(typed.split("\n\n")) == sorted(pasted.split("\n\n")), "the same excerpts, the same request"
        prompt = spy.backend._chat.tokens(spy.streamed[0])
        left = len(prompt) - common_prefix_length(spy.cached_at_request[0], prompt)
        assert left <= session.provider.get().count_tokens(LAST_WORDS) + 8, left
