"""Type-ahead: the request being typed is prepared in the model's KV cache, and Enter uses it.

The real REPL (prompt-toolkit on a pipe, as a user types), the real default model, the real
index of a small repo. Slow: it loads the 1.1 GB model.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from prompt_toolkit.input import create_pipe_input

from hybrid_llm.config import Config
from hybrid_llm.llm.speculative import common_prefix_length
from hybrid_llm.repl.session import Session
from hybrid_llm.repl.typeahead import request_of
from tests.repl.test_end_to_end import shop  # noqa: F401 - the fixture: pricing.py, inventory.py
from tests.repl.test_terminal import CTRL_C, CTRL_D, Terminal

FIRST = "/code print apply_discount of 80.0 at 25 percent"
SECOND = "/code use in_stock to check whether any pears are left"
BACKSPACE = "\x7f"


def _wait_for(condition, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


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


def test_request_of_knows_what_will_reach_the_model(commands) -> None:
    resolve = commands.resolve
    assert request_of("make it async", resolve) == "make it async"
    assert request_of("/co write a test", resolve) == "write a test"
    assert request_of("/help", resolve) is None and request_of("/code ", resolve) is None
    assert request_of("/nosuch thing", resolve) is None and request_of("{", resolve) is None


@pytest.mark.slow
def test_typing_prepares_the_context_and_enter_uses_it(shop: Path, default_model_file: Path) -> None:
    config = Config.model_validate({
        "model": {"path": str(default_model_file)},
        "generation": {"temperature": 0, "max_tokens": 8},
        "rag": {"max_results": 1},  # so each request's context is one file
        "repl": {"typeahead_pause_ms": 200},
    })
    session = Session(config, shop)
    observed: dict = {}
    try:
        session.update_index(progress=lambda event: None)
        session.wait_for_model()
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
    finally:
        session.close()
