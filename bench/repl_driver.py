"""Driving the real REPL from a benchmark: prompt-toolkit's pipe input as the keyboard, the real
model behind it, and the first token of each answer timed from the moment Enter was sent."""

from __future__ import annotations

import io as stdio
import json
import platform
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any


def cpu_model() -> str:
    """`lscpu`'s model name, written next to every absolute figure."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def report(result: dict, json_path: Any | None) -> None:
    """Print the result as JSON, and write it to `json_path` too when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if json_path:
        json_path.write_text(text)


class FirstToken:
    """Wraps a llama.cpp backend's `stream` to time its first piece, and to record the prompt's
    tokens and what the KV cache held when the request reached the model."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.records: list[dict] = []
        stream = backend.stream

        def timed_stream(messages, **options):
            record = {"cached": list(backend._llama._input_ids), "prompt": backend._chat.tokens(messages)}
            self.records.append(record)
            for piece in stream(messages, **options):
                record.setdefault("first", time.monotonic())
                yield piece

        backend.stream = timed_stream

    def prepared_tokens(self, record: dict) -> int:
        from hybrid_llm.llm.speculative import common_prefix_length

        return common_prefix_length(record["cached"], record["prompt"])

    def section_at(self, tokens: list[int], position: int) -> str:
        """Which part of the prompt token `position` falls in: the excerpt under whose
        `### path:start-end` header it lies, the request, or what comes before the excerpts."""
        text = self.backend._llama.detokenize(tokens[:position]).decode("utf-8", errors="replace")
        if "\n\nRequest:" in text:
            return "request"
        header = text.rfind("### ")
        return text[header + 4 :].split("\n", 1)[0] if header >= 0 else "before the excerpts"


class PipeRepl:
    """The REPL of `session` on a pipe; `drive(user)` runs `user(self)` on a thread (it types)
    while the REPL loop runs here, and ends the REPL with Ctrl-D when `user` returns."""

    def __init__(self, session: Any) -> None:
        from prompt_toolkit.input import create_pipe_input
        from prompt_toolkit.output import DummyOutput
        from rich.console import Console

        from hybrid_llm.repl.cli import terminal_commands

        self.session = session
        self._pipe_context = create_pipe_input()
        self.pipe = self._pipe_context.__enter__()
        self.commands = terminal_commands(session, input=self.pipe, output=DummyOutput(),
                                          console=Console(file=stdio.StringIO(), width=100))
        self.timer = FirstToken(session.provider.get())

    def drive(self, user: Callable[[PipeRepl], None]) -> None:
        from hybrid_llm.repl.loop import run_loop

        def typist() -> None:
            try:
                user(self)
            finally:
                self.pipe.send_text("\x04")

        threading.Thread(target=typist, daemon=True).start()
        try:
            run_loop(self.commands.io, self.commands)
        finally:
            self._pipe_context.__exit__(None, None, None)

    def forget_conversation(self) -> None:
        """/clear, and the model's KV cache back to the system prompt alone."""
        from hybrid_llm.llm.prompt import SYSTEM_PROMPT

        self.pipe.send_text("/clear\r")
        time.sleep(1.0)
        typeahead = self.commands.io.typeahead
        typeahead.pause()
        backend = self.timer.backend
        backend._llama.reset()
        backend.warm(SYSTEM_PROMPT)
        typeahead.resume()

    def ask(self, request: str, *, chars_per_second: float | None = None) -> dict:
        """Type `request` (all at once when no speed is given), press Enter, wait for the
        answer; returns the time to first token after Enter and what was prepared by then."""
        records = self.timer.records
        before = len(records)
        self.session.last_answer = None
        if chars_per_second:
            for key in request:
                self.pipe.send_text(key)
                time.sleep(1 / chars_per_second)
        else:
            self.pipe.send_text(request)
        prepared = self.commands.io.typeahead.prepared_messages
        enter = time.monotonic()
        self.pipe.send_text("\r")
        while len(records) == before or "first" not in records[-1]:
            time.sleep(0.01)
        record = records[-1]
        while self.session.last_answer is None or self.session.foreground.is_busy():
            time.sleep(0.05)
        answer = self.session.last_answer
        cached = self.timer.prepared_tokens(record)
        return {
            "ttft_s": round(record["first"] - enter, 2),
            "prompt_tokens": len(record["prompt"]),
            "tokens_left_at_enter": len(record["prompt"]) - cached,
            "first_uncached": self.timer.section_at(record["prompt"], cached),
            **self._prepared_vs_sent(prepared, record["prompt"]),
            "after_enter_ms": {key: answer.timings.get(key) for key in ("index_ms", "retrieval_ms", "prefill_ms")},
            "sources": [source.citation for source in answer.sources],
        }

    def _prepared_vs_sent(self, prepared: list | None, sent: list[int]) -> dict:
        """How the last prompt the type-ahead prepared differs from the one Enter sent: the
        tokens they share and the section where they part."""
        from hybrid_llm.llm.speculative import common_prefix_length

        if prepared is None:
            return {}
        tokens = self.timer.backend._chat.tokens(prepared)
        shared = common_prefix_length(tokens, sent)
        return {"prepared_shared_tokens": shared, "prepared_parts_at": self.timer.section_at(sent, shared)}
