"""`CodeIndex`: one codebase's catalog, keyword index and vectors, kept up to date incrementally.

An update runs in two passes, both driven by the catalog (no store walks the disk itself):

1. Chunking: files whose size or mtime changed are read and hashed; those whose content really
   changed are re-chunked, and each file's rows (catalog, keyword index, vector ids to delete)
   are replaced in one SQLite transaction. Keyword search is complete when this pass ends.
2. Vectors: queued deletions are applied to Chroma, then chunks without a vector are embedded
   (or taken from the embedding cache, keyed by content hash) and flagged only after Chroma has
   them. A run killed at any point is finished by the next one: an `update_in_progress` marker
   makes it reconcile Chroma's ids with the catalog before continuing.

The REPL runs only the first pass before a request (`update(embed=False)`) and the second in
the background between requests (`embed_pending`, in small rounds it can stop after): a new
codebase is served by keyword search at once, and dense search covers the chunks that have
vectors so far. Every round is committed, so stopping or quitting keeps what was embedded.

Only one process writes an index at a time (a file lock; the holder's pid is recorded so a
second writer can say whom it is waiting for). Indexes live under `hybrid_home()/indexes/`, or
`rag.index_dir`, never inside the codebase.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hybrid_llm.config import (
    Config,
    hybrid_home,
    private_directory,
    private_file,
    restrict_to_owner,
)
from hybrid_llm.errors import UserError
from hybrid_llm.rag.catalog import Catalog, FileRecord
from hybrid_llm.rag.chunk import Chunk
from hybrid_llm.rag.embedder import Embedder, default_embedder, default_embedder_name
from hybrid_llm.rag.keyword_store import KeywordStore
from hybrid_llm.rag.vector_store import VectorStore, collection_name
from hybrid_llm.rag.writer_lock import writer_lock
from hybrid_llm.redact import redact

_log = logging.getLogger(__name__)

SCHEMA_VERSION = "3"  # 2: chunks.defines; 3: secrets redacted (older indexes are re-chunked)
_CATALOG_FILE = "catalog.sqlite3"
_EMBED_ROUND = 256
# Background rounds are small so that a request waits at most one of them (~0.5 s on 2 cores)
# before it has the CPU to itself.
BACKGROUND_EMBED_ROUND = 16
_PROGRESS_INTERVAL = 0.1


@dataclass(frozen=True)
class IndexProgress:
    """One progress report. `phase` is "waiting", "scanning", "chunking" or "embedding";
    `done`/`total` count files while chunking and chunks while embedding."""

    phase: str
    done: int
    total: int
    files: int = 0
    chunks: int = 0
    elapsed: float = 0.0
    message: str = ""


@dataclass
class IndexSummary:
    files_indexed: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    files_skipped: Counter[str] = field(default_factory=Counter)
    chunks: int = 0
    languages: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # Tokens and passwords replaced in the chunks written by this update (hybrid_llm.redact).
    secrets_redacted: int = 0
    # Not part of the JSON contract: chunks still waiting for a vector, and whether Ctrl-C
    # stopped the update (finished files are kept either way).
    chunks_pending: int = 0
    interrupted: bool = False

    def to_json(self) -> dict:
        """Exactly the `hybrid-llm index --json` shape."""
        return {
            "files_indexed": self.files_indexed,
            "files_unchanged": self.files_unchanged,
            "files_deleted": self.files_deleted,
            "files_skipped": dict(sorted(self.files_skipped.items())),
            "chunks": self.chunks,
            "secrets_redacted": self.secrets_redacted,
            "languages": dict(sorted(self.languages.items())),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class IndexStatus:
    files: int
    chunks: int
    stale: bool


ProgressCallback = Callable[[IndexProgress], None]


def index_location(repo: Path, config: Config) -> Path:
    """The directory holding `repo`'s index: `<name>-<hash of the absolute path>`."""
    root = Path(repo).expanduser().resolve()
    if config.rag.index_dir:
        base = Path(config.rag.index_dir).expanduser()
    else:
        base = hybrid_home() / "indexes"
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", root.name).strip("-.") or "root"
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return base / f"{slug}-{digest}"


