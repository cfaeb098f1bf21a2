"""The default mode on Linux (issue 19): the assistant in the network sandbox, the web broker
(hybrid_llm/net/broker.py, broker_client.py) outside it.

Real processes throughout: `hybrid-llm` started as a user starts it (the REPL with piped
input), a real broker process, a counting listener outside the sandbox standing in for the
internet. Pages the broker must fetch are served in a private namespace on a public address
(tests/net/public_web.py), because the broker refuses loopback by design.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hybrid_llm.config import REPO_ROOT, Config
from hybrid_llm.errors import UserError
from hybrid_llm.net import broker, broker_client, sandbox
from hybrid_llm.net.listener import CountingListener
from tests.net import public_web
from tests.net.local_web import LocalSearchClient

NATIVE = ["ctypes connect()", "non-Python child (bash /dev/tcp)"]
TARGETS = ["broker loopback URL", "inherited descriptor", "configured server"]

pytestmark = pytest.mark.skipif(
    bool(sandbox.unavailable_reason()), reason=str(sandbox.unavailable_reason())
)

# The REPL's own process, started as `hybrid-llm --repo REPO` (main() as the entry point, so
# the default mode applies); after its input ends, it runs the code in argv[2] itself.
REPL_THEN = """
import sys
repo, after = sys.argv[1], sys.argv[2]
sys.argv = ["hybrid-llm", "--repo", repo]
from hybrid_llm.cli import main
main()
exec(after)
"""


@pytest.fixture(scope="module")
def listener() -> Iterator[CountingListener]:
    with CountingListener([*NATIVE, *TARGETS], []) as running:
        yield running


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "codebase"
    path.mkdir()
    (path / "secret_module.py").write_text("API_TOKEN = 'do-not-leak'\n")
    return path


def write_config(tmp_path: Path, settings: dict) -> dict[str, str]:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(settings))
    return {**os.environ, "HYBRID_LLM_CONFIG": str(config)}


def repl_then(repo: Path, lines: str, after: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", REPL_THEN, str(repo), after], input=lines, capture_output=True,
        text=True, timeout=180, cwd=REPO_ROOT, env=env, check=False,
    )  # fmt: skip


NATIVE_PROBES = """
import json
from hybrid_llm.net import probes, sandbox
results = probes.run_probes({host!r}, {ports!r}, {control!r}, mode="off", names={names!r})
print(json.dumps({{"sandbox": sandbox.active(), "reached": [r.path for r in results if r.reached]}}))
"""


@pytest.mark.parametrize("sandbox_setting", ["auto", "off"])
def test_native_code_from_the_repl_process_never_reaches_the_listener(
    listener: CountingListener, repo: Path, tmp_path: Path, sandbox_setting: str
) -> None:
    """Default mode: even after `/offline` went online, ctypes and a bash child get nowhere.
    With `network.sandbox: "off"` the same probes do reach the listener (the check can fail)."""
    env = write_config(tmp_path, {"network": {"sandbox": sandbox_setting}})
    after = NATIVE_PROBES.format(
        host=listener.host, ports=listener.ports, control=str(listener.control_path), names=NATIVE
    )
    run = repl_then(repo, "/offline off\n", after, env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ONLINE" in run.stdout
    result = json.loads(run.stdout.splitlines()[-1])
    if sandbox_setting == "auto":
        assert result == {"sandbox": "namespace", "reached": []}
    else:
        assert result == {"sandbox": None, "reached": NATIVE}


def test_an_inherited_connection_is_closed_on_entering_the_sandbox(
    listener: CountingListener, repo: Path
) -> None:
    """Issue 15 item 14: a TCP connection opened outside (fd 3) must not be usable inside, in
    the REPL's default mode nor under the launcher (namespace and seccomp)."""
    port = listener.ports["inherited descriptor"]
    use_fd_3 = (
        "import socket\ntry:\n    socket.socket(fileno=3).sendall(b'escaped')\n"
        "    print('sent')\nexcept OSError as exc:\n    print('closed', exc.errno)\n"
    )
    runs = {
        method: subprocess.run(
            ["bash", "-c", f'exec 3<>/dev/tcp/{listener.host}/{port}; exec "$@"', "bash",
             *sandbox.launcher_command([sys.executable, "-c", use_fd_3], method)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        for method in ("namespace", "seccomp")
    }
    runs["default"] = subprocess.run(
        ["bash", "-c", f'exec 3<>/dev/tcp/{listener.host}/{port}; exec "$@"', "bash",
         sys.executable, "-c", REPL_THEN, str(repo), use_fd_3],
        input="", capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    for method in ("namespace", "seccomp"):
        assert runs[method].stdout.split() == ["closed", "9"], (method, runs[method].stderr)
    # The REPL reuses fd 3 for files of its own once the inherited socket is gone.
    assert runs["default"].returncode == 0, runs["default"].stderr[-2000:]
    hits = listener.counts()["inherited descriptor"]
    assert hits.connections == 3 and b"escaped" not in hits.payload


def test_the_broker_refuses_loopback_private_and_non_http_urls(listener: CountingListener) -> None:
    client = broker_client.spawn_broker(Config(), [], online=True)
    port = listener.ports["broker loopback URL"]
    try:
        for url, reason in [
            (f"http://{listener.host}:{port}/", "loopback"),
            (f"http://localhost:{port}/", "loopback"),
            (f"http://[::ffff:127.0.0.1]:{port}/", "loopback"),
            ("http://10.1.2.3/", "private"),
            ("http://192.168.0.1/admin", "private"),
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("file:///etc/passwd", "only http and https"),
            (f"gopher://{listener.host}:{port}/", "only http and https"),
        ]:
            answer, fd = client.exchange({"op": "fetch", "url": url}, 10)
            assert answer.get("refused") and reason in answer["error"], (url, answer)
            assert fd is None
        answer, _ = client.exchange({"op": "connect", "host": listener.host, "port": port}, 10)
        assert answer.get("refused") and "not a loopback server named in the config" in answer["error"]
    finally:
        client.close()
    assert listener.counts()["broker loopback URL"].connections == 0


def test_the_broker_refuses_everything_while_offline_and_follows_offline(
    listener: CountingListener,
) -> None:
    client = broker_client.spawn_broker(Config(), [], online=False)
    try:
        for request in ({"op": "fetch", "url": "http://93.184.216.34/"}, {"op": "search", "query": "q", "max_results": 1}):
            answer, _ = client.exchange(request, 10)
            assert answer.get("refused") and "offline" in answer["error"], answer
        client.set_offline(False)
        answer, _ = client.exchange({"op": "fetch", "url": "http://127.0.0.1:9/"}, 10)
        assert "offline" not in answer["error"] and "loopback" in answer["error"]
        client.set_offline(True)
        answer, _ = client.exchange({"op": "fetch", "url": "http://127.0.0.1:9/"}, 10)
        assert "offline" in answer["error"]
    finally:
        client.close()


@pytest.mark.skipif(bool(public_web.unavailable()), reason=str(public_web.unavailable()))
def test_web_works_through_the_broker_process() -> None:
    """/web's pages come from a real broker process fetching a (namespace-private) public site."""
    result = public_web.run("web")
    assert result["passages"] and all("/streaming.html" in u or "/timeouts.html" in u for u in result["passages"])
    assert any("stream" in text.lower() for text in result["texts"])
    assert result["errors"] == [f"{result['passages'][0].rsplit('/', 1)[0]}/manual.pdf: not a web page (application/pdf)"]


def test_search_hands_only_the_query_to_the_broker() -> None:
    """The wire and the client of `/search`; the engine is the internet, so a local one stands in."""
    engine = LocalSearchClient(["https://example.org/a", "https://example.org/b"])
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    state = broker.BrokerState({}, set(), online=True, searcher=engine)
    threading.Thread(target=broker.serve, args=(theirs, state), daemon=True).start()
    client = broker_client.BrokerClient(ours)
    results = broker_client.BrokerSearchClient(client, Config().web).search("httpx streaming", 2)
    assert [r.url for r in results] == engine.urls
    assert engine.queries == ["httpx streaming"]
    ours.close()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _broker_of(pid: int, *, started: bool = False) -> int:
    """The REPL's broker: its only child at start-up, a dormant copy of it until the first
    request, then (`started`) the broker program itself."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in _children(pid):
            program = Path(f"/proc/{child}/cmdline").read_bytes()
            if not started or b"hybrid_llm/net/broker.py" in program:
                return child
        time.sleep(0.05)
    raise AssertionError("no broker process started")


def _open_files(pid: int) -> list[str]:
    """What the process's descriptors point at, other than sockets, pipes and /dev/null."""
    targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    return [name for name in targets if not name.startswith(("socket:", "pipe:", "/dev/null"))]


def test_the_broker_holds_no_file_of_the_codebase(repo: Path) -> None:
    repl = subprocess.Popen(
        [sys.executable, "-m", "hybrid_llm", "--repo", str(repo)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=repo, env={**os.environ, "PWD": str(repo)},
    )  # fmt: skip
    assert repl.stdin is not None
    try:
        dormant = _broker_of(repl.pid)
        assert _open_files(dormant) == [] and os.readlink(f"/proc/{dormant}/cwd") == "/"
        repl.stdin.write(b"/offline off\n")  # its first request: the copy becomes the broker
        repl.stdin.flush()
        pid = _broker_of(repl.pid, started=True)
        files = _open_files(pid)
        deadline = time.monotonic() + 10
        while files and time.monotonic() < deadline:  # while it starts, it reads its own module
            assert not [name for name in files if name.startswith(str(repo))], files
            time.sleep(0.05)
            files = _open_files(pid)
        assert files == [], files
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert str(repo) not in Path(f"/proc/{pid}/maps").read_text()
        assert str(repo).encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert str(repo).encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        repl.communicate(b"/exit\n", timeout=60)
    assert repl.returncode == 0


class _ModelServer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b'{"data": [{"id": "local"}]}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Keep test output clean."""


def test_a_loopback_server_named_in_the_config_still_works(repo: Path, tmp_path: Path) -> None:
    """The sandbox's 127.0.0.1 is its own: the model server on the host's is forwarded."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ModelServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    env = write_config(tmp_path, {"model": {"backend": "openai", "server": {"base_url": base_url}}})
    after = (
        "import urllib.request\nfrom hybrid_llm.net import sandbox\n"
        f"print(sandbox.active(), urllib.request.urlopen({base_url + '/models'!r}, timeout=10).read().decode())\n"
    )
    try:
        run = repl_then(repo, "", after, env)
    finally:
        server.shutdown()
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines()[-1] == 'namespace {"data": [{"id": "local"}]}'


@pytest.mark.slow
def test_killing_the_broker_stops_web_in_one_line_while_code_works(
    repo: Path, tmp_path: Path, default_model_file: Path
) -> None:
    env = write_config(tmp_path, {
        "model": {"path": str(default_model_file)}, "network": {"offline_mode": False},
        "generation": {"temperature": 0, "max_tokens": 48},
    })  # fmt: skip
    repl = subprocess.Popen(
        [sys.executable, "-m", "hybrid_llm", "--repo", str(repo)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT, env=env,
    )  # fmt: skip
    os.kill(_broker_of(repl.pid), signal.SIGKILL)
    out, err = repl.communicate(
        b"/web how do I stream a download with httpx\n/code write a Python function add(a, b)\n",
        timeout=900,
    )
    errors = [line for line in err.decode().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "web broker" in errors[0] and "restart hybrid-llm" in errors[0], err.decode()[-2000:]
    assert "def add" in out.decode(), out.decode()[-2000:]


def test_a_dead_broker_is_one_user_error() -> None:
    client = broker_client.spawn_broker(Config(), [], online=True)
    assert client.process is not None
    client.process.kill()
    client.process.wait()
    with pytest.raises(broker_client.BrokerUnavailable, match="exited with status -9"):
        broker_client.BrokerSearchClient(client, Config().web).search("q", 1)
    assert issubclass(broker_client.BrokerUnavailable, UserError)


def test_ctrl_c_in_the_repl_leaves_the_broker_running(repo: Path) -> None:
    """Ctrl-C reaches the whole foreground process group, broker included; it is for the REPL."""
    repl = subprocess.Popen(
        [sys.executable, "-m", "hybrid_llm", "--repo", str(repo)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT,
    )  # fmt: skip
    os.kill(_broker_of(repl.pid), signal.SIGINT)
    _, err = repl.communicate(b"/offline off\n/search hybrid-llm\n", timeout=120)
    assert repl.returncode == 0
    assert "web broker" not in err.decode(), err.decode()[-2000:]
