"""Where `/save` may write, and reading and writing that file without surprises.

A path typed after `/save` can lead anywhere: `../x.py`, `~/x.py`, an absolute path, a symlinked
directory inside the codebase, a dangling link (which would create its target somewhere else),
a FIFO (reading it for the diff blocks forever) or `/dev/zero` (reading never ends). So the
path is resolved through its links first and the command asks about the real file; a dangling
link is never followed; only regular files are read, and at most `MAX_DIFF_BYTES` of them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from hybrid_llm.errors import UserError

# Larger files are overwritten without a diff (after the usual question): a diff of megabytes
# is unreadable, and the read must be bounded whatever the file is.
MAX_DIFF_BYTES = 1_000_000

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


@dataclass(frozen=True)
class ExistingFile:
    """The file about to be overwritten: its text, or None when too large to show a diff."""

    size: int
    text: str | None


@dataclass(frozen=True)
class SaveTarget:
    """`typed` is the path as given (made absolute); `real` is the file that would be written."""

    typed: Path
    real: Path
    inside_codebase: bool

    @classmethod
    def resolve(cls, path: Path, codebase: Path) -> SaveTarget:
        """Resolve `path` through its links; a dangling link anywhere on it is refused."""
        for part in (path, *path.parents):
            if part.is_symlink() and not part.exists():
                raise UserError(
                    f"{part} is a link to {os.readlink(part)}, which does not exist; "
                    "/save does not follow it (give the real path)"
                )
        real = path.resolve()
        root = codebase.resolve()
        return cls(path, real, real == root or root in real.parents)

    def read_existing(self) -> ExistingFile | None:
        """The current content (None when there is no such file). Opened without blocking and
        checked after opening, so a FIFO or device swapped in after any earlier check is still
        refused rather than read."""
        try:
            fd = os.open(self.real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(fd)
            _require_regular(self.real, info.st_mode)
            if info.st_size > MAX_DIFF_BYTES:
                return ExistingFile(info.st_size, None)
            data = handle.read(MAX_DIFF_BYTES + 1)
        if len(data) > MAX_DIFF_BYTES:  # grew since fstat
            return ExistingFile(len(data), None)
        return ExistingFile(len(data), data.decode("utf-8", errors="replace"))

    def write(self, text: str) -> None:
        """Write `text` to the real file; never through a link, never into a FIFO or device."""
        self.real.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
        fd = os.open(self.real, flags, 0o666)
        with os.fdopen(fd, "wb") as handle:
            _require_regular(self.real, os.fstat(fd).st_mode)
            handle.truncate()
            handle.write(text.encode("utf-8"))


def _require_regular(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise UserError(f"{path} is {kind}; /save writes only regular files")
