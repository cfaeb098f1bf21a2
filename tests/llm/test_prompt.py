"""The prompt builder: what the model is shown, and that it never overflows the context.

Token counts come from a real byte-level BPE tokenizer (the tiny Qwen2's, trained locally), and
the overflow check applies the real chat template to the result.
"""

from __future__ import annotations

import pytest

from hybrid_llm.errors import UserError
from hybrid_llm.llm.prompt import SYSTEM_PROMPT, PromptBuilder, Turn, format_chunk
from hybrid_llm.net.passage import WebPassage
from hybrid_llm.rag.chunk import Chunk, RetrievedChunk


def make_chunk(index: int, lines: int = 12) -> RetrievedChunk:
    body = "\n".join(f"    total_{index} = compute_{index}(value, {line})" for line in range(lines))
    text = f"def helper_{index}(value):\n{body}\n    return total_{index}"
    chunk = Chunk(f"pkg/module_{index}.py", "python", 10 * index + 1, 10 * index + lines + 2, text,
                  symbol=f"helper_{index}")
    return RetrievedChunk(chunk, score=1.0 / (index + 1), sources=("dense",))


def make_turn(index: int, words: int = 200) -> Turn:
    return Turn(f"question {index}: " + "explain the parser " * (words // 3), f"answer {index} " + "ok " * words)


@pytest.fixture
def count(tiny_tokenizer):
    return lambda text: len(tiny_tokenizer.encode(text, add_special_tokens=False))


def templated_tokens(tokenizer, messages) -> int:
    return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                             return_dict=True)["input_ids"])


def test_far_too_much_context_is_cut_to_the_budget_by_rank_and_age(count, tiny_tokenizer):
    builder = PromptBuilder(count, context_length=4096, max_tokens=1024)
    chunks = [make_chunk(i) for i in range(60)]
    history = [make_turn(i, words=40) for i in range(12)]
    passages = [WebPassage(f"https://example.org/{i}", f"Page {i}", "lorem ipsum " * 30, 1.0) for i in range(2)]

    built = builder.build("add caching to helper_0", chunks=chunks, passages=passages, history=history)

    assert templated_tokens(tiny_tokenizer, built.messages) <= 4096 - 1024
    included = [c.chunk.citation for c in built.chunks]
    assert included == [c.chunk.citation for c in chunks[: len(included)]], "lowest-ranked go first"
    assert 0 < len(included) < len(chunks)
    assert built.passages, "web passages the user asked for come before code"
    kept_questions = [m["content"] for m in built.messages if m["role"] == "user"][:-1]
    assert kept_questions == [t.user_message for t in history[len(history) - built.turns_kept :]]
    assert 0 < built.turns_kept < len(history), "oldest turns go first"
    assert built.dropped["turns"] == len(history) - built.turns_kept
    assert built.messages[-1]["content"].endswith("Request: add caching to helper_0")


def test_budget_holds_for_many_sizes(count, tiny_tokenizer):
    for context_length, max_tokens in [(512, 128), (1024, 512), (4096, 1024)]:
        builder = PromptBuilder(count, context_length=context_length, max_tokens=max_tokens)
        built = builder.build("write a test", chunks=[make_chunk(i, lines=40) for i in range(30)],
                              history=[make_turn(i, 400) for i in range(6)])
        assert templated_tokens(tiny_tokenizer, built.messages) <= context_length - max_tokens


def test_chunks_appear_with_bodies_under_their_citation_and_passages_under_their_url(count):
    builder = PromptBuilder(count, context_length=4096, max_tokens=512)
    chunk = make_chunk(3)
    passage = WebPassage("https://docs.python.org/3/library/functools.html", "functools", "lru_cache(maxsize=128)")

    built = builder.build("cache helper_3", chunks=[chunk], passages=[passage])

    assert built.messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    user = built.messages[-1]["content"]
    assert f"### pkg/module_3.py:31-44\n```python\n{chunk.chunk.text}\n```" in user
    assert "### https://docs.python.org/3/library/functools.html\nfunctools\nlru_cache(maxsize=128)" in user
    assert built.chunks == [chunk] and built.passages == [passage]


