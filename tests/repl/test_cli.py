"""`hybrid-llm` with no subcommand, as a separate process: on a pseudo-terminal and from a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import random
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from hybrid_llm.config import REPO_ROOT

GROSS_REGRESSION_S = 5.0
CURSOR_POSITION_REQUEST = b"\x1b[6n"


def run_piped(stdin: bytes, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hybrid_llm", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env=os.environ.copy(),
    )


def test_piped_commands_print_plain_text(repo: Path) -> None:
    result = run_piped(b"/help\n/nope\n/he\n/code\n/save 1 a.py\n", "--repo", str(repo))
    assert result.returncode == 0
    out, err = result.stdout.decode(), result.stderr.decode()
    assert out.count("/save ") == 2  # /help and its prefix /he both ran
    assert "\x1b[" not in out  # plain text, no colours or cursor movement
    assert err.splitlines() == [
        "error: unknown command /nope: type /help for the list",
        "error: usage: /code TASK",
        "error: there is no answer yet: ask with /code TASK first",
    ]


def test_piped_random_bytes_do_not_end_the_session(repo: Path) -> None:
    rng = random.Random(7)
    junk = b"".join(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).replace(b"\n", b"") + b"\n"
                    for _ in range(100))
    junk = b"\n".join(line for line in junk.split(b"\n") if not line.lstrip().startswith(b"/"))
    # Lines that are not commands go to the model; without one configured they fail fast, one line each.
    config = repo.parent / "no-model.json"
    config.write_text('{"model": {"path": "/nonexistent/model.gguf"}, "rag": {"enabled": false}}')
    result = subprocess.run(
        [sys.executable, "-m", "hybrid_llm", "--repo", str(repo)],
        input=junk + b"\n/help\n",
        capture_output=True,
        timeout=120,
        cwd=REPO_ROOT,
        env={**os.environ, "HYBRID_LLM_CONFIG": str(config)},
    )
    assert result.returncode == 0
    assert result.stdout.decode().rstrip().endswith("Ctrl-D quits.")
    errors = result.stderr.decode().splitlines()
    assert errors and all(line.startswith(("error: ", "loading ")) for line in errors)
    assert not [line for line in errors if "details in" in line]


def test_a_missing_codebase_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_piped(b"/help\n", "--repo", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert result.stderr.decode().strip() == f"error: codebase {tmp_path / 'nope'} is not a directory: pass --repo PATH or set rag.codebase_path"


def _spawn_on_a_terminal(repo: Path) -> tuple[subprocess.Popen, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "hybrid_llm", "--repo", str(repo)],
        stdin=slave, stdout=slave, stderr=slave, cwd=REPO_ROOT, env={**os.environ, "TERM": "xterm"},
    )
    os.close(slave)
    return process, master


def _read_until(master: int, marker: bytes, timeout: float) -> tuple[bytes, float]:
    started = time.monotonic()
    seen = b""
    while marker not in seen:
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            raise AssertionError(f"{marker!r} did not appear within {timeout}s; got {seen[-500:]!r}")
        ready, _, _ = select.select([master], [], [], left)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if CURSOR_POSITION_REQUEST in chunk:
                os.write(master, b"\x1b[1;1R")  # answer as a real terminal does
            seen += chunk
    return seen, time.monotonic() - started


def time_to_prompt(repo: Path) -> tuple[float, bytes]:
    """Seconds from process start until the prompt and its toolbar are drawn, and the screen."""
    started = time.monotonic()
    process, master = _spawn_on_a_terminal(repo)
    try:
        # The prompt and its toolbar are drawn in one pass; the toolbar is easy to spot.
        screen, _ = _read_until(master, b"OFFLINE", timeout=30)
        elapsed = time.monotonic() - started
        os.write(master, b"/exit\r")
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        os.close(master)
    return elapsed, screen


def test_on_a_terminal_the_prompt_appears_before_the_model_is_loaded(repo: Path) -> None:
    """The prompt does not wait for the model: the toolbar says it is still loading. The 1.5 s
    target is measured by bench/repl_startup.py; this only catches gross regressions (such as
    importing torch or chromadb before the prompt) on a shared, loaded test machine."""
    elapsed, screen = time_to_prompt(repo)
    assert b"(loading" in screen and b">" in screen
    assert elapsed < GROSS_REGRESSION_S


def test_everything_written_under_hybrid_llm_home_is_owner_only(repo: Path, tmp_path: Path) -> None:
    """Indexes hold the user's code and the log their commands: 0700 directories, 0600 files."""
    home = tmp_path / "fresh-home"
    result = subprocess.run(
        [sys.executable, "-m", "hybrid_llm", "--repo", str(repo)],
        input=b"/index\n/help\n", capture_output=True, timeout=300, cwd=REPO_ROOT,
        env={**os.environ, "HYBRID_LLM_HOME": str(home)},
    )
    assert result.returncode == 0, result.stderr
    written = [home, *home.rglob("*")]
    names = {path.name for path in written}
    assert {"repl.log", "catalog.sqlite3", "chroma", "chroma.sqlite3"} <= names
    loose = [f"{path} {oct(path.stat().st_mode)}" for path in written if path.stat().st_mode & 0o077]
    assert loose == []
