"""Children of an offline process (hybrid_llm/net/guard.py, child_guard/): every Python child
either inherits a locked guard or is not started; what the guard cannot follow is refused.

Each child that does start tries the counting listener on loopback with the parent in strict
mode, so "guarded" means nothing arrived, not that a flag was printed.
"""

from __future__ import annotations

import multiprocessing.util
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hybrid_llm.net import guard
from hybrid_llm.net.guard import NetworkBlockedError
from hybrid_llm.net.listener import CountingListener

PORT_NAME = "Python child process"
# Connects to the listener; exit 3 when the child's guard refused, 0 when it got through.
CONNECT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).sendall(b"child")
except PermissionError:
    sys.exit(3)
"""
UNLOCK = """
import gc
from hybrid_llm.net import guard
attempts = {
    "floor": "guard._GUARD.floor = guard.Level.ONLINE",
    "level": "guard._GUARD._level = guard.Level.ONLINE",
    "class": "guard.NetworkGuard.level = guard.Level.ONLINE",
    "disable": "guard.disable()",
    "gc": "gc.get_objects()",
}
for name, attempt in attempts.items():
    try:
        exec(attempt)
        print(name, "done")
    except Exception:
        print(name, "refused")
"""


@pytest.fixture
def port(listener: CountingListener) -> Iterator[int]:
    """The listener's port for children; the test fails if anything arrived there."""
    before = listener.counts()[PORT_NAME]
    yield listener.ports[PORT_NAME]
    assert listener.counts()[PORT_NAME] == before, "a child got through the guard"


def python(*options: str, code: str = CONNECT, port: int) -> list[str]:
    return [sys.executable, *options, "-c", code, str(port)]


