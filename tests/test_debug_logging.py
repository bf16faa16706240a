"""The HTTP debug log (``transport.log``): what it shows, what it never shows (a key, by value),
what it costs when off, and ``MIRROR_PROVIDERS_LOG`` in a real process."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import mirror_providers
from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.errors import AuthenticationError, ConfigurationError, ConnectError
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.transport import HttpRequest, RequestsTransport, log

from .server import FakeServer, Received, Reply, add_anthropic_routes, add_ollama_routes, add_openai_routes, free_port

SECRET = "sk-test-SECRET123"
PARTS = (SECRET, "SECRET123", "sk-test-S")  # nothing of the key, not even a prefix
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="mirror_providers")
    return caplog


@pytest.fixture
def package_logger() -> Iterator[logging.Logger]:
    """The ``mirror_providers`` logger, restored after ``enable_debug_logging`` changed it."""
    logger = logging.getLogger("mirror_providers")
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    mirror_providers.enable_debug_logging("off")
    logger.setLevel(level)
    logger.handlers[:] = handlers


def http_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mirror_providers.http"]


def assert_no_key(caplog: pytest.LogCaptureFixture) -> None:
    assert http_lines(caplog), "nothing was logged"
    for text in (caplog.text, *(r.getMessage() for r in caplog.records)):
        for part in PARTS:
            assert part not in text


def openai(server: FakeServer, **kw: object) -> OpenAIProvider:
    return OpenAIProvider(base_url=server.url + "/v1", api_key=SECRET, max_retries=0, **kw)  # type: ignore[arg-type]


def test_bodies_headers_and_stream_events_at_debug(server: FakeServer, debug: pytest.LogCaptureFixture) -> None:
    add_openai_routes(server)
    provider = openai(server)
    assert provider.generate_sync("What is the capital of France?").content == "Paris is the capital of France."
    assert "".join(c.content for c in provider.stream_sync("again")) == "Paris is the capital of France."
    lines = http_lines(debug)
    assert any("request body" in m and "What is the capital of France?" in m for m in lines)
    assert any("response body" in m and '"content": "Paris is the capital of France."' in m for m in lines)
    assert any("'Authorization': '[secure]'" in m for m in lines)
    assert any("'x-request-id': 'req_fake'" in m for m in lines)
    events = [m for m in lines if " event " in m]
    assert len(events) == 10 and '"content": "Paris"' in events[1] and events[-1].endswith("data: [DONE]")
    info = [r.getMessage() for r in debug.records if r.name == "mirror_providers.http" and r.levelno == logging.INFO]
    assert len(info) == 2 and all("POST " + server.url + "/v1/chat/completions -> 200" in m for m in info)
    assert "(stream ended)" in info[1]
    assert_no_key(debug)


def test_key_echoed_in_an_error_body_a_header_and_the_url_is_scrubbed(server: FakeServer,
                                                                      debug: pytest.LogCaptureFixture) -> None:
    def refuse(req: Received, reply: Reply) -> None:
        reply.json(401, {"error": {"message": f"Incorrect API key provided: {SECRET}. Also sk-tes****T123; "
                                              f"JSON-escaped: {json.dumps(SECRET + '/x')[1:-1]}",
                                   "type": "invalid_request_error", "code": "invalid_api_key"}},
                   {"x-echo": req.headers["authorization"], "Set-Cookie": f"s={SECRET}"})

    server.route("POST", "/v1/chat/completions", refuse)
    with pytest.raises(AuthenticationError):
        openai(server).generate_sync("hi")
    body = next(m for m in http_lines(debug) if "response body" in m)
    assert "Incorrect API key provided: [redacted]" in body and "Also [redacted];" in body
    headers = next(m for m in http_lines(debug) if m.startswith("#") and " 401 headers=" in m)
    assert "'x-echo': '[redacted]'" in headers and "'Set-Cookie': '[secure]'" in headers
    assert_no_key(debug)


def test_key_in_a_streamed_event_split_across_chunks(server: FakeServer, debug: pytest.LogCaptureFixture) -> None:
    half = len(SECRET) // 2
    frame = json.dumps({"choices": [{"index": 0, "delta": {"content": f"your key is {SECRET}"}}]}).encode()
    at = frame.index(SECRET.encode()) + half
    pieces = [b"data: " + frame[:at], frame[at:] + b"\n\n", b"data: [DONE]\n\n"]
    server.route("POST", "/v1/chat/completions",
                 lambda r, w: w.stream(200, pieces, {"Content-Type": "text/event-stream"}))
    text = "".join(c.content for c in openai(server).stream_sync("hi"))
    assert text == f"your key is {SECRET}"  # the caller's data is untouched; only the log is scrubbed
    assert any("your key is [redacted]" in m for m in http_lines(debug))
    assert_no_key(debug)


def test_anthropic_key_and_ollama_json_lines(server: FakeServer, debug: pytest.LogCaptureFixture) -> None:
    add_anthropic_routes(server)
    add_ollama_routes(server)
    anthropic = AnthropicProvider(base_url=server.url, api_key=SECRET, max_retries=0)
    assert "".join(c.content for c in anthropic.stream_sync("hi")) == "Paris is the capital of France."
    assert any("'x-api-key': '[secure]'" in m for m in http_lines(debug))
    assert any(" event " in m and "event: message_start\\ndata: " in m for m in http_lines(debug))
    ollama = OllamaProvider(host=server.url, model="llama3.1", headers={"X-Gateway-Token": SECRET})
    assert "".join(c.content for c in ollama.stream_sync("hi")) == "Rayleigh scattering."
    lines = [m for m in http_lines(debug) if " line " in m]
    assert len(lines) == 3 and '"done": true' in lines[-1]
    # Not a header the library knows, but its name says what it holds.
    assert any("'X-Gateway-Token': '[secure]'" in m for m in http_lines(debug))
    debug.clear()
    anthropic.generate_sync("hi")
    assert_no_key(debug)


def test_basic_auth_and_query_keys_are_scrubbed_everywhere(server: FakeServer, debug: pytest.LogCaptureFixture) -> None:
    password = "pw-SECRET123-basic"
    token = base64.b64encode(f"me:{password}".encode()).decode()
    server.route("GET", "/x", lambda r, w: w.json(200, {"echo": [password, token, "sk-query-SECRET123"]}))
    with RequestsTransport() as t:
        t.send(HttpRequest("GET", f"http://me:{password}@127.0.0.1:{server.port}/x?key=sk-query-SECRET123&n=1",
                           {"Authorization": f"Basic {token}"}))
    text = debug.text
    assert password not in text and token not in text and "SECRET123" not in text and "me:" not in text
    assert f"GET http://***@127.0.0.1:{server.port}/x?key=[redacted]&n=[redacted]" in text
    assert '{"echo": ["[redacted]", "[redacted]", "[redacted]"]}' in text


def test_huge_bodies_are_cut_with_their_size_and_a_key_at_the_cut_does_not_survive(
        server: FakeServer, debug: pytest.LogCaptureFixture) -> None:
    for shift in range(0, len(SECRET) + 2, 3):  # the key straddles the cut at every offset
        pad = "a b " * ((log.BODY_LIMIT - 20 - shift) // 4)
        body = json.dumps({"pad": pad, "key": SECRET, "more": "x" * 100_000}).encode()

        def big(req: Received, reply: Reply, body: bytes = body) -> None:
            reply.body(200, body, {"Content-Type": "application/json"})

        server.route("GET", "/big", big)
        with RequestsTransport() as t:
            assert t.send(HttpRequest("GET", server.url + "/big", {"Authorization": f"Bearer {SECRET}"})).content == body
        shown = next(m for m in http_lines(debug) if "response body" in m)
        assert f"({len(body)} bytes, first {log.BODY_LIMIT} characters)" in shown
        assert len(shown) < log.BODY_LIMIT + 100 and shown.endswith("...")
        assert_no_key(debug)
        debug.clear()


def test_a_huge_stream_event_is_cut_and_held_only_in_part(server: FakeServer, debug: pytest.LogCaptureFixture) -> None:
    event = b"data: " + b"z" * 300_000 + b"\n\n"
    server.route("GET", "/s", lambda r, w: w.stream(200, [event[i:i + 1000] for i in range(0, len(event), 1000)],
                                                    {"Content-Type": "text/event-stream"}))
    with RequestsTransport() as t, t.open_stream(HttpRequest("GET", server.url + "/s")) as s:
        assert b"".join(s.iter_bytes()) == event
    shown = [m for m in http_lines(debug) if " event " in m]
    assert len(shown) == 1 and f"({len(event)} bytes, first {log.BODY_LIMIT} characters)" in shown[0]
    assert len(shown[0]) < log.BODY_LIMIT + 100


def test_off_no_records_and_no_work(server: FakeServer, caplog: pytest.LogCaptureFixture,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.WARNING, logger="mirror_providers")
    caplog.set_level(logging.DEBUG, logger="urllib3")  # the application's own debugging stays its own
    monkeypatch.setattr(log, "Exchange", None)  # calling it would fail: when off, nothing is made
    add_openai_routes(server)
    with RequestsTransport() as t:
        with t.open_stream(HttpRequest("POST", server.url + "/v1/chat/completions", {}, b'{"stream": true}')) as s:
            assert getattr(s._chunks, "__name__", "") == "_decoded"  # no wrapper around the chunks
            assert b"[DONE]" in b"".join(s.iter_bytes())
        assert t.send(HttpRequest("GET", server.url + "/v1/models")).status == 200
    assert caplog.records and not [r for r in caplog.records if r.name.startswith("mirror_providers")]


def test_info_is_one_line_per_exchange(server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mirror_providers")
    add_openai_routes(server)
    provider = openai(server)
    provider.generate_sync("hi")
    list(provider.stream_sync("hi"))
    lines = http_lines(caplog)
    assert len(lines) == 2 and all(r.levelno == logging.INFO for r in caplog.records if r.name.endswith(".http"))
    assert " -> 200 in " in lines[0] and " -> 200 (stream ended) in " in lines[1]
    with pytest.raises(ConnectError):
        OpenAIProvider(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key=SECRET, max_retries=0).generate_sync("x")
    assert "-> ConnectError: cannot connect" in http_lines(caplog)[-1]


def test_a_stream_left_early_is_logged_and_released(server: FakeServer, debug: pytest.LogCaptureFixture) -> None:
    add_openai_routes(server)
    with RequestsTransport() as t:
        s = t.open_stream(HttpRequest("POST", server.url + "/v1/chat/completions", {}, b'{"stream": true}'))
        next(s.iter_bytes())
        s.close()
        assert server.wait_open_connections(0)
    assert "(stream closed before its end)" in http_lines(debug)[-1]


def test_enable_debug_logging_adds_a_handler_only_when_there_is_none(package_logger: logging.Logger,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in a program that configured no logging
    mirror_providers.enable_debug_logging()
    assert package_logger.level == logging.DEBUG and len(package_logger.handlers) == 1
    mirror_providers.enable_debug_logging("info")
    assert package_logger.level == logging.INFO and len(package_logger.handlers) == 1
    mirror_providers.enable_debug_logging("off")
    assert package_logger.level == logging.NOTSET and not package_logger.handlers
    monkeypatch.setattr(root, "handlers", [logging.NullHandler()])  # the application's own
    mirror_providers.enable_debug_logging()
    assert not package_logger.handlers
    with pytest.raises(ConfigurationError, match="'debug', 'info' or 'off'"):
        mirror_providers.enable_debug_logging("verbose")  # type: ignore[arg-type]


CHILD = """
import logging, sys
from mirror_providers.openai import OpenAIProvider
if sys.argv[2] == "configured":
    logging.basicConfig(level=logging.WARNING, format="APP %(name)s %(message)s")
