"""The fast GGUF header reader agrees with the `gguf` package's full reader."""

from __future__ import annotations

import pytest

from hybrid_llm.finetune.gguf_metadata import read_gguf_metadata


def test_scalar_keys_match_the_gguf_package(tiny_gguf):
    import gguf

    reader = gguf.GGUFReader(str(tiny_gguf))
    expected = {
        name: field.contents()
        for name, field in reader.fields.items()
        if not name.startswith("GGUF.") and field.types[0] != gguf.GGUFValueType.ARRAY
    }
    metadata = read_gguf_metadata(tiny_gguf)
    assert metadata.keys() == expected.keys()
    for key, value in expected.items():
        assert metadata[key] == pytest.approx(value) if isinstance(value, float) else metadata[key] == value
    assert metadata["qwen2.embedding_length"] == 64 and metadata["general.name"] == "tiny-qwen2"


def test_other_files_are_refused(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04 not gguf")
    with pytest.raises(ValueError, match="not a GGUF file"):
        read_gguf_metadata(tmp_path / "x.gguf")
