"""The index progress line: what a user sees on stderr while indexing."""

from __future__ import annotations

import io

from hybrid_llm.rag.index import IndexProgress
from hybrid_llm.rag.progress import ProgressLine


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_line_is_redrawn_with_rates_and_eta():
    stream = _Terminal()
    line = ProgressLine(stream)
    line(IndexProgress("chunking", 0, 100, elapsed=1.0))
    line(IndexProgress("chunking", 50, 100, files=50, chunks=200, elapsed=6.0))
    line(IndexProgress("chunking", 100, 100, files=100, chunks=400, elapsed=11.0))
    line(IndexProgress("embedding", 0, 400, elapsed=11.0))
    line(IndexProgress("embedding", 100, 400, chunks=100, elapsed=21.0))
    line.finish()

    text = stream.getvalue()
    assert "\r" in text
    bar = "[############------------]"
    assert f"chunking  {bar} 50/100 files  10.0 files/s  40.0 chunks/s  ETA 0:05" in text
    first_line = text.split("\n")[0].split("\r")[-1]
    assert "100/100 files" in first_line  # a finished phase keeps its own line
    assert "embedding [######------------------] 100/400 chunks  10.0 chunks/s  ETA 0:30" in text
    assert text.endswith("\n")


def test_log_output_has_one_line_per_report_worth_keeping():
    stream = io.StringIO()
    line = ProgressLine(stream)
    line(IndexProgress("waiting", 0, 0, message="waiting for pid 42, which is updating this index"))
    line(IndexProgress("chunking", 0, 3, elapsed=0.0))
    line(IndexProgress("chunking", 3, 3, files=3, chunks=9, elapsed=1.0))

    assert stream.getvalue().splitlines() == [
        "waiting waiting for pid 42, which is updating this index",
        "chunking  [------------------------] 0/3 files",
        "chunking  [########################] 3/3 files  3.0 files/s  9.0 chunks/s  ETA 0:00",
    ]
    assert "\r" not in stream.getvalue()