class CodeIndex:
    """The index of one codebase; see the module docstring for the update protocol."""

    def __init__(
        self,
        repo: Path,
        location: Path,
        config: Config,
        *,
        embedder: Embedder | None,
        chunker=None,
        lock_timeout: float,
    ) -> None:
        self.repo = repo
        self.location = location
        self._config = config
        self._embedder = embedder
        self._chunker = chunker
        self._lock_timeout = lock_timeout
        self._catalog = Catalog.open(private_file(location / _CATALOG_FILE))
        self._keywords = KeywordStore(self._catalog.connection)
        # Searches use their own connection: they see committed files only, and can run in
        # another thread while an update holds the writer's transaction open.
        self._reader = Catalog.open(location / _CATALOG_FILE)
        self._reader_keywords = KeywordStore(self._reader.connection)
        self._read_lock = threading.Lock()
        self._vectors: VectorStore | None = None
        self._vectors_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        repo: Path,
        config: Config,
        *,
        embedder: Embedder | None = None,
        chunker=None,
        lock_timeout: float = 60.0,
    ) -> CodeIndex:
        """Open (creating if needed) the index of `repo`; nothing is read or embedded yet.

        `chunker` is anything with `.chunk(rel_path, text) -> list[Chunk]` (default
        `CodeChunker()`); `embedder` defaults to the shared default model, loaded on first need.
        """
        repo = Path(repo).expanduser()
        if not repo.is_dir():
            raise UserError(f"{repo}: not a directory (give the root of a codebase to index)")
        location = index_location(repo, config)
        private_directory(location)  # the catalog holds the user's code: owner-only
        return cls(
            repo.resolve(),
            location,
            config,
            embedder=embedder,
            chunker=chunker,
            lock_timeout=lock_timeout,
        )

    @staticmethod
    def exists(repo: Path, config: Config) -> bool:
        """Whether `repo` has an index on disk; creates nothing."""
        return (index_location(repo, config) / _CATALOG_FILE).is_file()

    def close(self) -> None:
        self._catalog.close()
        self._reader.close()

    def __enter__(self) -> CodeIndex:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = default_embedder()
        return self._embedder

    # -- searching -----------------------------------------------------------------------------

    def keyword_search(self, query: str, k: int) -> list[tuple[str, float]]:
        """BM25 over identifiers split into words; available as soon as files are chunked."""
        with self._read_lock:
            return self._reader_keywords.search(query, k)

    def rare_term_share(self, query: str) -> float | None:
        """See `KeywordStore.rare_term_share`: evidence for the relevance gate."""
        with self._read_lock:
            return self._reader_keywords.rare_term_share(query)

    def dense_search(self, embedding: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Nearest chunks by cosine similarity to `embedding` (from `self.embedder`), among the
        chunks that have a vector (all of them once the vector pass is complete)."""
        if self.vector_progress()[0] == 0:  # nothing embedded yet: no need to start Chroma
            return []
        return self._vector_store().query(embedding, k)

    def vector_progress(self) -> tuple[int, int]:
        """(chunks that have a vector, all chunks), as committed so far. Vectors made by another
        embedder count as missing: a query embedded by this one cannot be compared with them."""
        with self._read_lock:
            total = self._reader.chunk_count()
            if self._reader.get_meta("embedder") != self._embedder_name():
                return 0, total
            return total - self._reader.pending_count(), total

    def get_chunks(self, ids: list[str]) -> dict[str, Chunk]:
        with self._read_lock:
            return self._reader.get_chunks(ids)

    def status(self) -> IndexStatus:
        """Counts, and whether an update would change anything (this walks the codebase)."""
        with self._read_lock:
            records = self._reader.file_records()
            unfinished = (
                self._reader.get_meta("update_in_progress") is not None
                or self._reader.pending_count() > 0
                or self._reader.get_meta("schema") != SCHEMA_VERSION
                or self._reader.get_meta("embedder") != self._embedder_name()
            )
            chunks = self._reader.chunk_count()
        discovery = self._discover()
        on_disk = {file.rel_path: (file.size, file.mtime_ns) for file in discovery.files}
        catalogued = {path: (record.size, record.mtime_ns) for path, record in records.items()}
        stale = unfinished or on_disk != catalogued
        return IndexStatus(files=len(records), chunks=chunks, stale=stale)

    # -- updating ------------------------------------------------------------------------------

    def update(
        self, *, rebuild: bool = False, progress: ProgressCallback | None = None, embed: bool = True
    ) -> IndexSummary:
        """Bring the index in line with the codebase; Ctrl-C keeps every file finished so far.

        With `embed=False` only the chunking pass runs: keyword search is complete, and the
        chunks still without a vector (`summary.chunks_pending`) wait for `embed_pending`.
        """
        started = time.perf_counter()
        report = _Reporter(progress, started)
        summary = IndexSummary()
        what = f"the index of {self.repo}"
        with writer_lock(
            self.location, what=what, timeout=self._lock_timeout, on_wait=report.waiting
        ):
            try:
                self._update(summary, report, rebuild, embed)
            except KeyboardInterrupt:
                summary.interrupted = True
            summary.chunks = self._catalog.chunk_count()
            summary.chunks_pending = self._catalog.pending_count()
            summary.languages = dict(self._catalog.languages())
        restrict_to_owner(self.location)  # what Chroma and the lock created with the umask
        summary.seconds = time.perf_counter() - started
        return summary

    def _update(self, summary: IndexSummary, report: _Reporter, rebuild: bool, embed: bool) -> None:
        if rebuild or self._catalog.get_meta("schema") != SCHEMA_VERSION:
            self._clear(keep_vectors=not rebuild)
        interrupted_before = self._catalog.get_meta("update_in_progress") is not None
        with self._catalog.transaction():
            self._catalog.set_meta("update_in_progress", str(os.getpid()))
            self._catalog.set_meta("repo", str(self.repo))  # says whose index this folder is
        report("scanning", 0, 0)
        discovery = self._discover()
        summary.files_skipped.update(discovery.skipped)
        self._chunk_pass(discovery.files, summary, report)
        if embed:
            self._vector_pass(report, reconcile=interrupted_before)
        with self._catalog.transaction():
            if summary.files_indexed or summary.files_deleted:
                self._catalog.drop_unused_embeddings()
            # Without the vector pass, a reconcile owed by an earlier killed run is still owed.
            still_owed = not embed and interrupted_before
            self._catalog.set_meta("update_in_progress", "reconcile" if still_owed else None)

    def embed_pending(
        self,
        *,
        should_stop: Callable[[], bool],
        progress: ProgressCallback | None = None,
        round_size: int = BACKGROUND_EMBED_ROUND,
    ) -> int:
        """Compute the missing vectors in rounds of `round_size` chunks until none is missing
        or `should_stop()` says so (checked between rounds); returns how many are still missing.

        Used between requests, so it never waits: when another process holds the writer lock
        it does nothing this time. A round is committed as soon as Chroma has its vectors.
        """
        report = _Reporter(progress, time.perf_counter())
        try:
            with writer_lock(self.location, what=f"the index of {self.repo}", timeout=0,
                             on_wait=lambda message: None):
                reconcile = self._catalog.get_meta("update_in_progress") is not None
                with self._catalog.transaction():
                    self._catalog.set_meta("update_in_progress", str(os.getpid()))
                self._vector_pass(report, reconcile=reconcile, should_stop=should_stop,
                                  round_size=round_size)
                with self._catalog.transaction():
                    self._catalog.set_meta("update_in_progress", None)
        except UserError:  # another process is updating this index; it embeds them itself
            pass
        restrict_to_owner(self.location)
        return self._catalog.pending_count()

    def _discover(self):
        from hybrid_llm.rag.discovery import discover_files

        extensions = self._config.rag.file_extensions or None
        return discover_files(
            self.repo, max_file_bytes=self._config.rag.max_file_bytes, extensions=extensions
        )

    def _chunk_pass(self, files, summary: IndexSummary, report: _Reporter) -> None:
        records = self._catalog.file_records()
        present = {file.rel_path for file in files}
        for path in sorted(set(records) - present):
            with self._catalog.transaction():
                self._keywords.remove(self._catalog.remove_file(path))
            summary.files_deleted += 1
        changed = []
        for file in files:
            record = records.get(file.rel_path)
            if record and (record.size, record.mtime_ns) == (file.size, file.mtime_ns):
                summary.files_unchanged += 1
            else:
                changed.append(file)
        chunks_written = 0
        report("chunking", 0, len(changed))
        for done, file in enumerate(changed, start=1):
            chunks_written += self._index_file(file, records.get(file.rel_path), summary)
            report("chunking", done, len(changed), files=done, chunks=chunks_written)

    def _index_file(self, file, record: FileRecord | None, summary: IndexSummary) -> int:
        """Re-chunk one file if its content changed; returns the number of chunks written."""
        from hybrid_llm.rag.chunker import detect_language
        from hybrid_llm.rag.discovery import read_source

        source = read_source(file, max_file_bytes=self._config.rag.max_file_bytes)
        if source.text is None:
            summary.files_skipped[source.skip_reason or "unreadable"] += 1
            if record:  # indexed before, unindexable now (became binary, too large, ...)
                with self._catalog.transaction():
                    self._keywords.remove(self._catalog.remove_file(file.rel_path))
            return 0
        content_hash = hashlib.sha256(source.text.encode("utf-8", "surrogatepass")).hexdigest()
        new_record = FileRecord(
            file.rel_path, file.size, file.mtime_ns, content_hash, detect_language(file.rel_path)
        )
        if record and record.content_hash == content_hash:
            with self._catalog.transaction():
                self._catalog.update_file_stat(new_record)
            summary.files_unchanged += 1
            return 0
        try:
            chunks = self._get_chunker().chunk(file.rel_path, source.text)
            chunks, redactions = _without_secrets(chunks)
        except Exception:  # noqa: BLE001 - one odd file must not stop a whole codebase
            _log.warning("cannot chunk %s", file.rel_path, exc_info=True)
            summary.files_skipped["chunker_error"] += 1
            return 0
        summary.secrets_redacted += redactions
        with self._catalog.transaction():
            changes = self._catalog.put_file(new_record, chunks)
            self._keywords.remove(changes.removed)
            self._keywords.add(changes.added)
        summary.files_indexed += 1
        return len(changes.added)

    def _vector_pass(
        self,
        report: _Reporter,
        *,
        reconcile: bool,
        should_stop: Callable[[], bool] = lambda: False,
        round_size: int = _EMBED_ROUND,
    ) -> None:
        deletes = self._catalog.vector_deletes()
        pending = self._catalog.pending_count()
        # A new or rebuilt index has no embedder yet; one embedded by another model (an upgrade
        # that changed the default model) must be embedded again by this one.
        other_space = self._catalog.get_meta("embedder") != self._embedder_name()
        if not (reconcile or deletes or pending or other_space):
            return
        store = self._vector_store()
        message = self._check_vector_space(store)
        if reconcile or store.count() > self._catalog.chunk_count():
            self._reconcile(store)
        store.delete(self._catalog.vector_deletes())
        with self._catalog.transaction():
            self._catalog.clear_vector_deletes()
        self._embed_pending(store, self._catalog.pending_count(), report, should_stop,
                            round_size, message)

    def _embed_pending(self, store: VectorStore, total: int, report: _Reporter,
                       should_stop: Callable[[], bool], round_size: int, message: str) -> None:
        done = 0
        report("embedding", 0, total, message=message)
        while not should_stop() and (batch := self._catalog.pending_chunks(round_size)):
            vectors = self._catalog.cached_embeddings([chunk.content_hash for chunk in batch])
            missing = {c.content_hash: c.embed_text for c in batch if c.content_hash not in vectors}
            fresh = dict(zip(missing, self.embedder.embed(list(missing.values())), strict=True))
            vectors.update(fresh)
            store.upsert([c.id for c in batch], np.stack([vectors[c.content_hash] for c in batch]))
            # Flagged only now that Chroma holds them: a crash before this line re-upserts.
            with self._catalog.transaction():
                self._catalog.store_embeddings(fresh)
                self._catalog.set_embedded(c.id for c in batch)
            done += len(batch)
            report("embedding", done, total, chunks=done)

    def _reconcile(self, store: VectorStore) -> None:
        """Make Chroma's ids and the catalog's `embedded` flags agree after an interrupted run."""
        stored = store.ids()
        store.delete(sorted(stored - self._catalog.chunk_ids()))
        with self._catalog.transaction():
            self._catalog.set_embedded(self._catalog.embedded_ids() - stored, embedded=False)

    def _embedder_name(self) -> str:
        """The model this index's vectors must come from; the default one is named unloaded."""
        return self._embedder.name if self._embedder else default_embedder_name()

    def _check_vector_space(self, store: VectorStore) -> str:
        """Vectors from another embedding model are meaningless here: start them over.
        Returns what to tell the user when that happens (embedding everything takes minutes)."""
        name = self._embedder_name()
        previous = self._catalog.get_meta("embedder")
        if previous == name:
            return ""
        store.reset()
        with self._catalog.transaction():
            self._catalog.reset_embedded()
            self._catalog.clear_embeddings()
            self._catalog.set_meta("embedder", name)
        if previous is None:
            return ""
        # Names end in the model file's hash: too long for a progress line, and the same words.
        return f"vectors were made by {previous.split()[0]}: embedding again with {name.split()[0]}"

    def _clear(self, *, keep_vectors: bool) -> None:
        """Forget every file so that all are chunked again.

        A rebuild also drops the vectors: an embedder of None forces a vector reset on the
        next vector pass, even if the store is not open now. An index written by an older
        version (`keep_vectors`) keeps them: they are cached by content and stay valid for the
        same embedder, and flagging the update as unfinished makes the vector pass reconcile,
        which drops the vectors of chunks that no longer exist.
        """
        embedder = self._catalog.get_meta("embedder") if keep_vectors else None
        with self._catalog.transaction():
            self._catalog.clear(keep_embeddings=keep_vectors)
            self._keywords.clear()
            self._catalog.set_meta("schema", SCHEMA_VERSION)
            self._catalog.set_meta("embedder", embedder)
            if keep_vectors:
                self._catalog.set_meta("update_in_progress", "upgrade")

    def _get_chunker(self):
        if self._chunker is None:
            from hybrid_llm.rag.chunker import CodeChunker

            self._chunker = CodeChunker()
        return self._chunker

    def _vector_store(self) -> VectorStore:
        with self._vectors_lock:
            if self._vectors is None:
                name = collection_name(self.location.name)
                url = self._config.rag.chroma_url
                self._vectors = (
                    VectorStore.remote(url, name)
                    if url
                    else VectorStore.persistent(self.location / "chroma", name)
                )
            return self._vectors


def _without_secrets(chunks: list[Chunk]) -> tuple[list[Chunk], int]:
    """Chunks with keys, tokens and passwords replaced before anything stores, embeds or shows
    them (private-key blocks were already dropped by the chunker), and how many were replaced."""
    cleaned, count = [], 0
    for chunk in chunks:
        text, in_text = redact(chunk.text)
        header, in_header = redact(chunk.header)
        cleaned.append(replace(chunk, text=text, header=header) if in_text + in_header else chunk)
        count += in_text + in_header
    return cleaned, count


class _Reporter:
    """Calls the progress callback, at most every 100 ms except for a phase's first and last."""

    def __init__(self, callback: ProgressCallback | None, started: float) -> None:
        self._callback = callback
        self._started = started
        self._last = 0.0

    def __call__(
        self,
        phase: str,
        done: int,
        total: int,
        *,
        files: int = 0,
        chunks: int = 0,
        message: str = "",
    ) -> None:
        if self._callback is None:
            return
        now = time.perf_counter()
        if 0 < done < total and now - self._last < _PROGRESS_INTERVAL:
            return
        self._last = now
        elapsed = now - self._started
        self._callback(IndexProgress(phase, done, total, files, chunks, elapsed, message))

    def waiting(self, message: str) -> None:
        self("waiting", 0, 0, message=message)
