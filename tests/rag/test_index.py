"""CodeIndex on real files, the real chunker, the real embedder, real Chroma and SQLite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hybrid_llm.config import Config
from hybrid_llm.errors import UserError
from hybrid_llm.rag.chunker import CodeChunker
from hybrid_llm.rag.embedder import default_embedder
from hybrid_llm.rag.index import CodeIndex, index_location
from hybrid_llm.rag.keyword_store import KeywordStore


class RecordingEmbedder:
    """The real embedder, recording what it was asked to embed (to prove what was re-embedded)."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.inner = default_embedder()
        self.name = self.inner.name
        self.dimension = self.inner.dimension
        self.texts: list[str] = []
        self.interrupt_after = interrupt_after

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.interrupt_after is not None and len(self.texts) >= self.interrupt_after:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of embedding
        self.texts.extend(texts)
        return self.inner.embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


def _function(name: str, body: str = "return 1") -> str:
    return f"def {name}(value):\n    \"\"\"Compute {name}.\"\"\"\n    {body}\n\n\n"


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    _write(root, "pkg/alpha.py", _function("alpha_one") + _function("alpha_two"))
    _write(root, "pkg/beta.py", _function("beta_one") + _function("beta_two"))
    _write(root, "pkg/gamma.py", _function("gamma_one"))
    _write(root, "pkg/keep.py", _function("keep_me"))
    return root


def _ids_by_path(index: CodeIndex) -> dict[str, set[str]]:
    chunks = index.get_chunks(sorted(index._catalog.chunk_ids()))
    by_path: dict[str, set[str]] = {}
    for chunk_id, chunk in chunks.items():
        by_path.setdefault(chunk.path, set()).add(chunk_id)
    return by_path


def _assert_stores_agree(index: CodeIndex) -> set[str]:
    """Catalog, keyword index and Chroma hold exactly the same chunks, all with vectors."""
    ids = index._catalog.chunk_ids()
    assert index._catalog.pending_count() == 0
    assert index._vector_store().ids() == ids
    assert KeywordStore(index._catalog.connection).count() == len(ids)
    return ids


def _expected_ids(root: Path) -> set[str]:
    """What a clean build must contain: the chunker's output for every file on disk."""
    chunker = CodeChunker()
    return {
        chunk.id
        for path in root.rglob("*.py")
        for chunk in chunker.chunk(path.relative_to(root).as_posix(), path.read_text())
    }


def test_edit_add_delete_rename_update_exactly_those_chunks(repo):
    embedder = RecordingEmbedder()
    with CodeIndex.open(repo, Config(), embedder=embedder) as index:
        first = index.update()
        assert (first.files_indexed, first.chunks) == (4, 6)
        before = _ids_by_path(index)

        beta = repo / "pkg/beta.py"
        beta.write_text(_function("beta_one") + _function("beta_two", "return 2"))
        _write(repo, "pkg/delta.py", _function("delta_one"))
        (repo / "pkg/gamma.py").unlink()
        (repo / "pkg/alpha.py").rename(repo / "pkg/renamed.py")
        embedder.texts.clear()
        summary = index.update()

        assert (summary.files_indexed, summary.files_deleted, summary.files_unchanged) == (3, 2, 1)
        after = _ids_by_path(index)
        assert set(after) == {"pkg/beta.py", "pkg/delta.py", "pkg/renamed.py", "pkg/keep.py"}
        assert after["pkg/keep.py"] == before["pkg/keep.py"]
        assert len(after["pkg/beta.py"] & before["pkg/beta.py"]) == 1  # beta_one untouched
        assert _assert_stores_agree(index) == _expected_ids(repo)
        # Only new content is embedded: beta_two, delta, and the renamed file (its path is
        # part of what is embedded); never beta_one or keep.py.
        embedded = "\n".join(embedder.texts)
        assert len(embedder.texts) == 4
        assert "beta_one" not in embedded and "keep_me" not in embedded
        assert index.keyword_search("gamma", 5) == []
        hits = [cid for cid, _ in index.keyword_search("delta one", 5)]
        assert hits[0] in after["pkg/delta.py"]


def test_unchanged_and_touched_files_are_not_rechunked_or_embedded(repo):
    embedder = RecordingEmbedder()
    with CodeIndex.open(repo, Config(), embedder=embedder) as index:
        index.update()
        embedder.texts.clear()
        os.utime(repo / "pkg/beta.py", ns=(1, 1))  # mtime changes, content does not
        summary = index.update()
        again = index.update()

    assert (summary.files_indexed, summary.files_unchanged) == (0, 4)
    assert (again.files_indexed, again.files_unchanged) == (0, 4)
    assert embedder.texts == []


def test_skipped_files_are_counted_by_reason(repo):
    _write(repo, ".env", "API_KEY=secret\n")
    (repo / "blob.py").write_bytes(b"x = 1\x00\x00")
    _write(repo, "node_modules/lib/index.js", "module.exports = 1;\n")
    _write(repo, "big.py", "x = 1\n" * 400)
    config = Config()
    config.rag.max_file_bytes = 1000
    with CodeIndex.open(repo, config) as index:
        summary = index.update()

    assert summary.files_indexed == 4
    assert summary.files_skipped["secret"] == 1
    assert summary.files_skipped["binary"] == 1
    assert summary.files_skipped["too_large"] == 1
    assert sum(summary.files_skipped.values()) >= 4  # node_modules is skipped as a directory


