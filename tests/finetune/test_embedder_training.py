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


def test_later_rounds_train_on_the_answers_the_model_itself_confuses():
    """The shipped model (int8, as the index runs it) ranks a description against its package's
    answers: the code closest in meaning comes first among the look-alikes, ahead of the keyword
    ones; the right answer is never its own look-alike, and other packages' code never is."""
    from hybrid_llm.rag.embedder import CODE_MODEL_FILE

    def pair(package, description, code, answer_id, look_alikes=()):
        return embedder_training.TrainingPair(package, description, code, answer_id, look_alikes)

    pairs = [
        pair("net", "Wait longer after each failed attempt.", "def backoff_delays(attempts, base):\n"
             "    return [base * 2 ** n for n in range(attempts)]", "net/retry", ("net/url",)),
        pair("net", "Retry a call until it succeeds.", "def retry(call, attempts):\n"
             "    for n in range(attempts):\n        try:\n            return call()\n"
             "        except OSError:\n            time.sleep(2 ** n)", "net/retry-call"),
        pair("net", "Join a base URL and a path.", "def join_url(base, path):\n"
             "    return base.rstrip('/') + '/' + path.lstrip('/')", "net/url"),
        pair("ui", "Blend two colours.", "def blend(a, b, t):\n"
             "    return tuple(x + (y - x) * t for x, y in zip(a, b))", "ui/blend"),
    ]

    mined = embedder_training.with_dense_look_alikes(pairs, CODE_MODEL_FILE)

    assert mined[0].look_alikes == ("net/retry-call", "net/url")  # dense first, keyword kept
    assert all(p.answer_id not in p.look_alikes for p in mined)
    assert mined[3].look_alikes == ()  # alone in its package
    assert [(p.description, p.answer_id) for p in mined] == [(p.description, p.answer_id) for p in pairs]


def test_a_training_round_in_bfloat16_teaches_the_descriptions_their_code(tmp_path, monkeypatch):
    """The real training loop on the real MiniLM weights, matrix products in bfloat16 as round 4
    runs them: a few steps on eight pairs raise each description's similarity to its own code
    above the others'; the checkpoint it saves is a model that loads."""
    from sentence_transformers import SentenceTransformer

    from hybrid_llm.rag.embedder import source_model_dir

    functions = {
        "Read a JSON file and return its data.": "def load(path):\n    with open(path) as f:\n        return json.load(f)",
        "Sum the prices of the items in a cart.": "def total(cart):\n    return sum(i.price for i in cart)",
        "Split a sentence into lowercase words.": "def words(text):\n    return text.lower().split()",
        "Send an email to every subscriber.": "def notify(subscribers, mail):\n    for s in subscribers:\n        mail.send(s.address)",
        "Resize an image to a thumbnail.": "def thumbnail(image):\n    return image.resize((128, 128))",
        "Count the lines of a log file that are errors.": "def errors(log):\n    return sum('ERROR' in line for line in log)",
        "Convert degrees Celsius to Fahrenheit.": "def fahrenheit(c):\n    return c * 9 / 5 + 32",
        "Open a connection to the database.": "def connect(url):\n    return sqlite3.connect(url)",
    }
    # Each description is paired with the next function's code, so the base model starts with a
    # margin below zero that only the training can build; one batch of the eight per package.
    descriptions, codes = list(functions), list(functions.values())
    pairs = [embedder_training.TrainingPair(package, description, codes[(n + 1) % 8], f"{package}/{n}", ())
             for package in ("a", "b", "c", "d") for n, description in enumerate(descriptions)]
    monkeypatch.setitem(embedder_training.HYPERPARAMETERS, "batch_size", 8)

    def margin(model) -> float:
        """Mean similarity of a description to its paired code minus to the other codes."""
        anchors = model.encode([p.description for p in pairs[:8]], normalize_embeddings=True)
        answers = model.encode([p.code for p in pairs[:8]], normalize_embeddings=True)
        similarity = anchors @ answers.T
        return float(similarity.diagonal().mean() - (similarity.sum() - similarity.trace()) / 56)

    before = margin(SentenceTransformer(str(source_model_dir()), device="cpu"))
    trained = embedder_training.train(pairs, tmp_path, max_minutes=5, max_steps=None,
                                      learning_rate=5e-4, both_ways=True, bfloat16=True)

    assert trained.name == "checkpoint-4"  # one step per package's batch, all of them
    assert margin(SentenceTransformer(str(trained), device="cpu")) > before + 0.1  # -0.07 -> 0.30