def _other_sitecustomize_first(tmp: Path) -> dict[str, str]:
    (tmp / "sitecustomize.py").touch()
    return {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{os.environ['PYTHONPATH']}"}


def _renamed_copy(tmp: Path) -> str:
    copy = tmp / "interp"
    shutil.copy2(os.path.realpath(sys.executable), copy)
    return str(copy)


def _script(tmp: Path, shebang: str) -> str:
    script = tmp / "tool"
    script.write_text(f"#!{shebang}\n{CONNECT}")
    script.chmod(0o755)
    return str(script)


# Each starts a child the guard could not follow; (argv, env), built from a temporary directory
# and the listener's port. All of these got through before issue 15.
UNFOLLOWABLE: dict[str, Callable[[Path, int], tuple[list[str] | str, dict[str, str] | None]]] = {
    "shell with env={}": lambda tmp, port: (shlex.join(python(port=port)), {}),
    "env -i": lambda tmp, port: (["env", "-i", *python(port=port)], None),
    "env -u PYTHONPATH": lambda tmp, port: (["env", "-u", "PYTHONPATH", *python(port=port)], None),
    "env PYTHONPATH=": lambda tmp, port: (["env", "PYTHONPATH=", *python(port=port)], None),
    "env -vi": lambda tmp, port: (["env", "-vi", *python(port=port)], None),
    "env -- PYTHONPATH=": lambda tmp, port: (
        ["env", "--", "PYTHONPATH=", *python(port=port)], None
    ),
    "env -S with -I": lambda tmp, port: (
        ["env", "-S", f"{sys.executable} -I", "-c", CONNECT, str(port)], None
    ),
    "-I after --check-hash-based-pycs": lambda tmp, port: (
        python("--check-hash-based-pycs", "default", "-I", port=port), None
    ),
    "-E after -X dev": lambda tmp, port: (python("-X", "dev", "-E", port=port), None),
    "-I after -W ignore": lambda tmp, port: (python("-W", "ignore", "-I", port=port), None),
    "combined -sI": lambda tmp, port: (python("-sI", port=port), None),
    "another sitecustomize first": lambda tmp, port: (
        python(port=port), _other_sitecustomize_first(tmp)
    ),
    "PYTHONHOME": lambda tmp, port: (
        python(port=port), {**os.environ, "PYTHONHOME": sys.base_prefix}
    ),
    "renamed copy of the interpreter with -I": lambda tmp, port: (
        [_renamed_copy(tmp), *python("-I", port=port)[1:]], None
    ),
    "script whose #! line has -I": lambda tmp, port: (
        [_script(tmp, f"{sys.executable} -I"), str(port)], None
    ),
    "script run by env -S with -E": lambda tmp, port: (
        [_script(tmp, f"/usr/bin/env -S {sys.executable} -E"), str(port)], None
    ),
}


@pytest.mark.parametrize("case", list(UNFOLLOWABLE))
def test_children_the_guard_cannot_follow_are_not_started(
    tmp_path: Path, port: int, case: str
) -> None:
    guard.enable(allow_loopback=False)
    argv, env = UNFOLLOWABLE[case](tmp_path, port)
    with pytest.raises(NetworkBlockedError, match="child"):
        subprocess.run(argv, env=env, shell=isinstance(argv, str), timeout=30, check=False)


def test_spawnv_passfds_is_checked_though_it_raises_no_audit_event(port: int) -> None:
    guard.enable(allow_loopback=False)
    with pytest.raises(NetworkBlockedError, match="-I"):
        multiprocessing.util.spawnv_passfds(
            os.fsencode(sys.executable), python("-I", port=port), ()
        )


def test_a_changed_environment_of_this_process_is_checked_too(
    tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.system and env=None children get os.environ: a PYTHONPATH edited after going
    offline must not smuggle another sitecustomize in."""
    guard.enable(allow_loopback=False)
    monkeypatch.setenv("PYTHONPATH", _other_sitecustomize_first(tmp_path)["PYTHONPATH"])
    with pytest.raises(NetworkBlockedError, match="PYTHONPATH"):
        os.system(shlex.join(python(port=port)))
    with pytest.raises(NetworkBlockedError, match="PYTHONPATH"):
        subprocess.run(python(port=port), check=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["{python}", "-X", "dev", "-c", CONNECT, "{port}"],
        ["{python}", "--check-hash-based-pycs", "default", "-c", CONNECT, "{port}"],
        ["env", "FOO=1", "{python}", "-c", CONNECT, "{port}"],
        ["{script}", "{port}"],
        ["sh", "-c", 'exec "$0" -c "$1" "$2"', "{python}", CONNECT, "{port}"],
    ],
    ids=["-X dev", "--check-hash-based-pycs", "env FOO=1", "#! script", "shell"],
)
def test_children_the_guard_follows_start_guarded(
    tmp_path: Path, port: int, argv: list[str]
) -> None:
    """Not a blanket refusal: these start, and their connection is refused by their own
    inherited guard (exit 3), not by a missing listener."""
    script = _script(tmp_path, "/usr/bin/env python3")
    (tmp_path / "python3").symlink_to(sys.executable)  # what the script's #! line finds
    guard.enable(allow_loopback=False)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}"}
    values = {"python": sys.executable, "port": str(port), "script": script}
    run = subprocess.run(
        [a.format(**values) if a != CONNECT else a for a in argv],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert run.returncode == 3, run.stderr


def test_a_hybrid_llm_later_on_pythonpath_cannot_stand_in_for_the_guard(
    tmp_path: Path, port: int
) -> None:
    fake = tmp_path / "hybrid_llm" / "net"
    fake.mkdir(parents=True)
    for package in (fake.parent, fake):
        (package / "__init__.py").touch()
    (fake / "guard.py").write_text("def inherit_from_environment():\n    pass\n")
    guard.enable(allow_loopback=False)
    env = {**os.environ, "PYTHONPATH": f"{os.environ['PYTHONPATH']}{os.pathsep}{tmp_path}"}
    run = subprocess.run(python(port=port), env=env, capture_output=True, timeout=30, check=False)
    assert run.returncode == 3, run.stderr


def test_an_inherited_guard_cannot_be_unlocked(port: int) -> None:
    guard.enable(allow_loopback=False)
    run = subprocess.run(
        python(code=UNLOCK + CONNECT, port=port), capture_output=True, text=True, check=False
    )
    assert run.returncode == 3, run.stdout + run.stderr
    refused = {line.split()[0] for line in run.stdout.splitlines() if line.endswith("refused")}
    assert {"disable", "gc"} <= refused  # the rest is done, and changes nothing


def test_the_floor_lives_in_the_audit_hook_not_in_an_attribute() -> None:
    code = (
        "from hybrid_llm.net import guard\n"
        "online = guard.Level.ONLINE\n"
        "guard._GUARD.__dict__.update(floor=online, level=online, _level=online)\n"
        "print(guard.is_offline(), guard.allows_loopback())\n"
    )
    guard.enable(allow_loopback=False)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["True", "False"]


def test_a_child_that_cannot_install_the_guard_does_not_run(tmp_path: Path) -> None:
    """site.py reports a failing sitecustomize and carries on: ours must stop the child. Here
    the child guard's own installation is broken (its hybrid_llm raises on import)."""
    installation = tmp_path / "hybrid_llm" / "net" / "child_guard"
    installation.mkdir(parents=True)
    (tmp_path / "hybrid_llm" / "__init__.py").write_text("raise ImportError('broken install')\n")
    (installation.parent / "__init__.py").touch()
    shutil.copy2(guard.CHILD_GUARD_DIR / "sitecustomize.py", installation)
    env = {**os.environ, guard.GUARD_ENV: "strict", "PYTHONPATH": str(installation)}
    run = subprocess.run(
        [sys.executable, "-c", "print('ran')"], env=env, capture_output=True, text=True, check=False
    )
    assert "ran" not in run.stdout
    assert run.returncode != 0 and "could not install the network guard" in run.stderr


def test_grandchildren_inherit_the_guard_too(port: int) -> None:
    inner = shlex.join(python(port=port))
    code = f"import os, sys; sys.exit(os.waitstatus_to_exitcode(os.system({inner!r})))"
    guard.enable(allow_loopback=False)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert run.returncode == 3


def test_online_the_same_children_start_as_asked() -> None:
    """Nothing is checked online: the refusals above are ordinary ways to start programs."""
    run = subprocess.run(["env", "-i", sys.executable, "-I", "-c", "pass"], check=False)
    assert run.returncode == 0
