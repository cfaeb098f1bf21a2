"""The read-eval loop: read an entry, run it, and survive whatever happens.

No input may end the session: a `UserError` prints its one line, anything else prints one line
naming the log file, and the traceback goes to that log (under HYBRID_LLM_HOME), not the screen.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hybrid_llm.config import ConfigError, hybrid_home, private_file
from hybrid_llm.errors import UserError
from hybrid_llm.redact import redact
from hybrid_llm.repl.commands import Commands, ExitRepl
from hybrid_llm.repl.io import ReplIO

log = logging.getLogger(__name__)

PROMPT = "> "
CONTINUATION_PROMPT = ". "
BLOCK_START = "{"
BLOCK_END = "}"
_MAX_ERROR_CHARS = 300


def log_path() -> Path:
    return hybrid_home() / "logs" / "repl.log"


def setup_logging() -> Path:
    """Send all logging (ours and libraries') and Python warnings to the log file only."""
    path = private_file(log_path())
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("hybrid_llm").setLevel(logging.INFO)
    logging.captureWarnings(True)
    return path


class _RedactingFormatter(logging.Formatter):
    """Log lines, tracebacks included, go through the request log's redaction: a failing
    command is logged with its text, and `/save 1 AKIA….py` once put a key in the log."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))[0]


def read_entry(io: ReplIO) -> str:
    """One entry: a line, or the lines of a `{` ... `}` block (the braces alone on their lines)."""
    line = io.read_line(PROMPT)
    if line.strip() != BLOCK_START:
        return line
    lines: list[str] = []
    while True:
        try:
            line = io.read_line(CONTINUATION_PROMPT)
        except EOFError:
            break
        if line.strip() == BLOCK_END:
            break
        lines.append(line)
    return "\n".join(lines)


def one_line(text: str) -> str:
    first = " ".join(text.split())
    return first if len(first) <= _MAX_ERROR_CHARS else first[: _MAX_ERROR_CHARS - 1] + "…"


def run_loop(io: ReplIO, commands: Commands) -> int:
    """Run entries until /exit or end of input (Ctrl-D); returns the exit status."""
    while True:
        try:
            entry = read_entry(io)
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line, as in a shell
        except EOFError:
            return 0
        try:
            commands.run(entry)
        except ExitRepl:
            return 0
        except KeyboardInterrupt:
            io.tool_warning("interrupted")
        except (UserError, ConfigError) as exc:
            io.tool_error(one_line(str(exc)))
        except Exception as exc:  # noqa: BLE001 - the REPL must outlive any command
            log.exception("command failed: %.200r", entry)
            io.tool_error(one_line(f"{type(exc).__name__}: {exc}") + f" (details in {log_path()})")
