"""BM25 keyword search in SQLite FTS5 with identifier splitting, on real chunks."""

from __future__ import annotations

import pytest

from hybrid_llm.rag.catalog import Catalog, FileRecord
from hybrid_llm.rag.chunk import Chunk
from hybrid_llm.rag.keyword_store import (
    MIN_CHUNKS_FOR_RARITY,
    KeywordStore,
    query_terms,
    split_identifiers,
)


@pytest.mark.parametrize(
    "text",
    ["parseHttpResponse", "parse_http_response", "ParseHTTPResponse", "PARSE_HTTP_RESPONSE"],
)
def test_split_identifiers_finds_the_words(text):
    terms = split_identifiers(text)
    assert terms[:3] == ["parse", "http", "response"]
    assert "parsehttpresponse" in terms


def test_split_identifiers_handles_digits_dunder_and_non_ascii():
    assert split_identifiers("__init__ getURL2Path größe") == [
        "init", "get", "url", "path", "geturl2path", "größe",
    ]


def test_query_terms_drop_question_words_but_not_everything():
    assert query_terms("How do I parse an HTTP response?") == ["parse", "http", "response"]
    assert query_terms("how to") == ["how", "to"]


CHUNKS = [
    Chunk("net/http.py", "python", 1, 3, "def parseHttpResponse(raw):\n    return raw.split()\n",
          "parseHttpResponse", "net/http.py"),
    Chunk("ui/prompt.py", "python", 1, 2,
          "def prompt_user(question):\n    return input(question)\n", "prompt_user", "ui/prompt.py"),
    Chunk("db/store.py", "python", 1, 2, "class Store:\n    def save(self, row): ...\n", "Store",
          "db/store.py"),
]


@pytest.fixture
def store(tmp_path):
    catalog = Catalog.open(tmp_path / "catalog.sqlite3")
    keywords = KeywordStore(catalog.connection)
    with catalog.transaction():
        for chunk in CHUNKS:
            changes = catalog.put_file(FileRecord(chunk.path, 1, 1, "h", "python"), [chunk])
            keywords.add(changes.added)
    yield keywords
    catalog.close()


def test_words_of_an_identifier_find_its_chunk(store):
    results = store.search("parse the http response", 3)
    assert results[0][0] == CHUNKS[0].id
    assert results[0][1] > 0


def test_any_term_may_match_and_stemming_applies(store):
    results = store.search("Prompts a user for input", 3)  # no chunk has all of these words
    assert results[0][0] == CHUNKS[1].id


def test_fts_syntax_in_queries_is_plain_text(store):
    for query in ['save AND "row', "store -save", "Store: NEAR(", "*", ""]:
        store.search(query, 3)  # must not raise
    assert store.search("save AND row", 1)[0][0] == CHUNKS[2].id


def test_removed_rows_are_no_longer_found(store):
    store.remove([1])
    assert CHUNKS[0].id not in [chunk_id for chunk_id, _ in store.search("parse http", 3)]
    assert store.count() == 2


def test_rare_term_share_counts_the_query_words_the_codebase_barely_uses(tmp_path):
    catalog = Catalog.open(tmp_path / "catalog.sqlite3")
    keywords = KeywordStore(catalog.connection)
    handlers = [
        Chunk(f"app/h{n}.py", "python", 1, 2, f"def handle_request_{n}(request):\n    return request\n",
              f"handle_request_{n}", f"app/h{n}.py")
        for n in range(MIN_CHUNKS_FOR_RARITY)
    ]
    with catalog.transaction():
        for chunk in handlers:
            keywords.add(catalog.put_file(FileRecord(chunk.path, 1, 1, "h", "python"), [chunk]).added)

    assert keywords.rare_term_share("handle the requests") == 0.0  # stemmed: request(s)
    assert keywords.rare_term_share("handle a csv request") == 1 / 3  # handle, csv, request
    keywords.remove([1])
    assert keywords.rare_term_share("handle a csv request") is None  # too few chunks to tell
    catalog.close()
