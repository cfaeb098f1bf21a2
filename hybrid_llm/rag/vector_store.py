"""Chunk vectors in ChromaDB: a local PersistentClient, or a shared server via HttpClient.

Chroma only ever receives vectors we computed (its default embedding function downloads a
model, which fails offline), and only ids and vectors: chunk text lives in the catalog, so a
shared server never needs the code itself. chromadb is imported on first use because the import
alone takes seconds and a warm re-index with nothing changed must not pay for it.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from hybrid_llm.errors import UserError

_PAGE = 5000
# How widely Chroma's approximate-neighbour graph (HNSW) is searched and built. At Chroma's
# default of 100 for both, a search returned 94 % of the true 40 nearest of pygments' 3,779
# chunks for its benchmark queries; at 400 for both 99.8 %, in the same ~3 ms per query.
# Searching wider finds what the embedder ranks first: hybrid hit@5 on pygments 0.696 -> 0.713
# with the code embedder, MiniLM's dense hit@5 0.569 -> 0.602 (bench/retrieval_bench.py).
SEARCH_BREADTH = 400
BUILD_BREADTH = 400


def collection_name(index_name: str) -> str:
    """A Chroma-valid collection name (3-512 of [a-zA-Z0-9._-], alphanumeric at both ends)."""
    cleaned = re.sub(r"[^a-zA-Z0-9._]+", "-", index_name).strip("-._")
    return f"code-{cleaned}"[:512].rstrip("-._")


class VectorStore:
    """One Chroma collection of unit vectors compared by cosine similarity."""

    def __init__(self, client, name: str) -> None:
        self._client = client
        self._name = name
        self._collection = self._open_collection()

    @classmethod
    def persistent(cls, path: Path, name: str) -> VectorStore:
        import chromadb

        path.mkdir(parents=True, exist_ok=True)
        return cls(chromadb.PersistentClient(path=str(path), settings=_settings()), name)

    @classmethod
    def remote(cls, url: str, name: str) -> VectorStore:
        """A Chroma server (`chroma run`); one server can hold the indexes of a whole team."""
        import chromadb

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UserError(f"rag.chroma_url must look like http://HOST:PORT, got {url!r}")
        port = parsed.port or (443 if parsed.scheme == "https" else 8000)
        try:
            client = chromadb.HttpClient(
                host=parsed.hostname, port=port, ssl=parsed.scheme == "https", settings=_settings()
            )
            return cls(client, name)
        except Exception as exc:  # noqa: BLE001 - chromadb raises assorted transport errors
            raise UserError(f"cannot reach the Chroma server at {url}: {exc}") from None

    def _open_collection(self):
        collection = self._client.get_or_create_collection(
            self._name, embedding_function=None,
            configuration={"hnsw": {"space": "cosine", "ef_search": SEARCH_BREADTH,
                                    "ef_construction": BUILD_BREADTH}},
        )
        _widen_search(collection)
        return collection

    def upsert(self, ids: list[str], embeddings: np.ndarray) -> None:
        step = self._client.get_max_batch_size()
        for start in range(0, len(ids), step):
            self._collection.upsert(
                ids=ids[start : start + step], embeddings=embeddings[start : start + step]
            )

    def delete(self, ids: list[str]) -> None:
        """Remove vectors; ids that are not there are ignored."""
        step = self._client.get_max_batch_size()
        for start in range(0, len(ids), step):
            self._collection.delete(ids=ids[start : start + step])

    def query(self, embedding: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k nearest chunk ids with cosine similarity, best first."""
        if k <= 0 or self.count() == 0:
            return []
        result = self._collection.query(
            query_embeddings=np.asarray(embedding, dtype=np.float32).reshape(1, -1),
            n_results=k,
            include=["distances"],
        )
        return [
            (chunk_id, 1.0 - float(distance))
            for chunk_id, distance in zip(result["ids"][0], result["distances"][0], strict=True)
        ]

    def ids(self) -> set[str]:
        found: set[str] = set()
        while True:
            page = self._collection.get(include=[], limit=_PAGE, offset=len(found))["ids"]
            found.update(page)
            if len(page) < _PAGE:
                return found

    def count(self) -> int:
        return self._collection.count()

    def reset(self) -> None:
        """Drop every vector (a rebuild, or vectors from another embedding model)."""
        self._client.delete_collection(self._name)
        self._collection = self._open_collection()


def _widen_search(collection) -> None:
    """An existing collection keeps the configuration it was made with; one made with a
    narrower search is searched with SEARCH_BREADTH from the next time it is opened (Chroma
    applies a changed configuration when it loads the graph). Its graph stays as built."""
    hnsw = (collection.configuration_json or {}).get("hnsw") or {}
    if hnsw.get("ef_search", SEARCH_BREADTH) >= SEARCH_BREADTH:
        return
    try:
        collection.modify(configuration={"hnsw": {"ef_search": SEARCH_BREADTH}})
    except Exception:  # noqa: BLE001 - a server that cannot change it still searches as before
        pass


def _settings():
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False)
