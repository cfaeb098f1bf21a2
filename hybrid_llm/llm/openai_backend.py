"""A model behind an OpenAI-compatible server (vLLM, llama.cpp's server, Ollama), over SSE.

This is how a team moves generation to a GPU server: set `model.backend` to "openai" and
`model.server.base_url`. The HTTP client is injectable (httpx style), so tests talk to a local
server and the network guard can close pooled connections when going offline.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.llm.base import Message, register_backend
from hybrid_llm.net import guard

# Servers without a tokenizer endpoint get an estimate; code averages 3.5-4 characters per
# token, so 3 over-counts a little and a prompt built on it never overflows.
ESTIMATED_CHARS_PER_TOKEN = 3.0
_END = object()


class OpenAICompatibleBackend:
    """Streams `/chat/completions` from `base_url`; `cancel` returns control at once."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        context_length: int,
        api_key: str | None = None,
        timeout: float = 120.0,
        tokenize_url: str | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai:{model}@{self.base_url}"
        self.context_length = context_length
        self._tokenize_url = tokenize_url
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout, connect=10.0)
        self._client = client or self._new_client()
        self._cancelled = threading.Event()
        self._pieces: queue.SimpleQueue | None = None

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int,
        stop: Sequence[str] = (),
    ) -> Iterator[str]:
        body = {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stream": True,
        }
        if top_k > 0:
            body["top_k"] = top_k  # not in OpenAI's API, but vLLM, llama.cpp and Ollama take it
        if stop:
            body["stop"] = list(stop)
        # A blocking socket read cannot be interrupted from another thread, so the response is
        # read on a worker thread and handed over through a queue that `cancel` can end at once.
        self._cancelled.clear()
        pieces: queue.SimpleQueue = queue.SimpleQueue()
        self._pieces = pieces
        finished = threading.Event()
        worker = threading.Thread(
            target=self._read, args=(body, pieces, finished), name="openai-stream", daemon=True
        )
        worker.start()
        try:
            while (item := pieces.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                if self._cancelled.is_set():
                    return
                yield item
        finally:
            finished.set()  # also when the caller stops reading: the worker hangs up

    def _read(self, body: dict, pieces: queue.SimpleQueue, finished: threading.Event) -> None:
        url = f"{self.base_url}/chat/completions"
        try:
            with self._http().stream("POST", url, json=body, headers=self._headers) as response:
                if response.status_code >= 400:
                    raise UserError(f"model server {url} answered {response.status_code}: {_error_text(response)}")
                for text in _events(response):
                    if finished.is_set() or self._cancelled.is_set():
                        return
                    pieces.put(text)
        except httpx.HTTPError as exc:
            pieces.put(UserError(f"cannot reach the model server at {self.base_url}: {exc}"))
        except Exception as exc:  # noqa: BLE001 - re-raised on the caller's thread
            pieces.put(exc)
        finally:
            pieces.put(_END)

    def count_tokens(self, text: str) -> int:
        if self._tokenize_url is None:
            return math.ceil(len(text) / ESTIMATED_CHARS_PER_TOKEN)
        response = self._http().post(self._tokenize_url, json={"content": text, "add_special": False})
        response.raise_for_status()
        return len(response.json()["tokens"])

    def cancel(self) -> None:
        self._cancelled.set()
        pieces = self._pieces
        if pieces is not None:
            pieces.put(_END)  # wakes the caller now, even while the server is silent

    def close(self) -> None:
        self._client.close()

    def _http(self) -> httpx.Client:
        """The client, rebuilt when the network guard closed it on going offline: a loopback
        server stays usable, and a remote one is then refused by the guard itself."""
        if self._client.is_closed:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> httpx.Client:
        client = httpx.Client(timeout=self._timeout)
        guard.register_http_client(client)
        return client


def _events(response: httpx.Response) -> Iterator[str]:
    """The text pieces of an SSE chat-completion stream, until `data: [DONE]`."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue  # SSE comments, `event:` lines and keep-alives
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        text = _delta_text(json.loads(data))
        if text:
            yield text


def _delta_text(event: dict) -> str:
    choices = event.get("choices") or []
    if not choices:
        return ""
    return (choices[0].get("delta") or {}).get("content") or ""


def _error_text(response: httpx.Response) -> str:
    raw = response.read().decode("utf-8", "replace")
    try:
        error = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        return raw[:200]
    if isinstance(error, dict):
        return str(error.get("message", error))[:200]
    return str(error or raw)[:200]


@register_backend("openai")
def create_openai_backend(config: Config, model_path: Path | None) -> OpenAICompatibleBackend:
    server = config.model.server
    api_key = os.environ.get(server.api_key_env) if server.api_key_env else None
    return OpenAICompatibleBackend(
        server.base_url,
        server.model,
        context_length=config.model.n_ctx,
        api_key=api_key,
        timeout=server.timeout,
    )
