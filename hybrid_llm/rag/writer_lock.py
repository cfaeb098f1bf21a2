"""One writer per index at a time: two processes writing one Chroma directory hang or corrupt it.

A `filelock` lock beside the index, plus the holder's pid in `write.pid` so that a second
writer can say whom it waits for. After a kill -9 the pid file is stale but the OS has released
the lock itself, so the next writer simply takes over.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from hybrid_llm.errors import UserError


@contextmanager
def writer_lock(
    directory: Path, *, what: str, timeout: float, on_wait: Callable[[str], None]
) -> Iterator[None]:
    """Hold the writer lock of `directory`; wait up to `timeout` s, telling `on_wait` why.

    `what` names the locked thing in the error raised when the wait runs out.
    """
    lock = FileLock(str(directory / "write.lock"))
    pid_file = directory / "write.pid"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = _read_pid(pid_file)
        on_wait(f"waiting for pid {holder}, which is updating this index")
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise UserError(
                f"{what} is being updated by another process (pid {holder});"
                " try again when it has finished"
            ) from None
    try:
        pid_file.write_text(str(os.getpid()))
        yield
    finally:
        pid_file.unlink(missing_ok=True)
        lock.release()


def _read_pid(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"