p = OpenAIProvider(base_url=sys.argv[1] + "/v1", api_key="{key}", max_retries=0)
print(p.generate_sync("What is the capital of France?").content)
print("".join(c.content for c in p.stream_sync("hi")))
try:
    p.generate_sync("fail")
except Exception as exc:
    print(type(exc).__name__)
"""


def run_child(server: FakeServer, level: str, mode: str = "plain") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIRROR_PROVIDERS_LOG": level, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", CHILD.format(key=SECRET), server.url, mode], env=env,
                          capture_output=True, text=True, timeout=60, check=True)


def child_server(server: FakeServer) -> None:
    add_openai_routes(server)
    chat = server.routes[("POST", "/v1/chat/completions")]

    def maybe_refuse(req: Received, reply: Reply) -> None:
        if b"fail" in req.body:
            reply.json(401, {"error": {"message": f"Incorrect API key provided: {SECRET}", "code": "invalid_api_key"}})
        else:
            chat(req, reply)

    server.route("POST", "/v1/chat/completions", maybe_refuse)


def test_environment_variable_in_a_real_process(server: FakeServer) -> None:
    child_server(server)
    done = run_child(server, "debug")
    assert done.stdout.split("\n")[:3] == ["Paris is the capital of France."] * 2 + ["AuthenticationError"]
    err = done.stderr
    assert " DEBUG mirror_providers.http: #1 request body " in err and "What is the capital of France?" in err
    assert "response body" in err and " event " in err and "Incorrect API key provided: [redacted]" in err
    assert err.count(" INFO mirror_providers.http: ") == 3
    assert not any(part in err for part in PARTS)

    info = run_child(server, "info").stderr
    assert info.count(" INFO mirror_providers.http: ") == 3 and "DEBUG" not in info and "body" not in info

    # An application that configured logging gets the lines through its handler, once, not ours too.
    configured = run_child(server, "debug", "configured").stderr
    assert "APP mirror_providers.http #1 request body" in configured and " DEBUG " not in configured
    assert not any(part in configured for part in PARTS)

    bad = subprocess.run([sys.executable, "-c", "import mirror_providers.transport as t; t.RequestsTransport()"],
                         env={**os.environ, "MIRROR_PROVIDERS_LOG": "loud", "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=60, check=True)
    assert "MIRROR_PROVIDERS_LOG='loud' ignored" in bad.stderr


def test_a_key_in_any_header_the_request_names_as_secret(server: FakeServer, debug: pytest.LogCaptureFixture) -> None:
    server.route("GET", "/x", lambda r, w: w.json(200, {"echo": r.headers.get("sesame", "")}))
    with RequestsTransport() as t:
        t.send(HttpRequest("GET", server.url + "/x", {"Sesame": SECRET}, secrets=(SECRET,)))
    assert any("'Sesame': '[redacted]'" in m for m in http_lines(debug))
    assert any('{"echo": "[redacted]"}' in m for m in http_lines(debug))
    assert_no_key(debug)
