"""Mining of the code embedder's training pairs from a registry package (a real npm-style
tarball, real grammars, the index's own chunker and keyword search; no model, no network)."""

from __future__ import annotations

import io
import random
import tarfile

import pytest

from hybrid_llm.finetune import embedder_training

ROUTER_JS = """'use strict';

/**
 * Adds a route that answers GET requests for the given path.
 * @param {string} path
 */
function get(path, handler) {
  return register('GET', path, handler);
}

/**
 * Removes every route registered for the given path.
 */
function forget(path) {
  routes.delete(path);
}
"""


@pytest.fixture()
def npm_tarball(tmp_path):
    """A package as `npm pack` writes it: its source, a minified bundle and a test suite."""
    archive = tmp_path / "router-1.0.0.tgz"
    members = {"package/lib/router.js": ROUTER_JS,
               "package/lib/router.min.js": ROUTER_JS,
               "package/lib/__tests__/router.test.js": ROUTER_JS}
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def test_pairs_from_doc_comments_describe_code_that_no_longer_shows_them(npm_tarball, tmp_path):
    root = tmp_path / "stripped"
    queries = embedder_training.unpack_source_stripped(npm_tarball, "package/lib", "router", root)
    # The bundle and the tests are not sources: each description has one answer.
    assert sorted(q.text for q in queries) == [
        "Adds a route that answers GET requests for the given path.",
        "Removes every route registered for the given path."]
    assert [p.name for p in (root / "router").rglob("*") if p.is_file()] == ["router.js"]
    pairs = embedder_training.mine_package("router", root, queries, random.Random(0))
    by_text = {pair.description: pair for pair in pairs}
    get_pair = by_text["Adds a route that answers GET requests for the given path."]
    assert "function get(path, handler)" in get_pair.code
    assert get_pair.code.startswith("router/router.js")  # the index's header comes first
    assert "Adds a route" not in get_pair.code and "forget" not in get_pair.code


def test_a_registry_package_that_is_a_benchmark_set_is_refused(monkeypatch):
    monkeypatch.setitem(embedder_training.NPM_PACKAGES, "pygments", ("1.0.0", "package"))
    with pytest.raises(SystemExit, match="pygments is a benchmark set"):
        embedder_training.check_packages_are_unseen()
