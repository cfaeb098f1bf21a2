"""The OpenAI-compatible backend against a small local HTTP server started by each test.

The server stands in for vLLM / llama.cpp's server / Ollama (the internet is the only thing we
fake): it speaks the same SSE wire format, so the real httpx client and parser run.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.llm.base import create_backend
from hybrid_llm.llm.openai_backend import OpenAICompatibleBackend

GENERATION = {"max_tokens": 64, "temperature": 0.2, "top_p": 0.9, "top_k": 40}


class FakeServer:
    """Records requests; streams `pieces`, sleeping `delay` seconds before each after the first."""

    def __init__(self, pieces: list[str], *, delay: float = 0.0, status: int = 200) -> None:
        self.pieces, self.delay, self.status = pieces, delay, status
        self.requests: list[tuple[str, dict, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, dict(self.headers), body))
                if self.path == "/tokenize":
                    return self._json(200, {"tokens": list(range(len(body["content"].split())))})
                if server.status != 200:
                    return self._json(server.status, {"error": {"message": "model 'x' not found"}})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for event in server.events():
                        self.wfile.write(event.encode())
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up: that is what cancel does

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def events(self) -> Iterator[str]:
        yield ": keep-alive comment\n\n"
        yield f"data: {json.dumps({'choices': [{'delta': {'role': 'assistant'}}]})}\n\n"
        for index, piece in enumerate(self.pieces):
            if index and self.delay:
                time.sleep(self.delay)
            yield f"data: {json.dumps({'choices': [{'delta': {'content': piece}}]})}\n\n"
        yield "data: [DONE]\n\n"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers: list[FakeServer] = []

    def start(pieces: list[str], **options) -> FakeServer:
        servers.append(FakeServer(pieces, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_streams_pieces_and_sends_the_request_a_server_expects(serve, monkeypatch):
    server = serve(["def ", "add(a, b):", "\n    return a + b"])
    monkeypatch.setenv("TEAM_LLM_KEY", "sk-test")
    config = Config.model_validate({"model": {"backend": "openai", "server": {
        "base_url": f"{server.url}/v1", "model": "qwen-coder", "api_key_env": "TEAM_LLM_KEY"}}})
    backend = create_backend(config)
    messages = [{"role": "user", "content": "write add"}]

    pieces = list(backend.stream(messages, stop=["```\n"], **GENERATION))

    assert pieces == ["def ", "add(a, b):", "\n    return a + b"]
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test"
    assert body == {"model": "qwen-coder", "messages": messages, "max_tokens": 64, "temperature": 0.2,
                    "top_p": 0.9, "top_k": 40, "stream": True, "stop": ["```\n"]}
    assert backend.context_length == config.model.n_ctx


def test_server_error_becomes_a_one_line_user_error(serve):
    server = serve([], status=404)
    backend = OpenAICompatibleBackend(f"{server.url}/v1", "x", context_length=4096)
    with pytest.raises(UserError, match="answered 404: model 'x' not found"):
        list(backend.stream([{"role": "user", "content": "hi"}], **GENERATION))


def test_unreachable_server_names_the_url():
    backend = OpenAICompatibleBackend("http://127.0.0.1:9/v1", "x", context_length=4096, timeout=2)
    with pytest.raises(UserError, match=r"cannot reach the model server at http://127.0.0.1:9/v1"):
        list(backend.stream([{"role": "user", "content": "hi"}], **GENERATION))


def test_cancel_stops_a_slow_stream_fast_and_the_backend_stays_usable(serve):
    server = serve(["first", "second", "third"], delay=5.0)
    backend = OpenAICompatibleBackend(f"{server.url}/v1", "x", context_length=4096)
    stream = backend.stream([{"role": "user", "content": "hi"}], **GENERATION)
    assert next(stream) == "first"

    threading.Timer(0.1, backend.cancel).start()
    started = time.perf_counter()
    rest = list(stream)
    stopped_after = time.perf_counter() - started

    assert rest == []
    assert stopped_after < 0.1 + 0.2, f"took {stopped_after:.2f}s to stop"
    server.delay = 0.0
    assert list(backend.stream([{"role": "user", "content": "again"}], **GENERATION)) == ["first", "second", "third"]


def test_counts_tokens_with_the_server_tokenizer_or_a_safe_estimate(serve):
    server = serve([])
    exact = OpenAICompatibleBackend(f"{server.url}/v1", "x", context_length=4096, tokenize_url=f"{server.url}/tokenize")
    assert exact.count_tokens("one two three") == 3
    estimated = OpenAICompatibleBackend(f"{server.url}/v1", "x", context_length=4096)
    code = "def add(a, b):\n    return a + b\n"
    assert estimated.count_tokens(code) >= len(code) / 4, "over-estimates, so prompts never overflow"


def test_network_guard_lets_a_loopback_server_through_only_when_loopback_is_allowed(serve):
    from hybrid_llm.net import guard

    server = serve(["ok"])
    backend = OpenAICompatibleBackend(f"{server.url}/v1", "x", context_length=4096)
    with guard.offline_mode(allow_loopback=True):
        assert list(backend.stream([{"role": "user", "content": "hi"}], **GENERATION)) == ["ok"]
    with guard.offline_mode(allow_loopback=False), pytest.raises(UserError, match="cannot reach"):
        list(backend.stream([{"role": "user", "content": "hi"}], **GENERATION))
    assert list(backend.stream([{"role": "user", "content": "hi"}], **GENERATION)) == ["ok"]
