"""Finding the code blocks of an answer for `/save`."""

from hybrid_llm.repl.codeblocks import CodeBlock, extract_code_blocks, unified_diff


def test_blocks_in_order_with_language_and_blank_lines_kept() -> None:
    answer = "Text\n```python\ndef f():\n\n    return 1\n```\nmore\n~~~\nplain\n~~~\n"
    assert extract_code_blocks(answer) == [
        CodeBlock("python", "def f():\n\n    return 1\n"),
        CodeBlock("", "plain\n"),
    ]


def test_a_shorter_fence_inside_a_longer_one_does_not_close_it() -> None:
    answer = "````markdown\n```python\nx = 1\n```\n````\n"
    assert extract_code_blocks(answer) == [CodeBlock("markdown", "```python\nx = 1\n```\n")]


def test_an_unclosed_block_of_a_cancelled_answer_still_counts() -> None:
    assert extract_code_blocks("```py\nx = 1\ny =") == [CodeBlock("py", "x = 1\ny =\n")]


def test_no_blocks() -> None:
    assert extract_code_blocks("just words") == []


def test_unified_diff_names_the_file() -> None:
    diff = unified_diff("a\nb\n", "a\nc\n", "src/x.py")
    assert diff.splitlines()[:2] == ["--- a/src/x.py", "+++ b/src/x.py"]
    assert "-b" in diff and "+c" in diff