def test_keyword_search_works_before_embeddings_and_ctrl_c_keeps_files(repo):
    for number in range(300):  # more chunks than one embedding round
        _write(repo, f"gen/mod{number}.py", _function(f"generated_{number}"))
    interrupted = RecordingEmbedder(interrupt_after=1)
    with CodeIndex.open(repo, Config(), embedder=interrupted) as index:
        summary = index.update()
        assert summary.interrupted
        assert summary.chunks == 306 and 0 < summary.chunks_pending < 306
        hits = [cid for cid, _ in index.keyword_search("generated 123", 3)]
        assert index.get_chunks(hits[:1])[hits[0]].path == "gen/mod123.py"

    with CodeIndex.open(repo, Config()) as index:
        resumed = index.update()
        assert not resumed.interrupted and resumed.chunks_pending == 0
        assert resumed.files_unchanged == 304
        assert _assert_stores_agree(index) == _expected_ids(repo)
        query = index.embedder.embed_query("Compute generated_77")
        assert index.dense_search(query, 306)


_UPDATE_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from hybrid_llm.config import Config
    from hybrid_llm.rag.index import CodeIndex

    def report(progress):
        print(progress.phase, progress.done, progress.total, flush=True)

    with CodeIndex.open(Path(sys.argv[1]), Config()) as index:
        index.update(progress=report)
    print("finished", flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["chunking", "embedding"])
def test_kill_9_mid_update_then_rerun_equals_clean_build(tmp_path, phase):
    root = tmp_path / "repo"
    for number in range(600):
        _write(root, f"src/part{number // 100}/mod{number}.py", _function(f"function_{number}"))
    script = tmp_path / "update.py"
    script.write_text(_UPDATE_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), str(root)], stdout=subprocess.PIPE, text=True
    )
    killed_at = None
    for line in process.stdout:
        name, done, total = (line.split() + ["0", "0"])[:3]
        if name == phase and 0 < int(done) < int(total):
            process.send_signal(signal.SIGKILL)
            killed_at = line
            break
    process.wait(timeout=120)
    assert killed_at, f"the update finished before reaching the middle of {phase}"
    assert process.returncode == -signal.SIGKILL

    with CodeIndex.open(root, Config()) as index:
        summary = index.update()
        assert summary.chunks == 600 and summary.chunks_pending == 0
        assert _assert_stores_agree(index) == _expected_ids(root)