def test_excerpts_come_with_the_rules_to_reuse_them_and_a_bare_request_with_nothing(count):
    builder = PromptBuilder(count, context_length=4096, max_tokens=512)

    with_code = builder.build("cache helper_3", chunks=[make_chunk(3)]).messages
    bare = builder.build("write a linked list").messages

    assert "import it and call it" in with_code[-1]["content"]
    assert "Never re-define or re-implement" in with_code[-1]["content"]
    assert bare == [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": "write a linked list"}]
    assert "codebase" not in SYSTEM_PROMPT and "excerpt" not in SYSTEM_PROMPT


def test_next_turn_replays_the_previous_prompt_as_its_prefix(count):
    builder = PromptBuilder(count, context_length=4096, max_tokens=512)
    first = builder.build("add a cache", chunks=[make_chunk(1), make_chunk(2)])
    turn = Turn(first.user_message, "Here it is.", frozenset(c.chunk.citation for c in first.chunks))

    second = builder.build("now add a test", chunks=[make_chunk(2), make_chunk(5)], history=[turn])

    assert second.messages[: len(first.messages)] == first.messages
    assert second.messages[len(first.messages)] == {"role": "assistant", "content": "Here it is."}
    new_user = second.messages[-1]["content"]
    assert "pkg/module_5.py" in new_user
    assert "pkg/module_2.py" not in new_user, "a chunk the model already saw is not repeated"
    assert {c.chunk.path for c in second.chunks} == {"pkg/module_2.py", "pkg/module_5.py"}


def test_request_that_cannot_fit_is_a_one_line_error(count):
    builder = PromptBuilder(count, context_length=512, max_tokens=128)
    with pytest.raises(UserError, match="request is too long") as error:
        builder.build("refactor " * 2000)
    assert "\n" not in str(error.value)


def test_max_tokens_that_leaves_no_room_is_refused(count):
    with pytest.raises(UserError, match="max_tokens"):
        PromptBuilder(count, context_length=1024, max_tokens=1024)


def test_retrieved_code_is_capped_at_code_tokens_keeping_the_best_ranked(count):
    chunks = [make_chunk(i, lines=20) for i in range(10)]
    uncapped = PromptBuilder(count, context_length=8192, max_tokens=512).build("refactor", chunks=chunks)
    cap = int(3.5 * count(format_chunk(chunks[0])))
    capped = PromptBuilder(count, context_length=8192, max_tokens=512, code_tokens=cap).build(
        "refactor", chunks=chunks)

    assert len(uncapped.chunks) == 10
    assert 0 < len(capped.chunks) < 10
    assert capped.chunks == chunks[: len(capped.chunks)], "the lowest-ranked go first"
    assert sum(count(format_chunk(c)) for c in capped.chunks) <= cap
    assert capped.dropped["chunks"] == 10 - len(capped.chunks)



def test_the_same_code_re_ranked_keeps_the_prepared_layout_so_only_the_request_changes(count):
    builder = PromptBuilder(count, context_length=4096, max_tokens=512)
    a, b, c, d = (make_chunk(i) for i in range(4))
    prepared = builder.build("add caching to", chunks=[a, b, c])
    context = prepared.user_message.removesuffix("Request: add caching to")

    re_ranked = builder.build("add caching to helper_2", chunks=[c, a, b], order=prepared.excerpt_order)
    joined = builder.build("add caching to helper_3", chunks=[d, a, b, c], order=prepared.excerpt_order)
    pasted = builder.build("add caching to helper_2", chunks=[c, a, b])

    assert prepared.excerpt_order == tuple(x.chunk.citation for x in (a, b, c))
    assert re_ranked.user_message == context + "Request: add caching to helper_2"
    assert re_ranked.chunks == [c, a, b], "sources are still listed best first"
    assert joined.user_message.startswith(context + format_chunk(d)), "code that joins goes after"
    # Without an order (a pasted request), the same code is laid out best first.
    assert pasted.excerpt_order == tuple(x.chunk.citation for x in (c, a, b))
    assert sorted(pasted.user_message.split("\n\n")) == sorted(re_ranked.user_message.split("\n\n"))


def test_compact_context_shows_the_best_ranked_chunk_whole_wherever_it_is_laid_out(count):
    builder = PromptBuilder(count, context_length=4096, max_tokens=512, full_chunks=1)
    a, b, c = (make_chunk(i) for i in range(3))

    built = builder.build("add caching to helper_2", chunks=[c, a, b],
                          order=[x.chunk.citation for x in (a, b, c)])

    assert built.excerpt_order == tuple(x.chunk.citation for x in (a, b, c))
    assert format_chunk(c) in built.user_message
    for outlined in (a, b):
        assert format_chunk(outlined) not in built.user_message
        assert format_chunk(outlined, whole=False) in built.user_message
