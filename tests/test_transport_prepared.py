"""The transport prepares requests itself (``transport.environ``, ``RequestsTransport._request``):
what a ``requests.Session`` did that users notice still happens, on real loopback sockets, and
what it got wrong in threads and forks does not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from mirror_providers.errors import ProtocolError, ProviderError
from mirror_providers.request import build_request
from mirror_providers.transport import HttpRequest, RequestsTransport
from mirror_providers.transport.environ import Settings, is_loopback

from .server import FakeServer

ROOT = Path(__file__).resolve().parent.parent


def test_a_cookie_the_server_deletes_is_no_longer_sent() -> None:
    with FakeServer() as server:
        server.route("GET", "/set", lambda rq, rp: rp.body(200, b"ok", {"Set-Cookie": "sid=abc; Path=/"}))
        server.route("GET", "/del", lambda rq, rp: rp.body(200, b"ok", {"Set-Cookie": "sid=; Path=/; Max-Age=0"}))
        server.route("GET", "/x", lambda rq, rp: rp.body(200, b"ok"))
        transport = RequestsTransport()
        for path in ("/set", "/x", "/del", "/x"):
            transport.send(HttpRequest("GET", server.url + path))
        cookies = [r.headers.get("cookie") for r in server.received]
    assert cookies == [None, "sid=abc", "sid=abc", None]


@pytest.mark.parametrize("value", ["Bearer sk-SECRET\n", " Bearer sk-SECRET", "Bearer sk-SECRET\r\nX: y",
                                   "Bearer sk-SECRET\u2028é☃", 42])
def test_a_header_that_cannot_be_sent_is_a_typed_error_without_its_value(value: object) -> None:
    with FakeServer() as server:
        transport = RequestsTransport()
        with pytest.raises(ProtocolError, match="header 'Authorization'") as caught:
            transport.send(HttpRequest("GET", server.url + "/x", {"Authorization": value}))  # type: ignore[dict-item]
        assert "SECRET" not in str(caught.value) and "SECRET" not in repr(caught.value)
        assert server.received == []


def test_a_none_header_removes_a_default_one() -> None:
    with FakeServer() as server:
        server.route("GET", "/x", lambda rq, rp: rp.body(200, b"ok"))
        RequestsTransport().send(HttpRequest("GET", server.url + "/x", {"User-Agent": None}))  # type: ignore[dict-item]
        assert not server.received[0].headers["user-agent"].startswith("python-requests")  # urllib3 puts its own
        assert server.received[0].headers["accept-encoding"] == "gzip, deflate"


def test_a_url_query_never_reaches_an_error_message() -> None:
    transport = RequestsTransport()
    with pytest.raises(ProviderError) as caught:
        transport.send(HttpRequest("GET", "http://127.0.0.1:99999999/v1?key=sk-SECRET"))
    assert "sk-SECRET" not in str(caught.value)


def test_an_explicit_no_proxy_never_leaves_the_environment_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    problems: list[str] = []
    for _ in range(20):
        settings = Settings(True, {"no_proxy": "example.com"})
        barrier = threading.Barrier(8)

        def work(i: int, settings: Settings = settings, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            for j in range(10):
                try:
                    got = settings.for_url(f"https://h{i}-{j}.example.org/v1")
                    if got.proxies.get("https") != "http://proxy.invalid:3128":
                        problems.append("proxy lost")
                    if settings.for_url(f"https://api{j}.example.com/v1").proxies.get("https"):
                        problems.append("no_proxy not applied")
                except Exception as exc:  # noqa: BLE001 (what escapes is the finding)
                    problems.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if "no_proxy" in os.environ:
            problems.append("os.environ['no_proxy'] left set")
            del os.environ["no_proxy"]
    assert problems == []


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.0.1:1/", True), ("http://127.9.9.9/", True), ("http://[::1]:8/", True),
    ("http://localhost/", True), ("http://a.localhost/", True), ("http://LOCALHOST/", True),
    ("http://127.evil.example/", False), ("http://127.0.0.1.nip.io/", False), ("http://10.0.0.1/", False),
    ("https://api.openai.com/v1", False),
])
def test_only_real_loopback_hosts_skip_the_proxy(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback


def test_a_role_that_only_equals_a_role_is_not_shared_with_later_calls() -> None:
    import enum

    class Role(str, enum.Enum):
        user = "user"

    build_request([{"role": Role.user, "content": "shared text"}], {})
    later = build_request([{"role": "user", "content": "shared text"}], {}).messages[0]
    assert type(later.role) is str


_FORK_DURING_FIRST_REQUEST = """
import os, sys, threading, time, faulthandler
from tests.server import FakeServer, add_openai_routes
from mirror_providers.openai import OpenAIProvider
with FakeServer() as s:
    add_openai_routes(s)
    p = OpenAIProvider(model="gpt-4o-mini", api_key="sk-test", base_url=s.url + "/v1")
    th = threading.Thread(target=lambda: p.generate_sync("hi"))
    th.start()
    time.sleep(float(sys.argv[1]))
    pid = os.fork()
    if pid == 0:
        faulthandler.dump_traceback_later(20, exit=True)  # a hang is reported, not waited out
        p.generate_sync("hi")
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    th.join()
    sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_fork_during_the_first_request_leaves_the_child_working() -> None:
    """requests is imported by the first request: a fork while a thread imports it must not
    leave the child's first request waiting for an import lock nobody will release."""
    for delay in ("0.001", "0.004", "0.01", "0.02"):
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_FORK_DURING_FIRST_REQUEST), delay],
                              cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert proc.returncode == 0, (delay, proc.stderr[-1500:])
