"""Read a GGUF file's key-value header without touching its tensors.

`gguf.GGUFReader` parses every array element into numpy objects, which takes tens of seconds for
a model with a 151k-token vocabulary; checking an adapter against its base model needs only a few
scalar keys, which this reads in milliseconds by skipping arrays.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def _read(handle: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _read_string(handle: BinaryIO) -> str:
    length = _read(handle, "<Q")
    return handle.read(length).decode("utf-8", errors="replace")


def _skip_array(handle: BinaryIO) -> None:
    item_type, count = _read(handle, "<I"), _read(handle, "<Q")
    if item_type in _SCALARS:
        handle.seek(count * struct.calcsize(_SCALARS[item_type]), 1)
    elif item_type == _STRING:
        for _ in range(count):
            handle.seek(_read(handle, "<Q"), 1)
    else:
        for _ in range(count):
            _skip_array(handle)


def read_gguf_metadata(path: Path) -> dict[str, object]:
    """Scalar and string keys of a GGUF file (arrays such as the vocabulary are skipped).

    Raises ValueError when the file is not GGUF.
    """
    with Path(path).open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        _read(handle, "<I")  # version
        _read(handle, "<Q")  # tensor count
        metadata: dict[str, object] = {}
        for _ in range(_read(handle, "<Q")):
            key = _read_string(handle)
            value_type = _read(handle, "<I")
            if value_type in _SCALARS:
                metadata[key] = _read(handle, _SCALARS[value_type])
            elif value_type == _STRING:
                metadata[key] = _read_string(handle)
            elif value_type == _ARRAY:
                _skip_array(handle)
            else:
                raise ValueError(f"{path}: unknown GGUF value type {value_type}")
        return metadata