def test_second_writer_waits_then_names_the_holder(repo, tmp_path):
    location = index_location(repo, Config())
    location.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import os, sys, time
            from filelock import FileLock
            lock = FileLock({str(location / "write.lock")!r})
            lock.acquire()
            open({str(location / "write.pid")!r}, "w").write(str(os.getpid()))
            print("held", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        waits = []
        with CodeIndex.open(repo, Config(), lock_timeout=0.5) as index:
            with pytest.raises(UserError, match=f"pid {holder.pid}"):
                index.update(progress=waits.append)
        assert waits[0].phase == "waiting" and str(holder.pid) in waits[0].message
    finally:
        holder.kill()
        holder.wait()
    with CodeIndex.open(repo, Config()) as index:  # the lock is free once the holder is gone
        assert index.update().files_indexed == 4


def test_index_lives_outside_the_codebase(repo, hybrid_home, tmp_path):
    before = sorted(repo.rglob("*"))
    assert not CodeIndex.exists(repo, Config())
    assert not (hybrid_home / "indexes").exists()  # exists() creates nothing
    with CodeIndex.open(repo, Config()) as index:
        index.update()
        assert index.location.parent == hybrid_home / "indexes"
    assert CodeIndex.exists(repo, Config())
    assert sorted(repo.rglob("*")) == before

    config = Config()
    config.rag.index_dir = str(tmp_path / "elsewhere")
    with CodeIndex.open(repo, config) as index:
        assert index.location.parent == tmp_path / "elsewhere"


def test_rebuild_and_status(repo):
    with CodeIndex.open(repo, Config()) as index:
        assert index.status().stale
        first = index.update()
        assert index.status() == index.status().__class__(files=4, chunks=6, stale=False)
        _write(repo, "pkg/keep.py", _function("keep_me", "return 3"))
        assert index.status().stale
        rebuilt = index.update(rebuild=True)
        assert rebuilt.files_indexed == 4 and rebuilt.chunks == first.chunks
        assert _assert_stores_agree(index) == _expected_ids(repo)


def test_an_index_from_an_older_version_is_rechunked_without_embedding_again(repo):
    embedder = RecordingEmbedder()
    with CodeIndex.open(repo, Config(), embedder=embedder) as index:
        index.update()
        chunks = index._catalog.chunk_ids()
        with index._catalog.transaction():
            index._catalog.set_meta("schema", "0")  # as an older version left it
            stale_id = "0" * 32  # a vector whose chunk the new version no longer makes
            index._vector_store().upsert([stale_id], np.ones((1, 384), dtype=np.float32))
        embedder.texts.clear()

        assert index.status().stale
        summary = index.update()

        assert summary.files_indexed == 4  # every file chunked again
        assert embedder.texts == []  # and no vector computed again
        assert _assert_stores_agree(index) == chunks  # the stale vector is gone
        assert not index.status().stale


def test_chroma_server_mode_keeps_vectors_on_the_server(repo, chroma_server):
    config = Config()
    config.rag.chroma_url = chroma_server
    with CodeIndex.open(repo, config) as index:
        summary = index.update()
        assert summary.chunks == 6 and summary.chunks_pending == 0
        assert _assert_stores_agree(index) == _expected_ids(repo)
        query = index.embedder.embed_query("Compute beta_two")
        best = index.dense_search(query, 1)[0][0]
        assert index.get_chunks([best])[best].symbol == "beta_two"
        assert not (index.location / "chroma").exists()  # nothing stored locally


def test_open_refuses_a_missing_directory(tmp_path):
    with pytest.raises(UserError, match="not a directory"):
        CodeIndex.open(tmp_path / "missing", Config())


SECRETS = {
    "aws-secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "aws-key-id": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_" + "x1Y2z3" * 6,
    "slack": "xoxb-123456789012-abcdefghijkl",
    "password": "correct-horse-battery",
    "random": "JcBQmqZ03tGfARC8y5LRhlzykWFAP7Pm482oFyzF",
}
SETTINGS_PY = f'''"""Deployment settings."""
DEBUG = True
AWS_SECRET_ACCESS_KEY = "{SECRETS['aws-secret']}"
aws_access_key_id = "{SECRETS['aws-key-id']}"
GITHUB = "{SECRETS['github']}"
SLACK_HOOK_TOKEN = "{SECRETS['slack']}"
DATABASE = {{"user": "app", "password": "{SECRETS['password']}"}}
SIGNING = "{SECRETS['random']}"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
'''


def test_secrets_in_source_files_are_redacted_before_storing_and_counted(repo, hybrid_home):
    _write(repo, "app/settings.py", SETTINGS_PY)
    with CodeIndex.open(repo, Config()) as index:
        summary = index.update()
        stored = index.get_chunks(sorted(index._catalog.chunk_ids()))
        found = index.keyword_search("AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI", 5)

    assert summary.secrets_redacted == len(SECRETS)
    assert summary.to_json()["secrets_redacted"] == len(SECRETS)
    settings = [chunk for chunk in stored.values() if chunk.path == "app/settings.py"]
    text = "\n".join(chunk.text for chunk in settings)
    assert "[REDACTED:aws-access-key]" in text and "[REDACTED:github-token]" in text
    assert "DEBUG = True" in text and "sentence-transformers/all-MiniLM-L6-v2" in text
    assert settings[-1].end_line == SETTINGS_PY.count("\n")  # line numbers still cite the file
    assert found == []
    on_disk = b"".join(path.read_bytes() for path in hybrid_home.rglob("*") if path.is_file())
    for secret in SECRETS.values():
        assert secret.encode() not in on_disk and secret not in text


def test_an_index_made_by_another_embedder_is_embedded_again_never_mixed(repo):
    """Upgrading the default model: the old vectors are not searched with new query vectors,
    the next update embeds every chunk again (reporting it), and only the new model's remain."""
    from hybrid_llm.rag.embedder import CodeEmbedder, MiniLMEmbedder

    with CodeIndex.open(repo, Config(), embedder=MiniLMEmbedder()) as index:
        index.update()
    code = RecordingEmbedder()
    code.inner = CodeEmbedder()
    code.name = code.inner.name
    reports = []
    with CodeIndex.open(repo, Config(), embedder=code) as index:
        chunks = index._catalog.chunk_ids()
        assert index.status().stale
        assert index.vector_progress() == (0, len(chunks))
        assert index.dense_search(code.embed_query("Compute gamma_one"), 5) == []

        summary = index.update(progress=reports.append)

        assert summary.files_unchanged == 4  # nothing re-chunked, everything re-embedded
        assert len(code.texts) == len(chunks)
        embedding = [r for r in reports if r.phase == "embedding"]
        assert "all-MiniLM-L6-v2" in embedding[0].message
        assert embedding[-1].done == embedding[-1].total == len(chunks)
        assert _assert_stores_agree(index) == chunks
        assert index._catalog.get_meta("embedder") == CodeEmbedder.name
        assert not index.status().stale
        # Each stored vector is the new model's: a chunk's own text finds itself, at cosine ~1.
        chunk_id, chunk = next(iter(index.get_chunks(sorted(chunks)).items()))
        (best, similarity), *_ = index.dense_search(
            code.inner.embed([f"{chunk.header}\n{chunk.text}"])[0], 1)
        assert best == chunk_id and similarity > 0.99
