"""Index progress on a terminal: one redrawn line with a bar, files/s, chunks/s and ETA.

When the stream is not a terminal (a log, a pipe) the line is printed at each phase change and
every few seconds instead of redrawn, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from hybrid_llm.rag.index import IndexProgress

_BAR_WIDTH = 24
_LOG_INTERVAL = 2.0
_MIN_RATE_SECONDS = 0.05


class ProgressLine:
    """Renders a stream of `IndexProgress` reports; rates are per phase."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._live = stream.isatty()
        self._phase = ""
        self._phase_started = 0.0
        self._last_log = 0.0
        self._width = 0

    def __call__(self, progress: IndexProgress) -> None:
        if progress.phase != self._phase:
            self._end_line()
            self._phase = progress.phase
            self._phase_started = progress.elapsed
        line = self._format(progress)
        if self._live:
            self._stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
            if progress.total and progress.done == progress.total:
                self._end_line()  # a finished phase keeps its final line
        elif self._log_due(progress):
            self._last_log = time.monotonic()
            self._stream.write(line + "\n")
        self._stream.flush()

    def _log_due(self, progress: IndexProgress) -> bool:
        edge = progress.done in (0, progress.total)
        return edge or time.monotonic() - self._last_log >= _LOG_INTERVAL

    def finish(self) -> None:
        """End the redrawn line so the summary starts on a fresh one."""
        self._end_line()
        self._phase = ""

    def _end_line(self) -> None:
        if self._live and self._width:
            self._stream.write("\n")
            self._stream.flush()
        self._width = 0

    def _format(self, progress: IndexProgress) -> str:
        if progress.message or not progress.total:
            return f"{progress.phase} {progress.message}".rstrip()
        seconds = progress.elapsed - self._phase_started
        filled = _BAR_WIDTH * progress.done // progress.total
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        unit = "chunks" if progress.phase == "embedding" else "files"
        line = f"{progress.phase:<9} [{bar}] {progress.done}/{progress.total} {unit}"
        if seconds < _MIN_RATE_SECONDS or not progress.done:
            return line  # rates over a few milliseconds would be noise
        rates = f"{progress.files / seconds:.1f} files/s  " if progress.files else ""
        rates += f"{progress.chunks / seconds:.1f} chunks/s"
        remaining = (progress.total - progress.done) * seconds / progress.done
        return f"{line}  {rates}  ETA {_clock(remaining)}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


_lines: dict[int, ProgressLine] = {}


def render_progress(progress: IndexProgress, stream: TextIO = sys.stderr) -> None:
    """Render a report on `stream`, keeping one `ProgressLine` per stream for its rates."""
    line = _lines.setdefault(id(stream), ProgressLine(stream))
    line(progress)
