"""The request log: every answered request, as training data in waiting.

One JSON line per event in `hybrid_home()/logs/requests.jsonl`: a request record when an answer is
given, and a small rating record when the user types `/good` or `/bad`. Appending ratings rather
than rewriting records keeps the file append-only, so a crash can at worst cut the last line short,
and readers skip such a line. Secrets are redacted before anything is written.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hybrid_llm.config import Config, hybrid_home, private_file
from hybrid_llm.errors import UserError
from hybrid_llm.redact import redact_value

Label = Literal["good", "bad"]
LABELS: tuple[Label, ...] = ("good", "bad")


def default_log_path() -> Path:
    return hybrid_home() / "logs" / "requests.jsonl"


@dataclass
class LoggedRequest:
    """A request record with its latest rating folded in (`label` is None until rated)."""

    id: str
    time: str
    prompt: str
    messages: list[dict]
    sources: list[str]
    answer: str
    model: str
    timings: dict
    redactions: int = 0
    label: Label | None = None


class RequestLog:
    """Append-only JSONL log of answered requests and their ratings."""

    def __init__(self, path: Path, *, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._last_id: str | None = None

    @classmethod
    def from_config(cls, config: Config) -> RequestLog:
        return cls(default_log_path(), enabled=config.logging.log_requests)

    def record(
        self,
        *,
        prompt: str,
        messages: list[dict],
        sources: list[str],
        answer: str,
        model: str,
        timings: dict,
    ) -> str | None:
        """Log one answered request; return its id, or None when logging is switched off."""
        if not self.enabled:
            return None
        payload, redactions = redact_value(
            {"prompt": prompt, "messages": messages, "sources": list(sources), "answer": answer}
        )
        request_id = uuid.uuid4().hex[:16]
        self._append(
            {
                "type": "request",
                "id": request_id,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **payload,
                "model": model,
                "timings": timings,
                "redactions": redactions,
            }
        )
        self._last_id = request_id
        return request_id

    def rate(self, request_id: str, label: Label) -> None:
        """Label a logged request good or bad; the latest rating wins."""
        if label not in LABELS:
            raise UserError(f"unknown rating '{label}': use one of {', '.join(LABELS)}")
        if not self.enabled:
            raise UserError("request logging is off: set logging.log_requests to true in config.json")
        if not any(entry.id == request_id for entry in self.entries()):
            raise UserError(f"no logged request with id {request_id}")
        self._append({"type": "rating", "id": request_id, "label": label})

    def last_id(self) -> str | None:
        """The request logged last by this process, else the newest one in the file."""
        if self._last_id is not None:
            return self._last_id
        newest = None
        for entry in self.entries():
            newest = entry.id
        return newest

    def entries(self) -> Iterator[LoggedRequest]:
        """All logged requests in order, each with its latest rating."""
        requests: dict[str, LoggedRequest] = {}
        for raw in self._read_lines():
            if raw.get("type") == "rating" and raw.get("id") in requests:
                requests[raw["id"]].label = raw.get("label")
            elif raw.get("type") == "request" and "id" in raw:
                requests[raw["id"]] = _to_request(raw)
        yield from requests.values()

    def _read_lines(self) -> Iterator[dict]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash; everything before it is intact
                if isinstance(raw, dict):
                    yield raw

    def _append(self, record: dict) -> None:
        private_file(self.path)  # also tightens a log written before it was private
        data = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        # One O_APPEND write per record: concurrent sessions never interleave inside a line.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            self._terminate_torn_line(fd)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _terminate_torn_line(self, fd: int) -> None:
        """After a crash mid-write, start on a fresh line so the next record stays readable."""
        size = os.fstat(fd).st_size
        if size == 0:
            return
        with self.path.open("rb") as handle:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                os.write(fd, b"\n")


def _to_request(raw: dict) -> LoggedRequest:
    return LoggedRequest(
        id=raw["id"],
        time=raw.get("time", ""),
        prompt=raw.get("prompt", ""),
        messages=raw.get("messages", []),
        sources=raw.get("sources", []),
        answer=raw.get("answer", ""),
        model=raw.get("model", ""),
        timings=raw.get("timings", {}),
        redactions=raw.get("redactions", 0),
    )
