"""Ctrl-C (a real SIGINT) during generation, in a separate `hybrid-llm` process reading a pipe.

The model is a fake OpenAI-compatible server on loopback that streams slowly (a local stand-in
for a model server, used through the real `openai` backend); everything else is real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hybrid_llm.config import REPO_ROOT

WORDS = 300
WORD_DELAY_S = 0.03


class _SlowChatServer(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            for i in range(WORDS):
                event = {"choices": [{"delta": {"content": f"word{i} "}}]}
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
                time.sleep(WORD_DELAY_S)
            self.wfile.write(b"data: [DONE]\n\n")
        except OSError:
            pass  # the client stopped reading: that is the point of the test

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def chat_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowChatServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_sigint_stops_the_answer_keeps_it_and_the_repl_goes_on(repo: Path, tmp_path: Path, chat_server: str) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "model": {"backend": "openai", "server": {"base_url": chat_server, "model": "slow"}},
        "rag": {"enabled": False},
    }))
    process = subprocess.Popen(
        [sys.executable, "-m", "hybrid_llm", "--repo", str(repo)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=REPO_ROOT, env={**os.environ, "HYBRID_LLM_CONFIG": str(config)},
    )
    out = bytearray()

    def read_stdout() -> None:
        while chunk := process.stdout.read1(4096):
            out.extend(chunk)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    process.stdin.write(b"/code count to three hundred\n")
    process.stdin.flush()
    deadline = time.monotonic() + 60
    while b"word20 " not in out:
        assert time.monotonic() < deadline and process.poll() is None, bytes(out)
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    process.stdin.write(b"/save 1 x.py\n/help\n")
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    reader.join(10)
    stdout, stderr = bytes(out).decode(), process.stderr.read().decode()
    assert "word20 " in stdout and f"word{WORDS - 1} " not in stdout  # stopped part-way
    assert "warning: stopped; the partial answer is kept" in stderr
    assert "error: the last answer has 0 code block(s)" in stderr  # /save saw the partial answer
    assert stdout.rstrip().endswith("Ctrl-D quits.")  # and the REPL went on to /help
