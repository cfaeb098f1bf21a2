"""README's set-up commands are the ones CI runs, so they cannot drift apart."""

from __future__ import annotations

import re

from hybrid_llm.config import REPO_ROOT


def readme_commands() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block, "README must open with a bash block of commands"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_install_test_and_run_commands() -> None:
    install, test, run = readme_commands()[:3]
    assert install == "./install.sh"
    assert "pytest" in test
    assert run == "./run.sh"


def test_ci_runs_exactly_the_readme_install_and_test_commands() -> None:
    ci_lines = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    install, test = readme_commands()[:2]
    assert any(line.startswith(install) for line in ci_lines)
    assert test in ci_lines
    assert ci_lines.index(next(l for l in ci_lines if l.startswith(install))) < ci_lines.index(test)


def test_gitignore_keeps_large_and_local_files_out() -> None:
    ignored = (REPO_ROOT / ".gitignore").read_text().splitlines()
    for pattern in (".venv/", "*.gguf", "__pycache__/", "models/*"):
        assert pattern in ignored


def test_readme_documents_every_repl_command() -> None:
    from hybrid_llm.repl.commands import Commands

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    names = [name.removeprefix("cmd_") for name in dir(Commands) if name.startswith("cmd_")]
    assert len(names) >= 12
    missing = [name for name in names if f"`/{name}" not in readme]
    assert missing == []
