"""discover_files / read_source on real files and links written by the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid_llm.rag.discovery import (
    SourceFile,
    contains_private_key,
    discover_files,
    read_source,
)

MB = 1_000_000


def _write(root: Path, rel: str, content: str | bytes = "x = 1\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _paths(root: Path, **kwargs) -> list[str]:
    return [file.rel_path for file in discover_files(root, max_file_bytes=MB, **kwargs).files]


def test_gitignore_nested_gitignore_and_hybridignore_are_respected(tmp_path: Path) -> None:
    _write(tmp_path, ".gitignore", "*.log\ngenerated/\n")
    _write(tmp_path, ".hybridignore", "docs/private.md\n")
    _write(tmp_path, "app/main.py")
    _write(tmp_path, "app/debug.log", "log\n")
    _write(tmp_path, "generated/api.py")
    _write(tmp_path, "docs/private.md", "# secret plans\n")
    _write(tmp_path, "docs/public.md", "# hello\n")
    _write(tmp_path, "lib/.gitignore", "*.py\n!keep.py\n")
    _write(tmp_path, "lib/drop.py")
    _write(tmp_path, "lib/keep.py")

    discovery = discover_files(tmp_path, max_file_bytes=MB)

    assert [f.rel_path for f in discovery.files] == ["app/main.py", "docs/public.md", "lib/keep.py"]
    # debug.log, generated/ (one directory), docs/private.md, lib/drop.py
    assert discovery.skipped["ignored"] == 4


def test_default_skips_are_counted_by_reason(tmp_path: Path) -> None:
    _write(tmp_path, "src/app.py")
    for rel in [".git/config", "node_modules/x/index.js", ".venv/lib/a.py", "build/out.py",
                "dist/x.js", "__pycache__/a.py", "src/.mypy_cache/a.py"]:
        _write(tmp_path, rel)
    _write(tmp_path, "myenv/pyvenv.cfg", "home = /usr\n")
    _write(tmp_path, "myenv/lib/site.py")
    _write(tmp_path, "package-lock.json", "{}\n")
    _write(tmp_path, "poetry.lock", "x\n")
    _write(tmp_path, "web/app.min.js", "var a=1;\n")
    _write(tmp_path, "img/logo.png", b"\x89PNG....")
    _write(tmp_path, "release.tar.gz", b"\x1f\x8b....")
    _write(tmp_path, "notes.xyz", "unknown type\n")

    discovery = discover_files(tmp_path, max_file_bytes=MB)

    assert [f.rel_path for f in discovery.files] == ["src/app.py"]
    assert discovery.skipped == {
        "excluded_dir": 8, "lock_file": 2, "minified": 1, "media": 1, "archive": 1,
        "unsupported": 1,
    }


def test_secrets_are_never_discovered(tmp_path: Path) -> None:
    secrets = [".env", ".env.production", "deploy/server.pem", "tls/site.key", "id_rsa",
               "id_rsa.pub", "config/credentials.json", "aws_credentials.yaml", "secrets.toml"]
    for rel in secrets:
        _write(tmp_path, rel, "TOKEN=abc\n")
    _write(tmp_path, "app/settings.py")

    discovery = discover_files(tmp_path, max_file_bytes=MB)

    assert _paths(tmp_path) == ["app/settings.py"]
    assert discovery.skipped["secret"] == len(secrets)


def test_private_key_detection() -> None:
    block = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----"
    assert contains_private_key(f"KEY = '''\n{block}\n'''")
    assert contains_private_key("-----BEGIN PRIVATE KEY-----\nMIIE")  # truncated still counts
    assert not contains_private_key("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----")


def test_size_cap_extension_filter_and_empty_files(tmp_path: Path) -> None:
    _write(tmp_path, "big.py", "x = 1\n" * 400)  # 2400 bytes
    _write(tmp_path, "small.py")
    _write(tmp_path, "readme.md", "# hi\n")
    _write(tmp_path, "empty.py", "")

    discovery = discover_files(tmp_path, max_file_bytes=1000, extensions=["py"])

    assert [f.rel_path for f in discovery.files] == ["small.py"]
    assert discovery.skipped == {"too_large": 1, "extension_filter": 1, "empty": 1}
    file = discovery.files[0]
    assert file.size == 6 and file.abs_path == tmp_path / "small.py" and file.mtime_ns > 0


def test_read_source_skips_binary_undecodable_and_decodes_cp1252(tmp_path: Path) -> None:
    def source(rel: str, content: bytes) -> SourceFile:
        path = _write(tmp_path, rel, content)
        return SourceFile(rel, path, len(content), path.stat().st_mtime_ns)

    utf8 = read_source(source("u.py", "name = 'Zoë'\n".encode()))
    latin = read_source(source("l.py", "# café résumé\nx = 1\n".encode("cp1252")))
    binary = read_source(source("b.py", b"x = 1\n\x00\x01\x02"))
    noise = read_source(source("n.py", bytes(range(128, 256)) * 20))  # cp1252 cannot decode
    controls = read_source(source("c.py", b"\x01\x02\x03\xe9\xff ab" * 50))  # it can: not text
    minified = read_source(source("m.js", b"var a=1;" * 400))
    keyword_list = b"KEYWORDS = [" + b"'word', " * 400 + b"]\n"  # one 3,200-character line
    module = read_source(source("lexer.py", keyword_list + b"def lex(text):\n    return text\n" * 200))

    assert (utf8.text, utf8.skip_reason) == ("name = 'Zoë'\n", None)
    assert latin.text == "# café résumé\nx = 1\n" and latin.encoding == "cp1252"
    assert binary.skip_reason == "binary" and binary.text is None
    assert noise.skip_reason == "undecodable"
    assert controls.skip_reason == "undecodable"
    assert minified.skip_reason == "minified"
    assert module.skip_reason is None and "def lex" in module.text  # long data line, real module
    assert read_source(source("big.py", b"x = 1\n" * 100), max_file_bytes=50).skip_reason == "too_large"


def test_read_source_reports_deleted_and_unreadable_files(tmp_path: Path) -> None:
    path = _write(tmp_path, "gone.py")
    file = SourceFile("gone.py", path, 6, 0)
    path.unlink()
    assert read_source(file).skip_reason == "gone"

    replaced = tmp_path / "was_a_file.py"  # replaced by a directory since discovery
    replaced.mkdir()
    assert read_source(SourceFile("was_a_file.py", replaced, 6, 0)).skip_reason == "unreadable"


def test_symlink_loops_and_links_out_of_the_codebase_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    _write(root, "pkg/mod.py")
    (root / "pkg" / "again").symlink_to(root)  # directory loop back to the root
    (root / "self").symlink_to(root / "self")  # a link pointing at itself
    outside = _write(tmp_path, "home/.ssh/config.py", "host = 'x'\n")
    (root / "ssh").symlink_to(outside.parent)
    (root / "alias.py").symlink_to(root / "pkg" / "mod.py")  # inside: allowed

    discovery = discover_files(root, max_file_bytes=MB)

    assert [f.rel_path for f in discovery.files] == ["alias.py", "pkg/mod.py"]
    assert discovery.skipped == {"symlink_loop": 2, "symlink_outside": 1}


def test_unreadable_directory_is_skipped_and_counted(unprivileged_user) -> None:
    """A chmod-000 directory (its `pyvenv.cfg` cannot even be looked for) is counted, not a crash."""
    prefix, scratch = unprivileged_user
    root = scratch / "repo"
    _write(root, "ok.py")
    _write(root, "locked/hidden.py")
    _write(root, "half/inner.py")
    (root / "locked").chmod(0)
    (root / "half").chmod(0o311)  # can be entered, not listed
    script = (
        "import json, sys; from pathlib import Path; from hybrid_llm.rag.discovery import discover_files; "
        "found = discover_files(Path(sys.argv[1]), max_file_bytes=10**6); "
        "print(json.dumps([[f.rel_path for f in found.files], found.skipped]))"
    )
    result = subprocess.run([*prefix, sys.executable, "-c", script, str(root)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [["ok.py"], {"unreadable": 2}]
