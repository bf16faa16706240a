"""The command line: streaming, JSON output, fallback chains, health, models, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mirror_providers.cli import main

from .server import FakeServer, add_anthropic_routes, add_ollama_routes, add_openai_routes, free_port

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()



def test_generate_streams_from_the_configured_provider(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    add_openai_routes(server)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    code, out, err = run("generate", "Capital of France?", "--system", "Be brief.", "--max-tokens", "20",
                         "--temperature", "0.1")
    assert (code, out) == (0, "Paris is the capital of France.\n")
    assert "tokens in" in err
    body = [r.json() for r in server.received][-1]
    assert body["stream"] is True and body["max_completion_tokens"] == 20 and body["messages"][0]["content"] == "Be brief."
    assert body["reasoning_effort"] == "none"  # gpt-6-luna takes temperature only with reasoning off


def test_no_stream_and_json(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    add_anthropic_routes(server)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    code, out, _ = run("generate", "hi", "--provider", "anthropic", "--no-stream", "--json")
    assert code == 0 and json.loads(out)["content"] == "Paris is the capital of France."
    code, out, _ = run("generate", "hi", "--provider", "anthropic", "--json")
    chunks = [json.loads(line) for line in out.splitlines()]
    assert "".join(c["content"] for c in chunks) == "Paris is the capital of France."
    assert chunks[-1]["finish_reason"] == "stop"


def test_fallback_chain_from_the_command_line(server: FakeServer) -> None:
    add_ollama_routes(server, "from ollama")
    code, out, _ = run("generate", "hi", "--fallback", "openai:gpt-4o", "--no-stream")
    assert code == 2  # no key for api.openai.com: a configuration error, said in one line
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
        mp.setenv("OLLAMA_HOST", server.url)
        code, out, err = run("generate", "hi", "--fallback", "openai:gpt-4o,ollama:llama3.1", "--no-stream",
                             "--max-retries", "0")
    assert (code, out.strip()) == (0, "from ollama")


@pytest.mark.parametrize("setup, code, words", [
    ("none", 2, "--provider local"),
    ("refused", 3, "cannot connect"),
    ("401", 1, "invalid key"),
    ("all_dead", 4, "attempt(s) failed"),
    ("bad_option", 2, "max_tokens must be at least 1"),
])
def test_errors_one_line_and_exit_codes(setup: str, code: int, words: str, server: FakeServer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["generate", "hi", "--no-stream", "--max-retries", "0"]
    if setup == "refused":
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    elif setup == "401":
        server.route("POST", "/v1/chat/completions",
                     lambda r, w: w.json(401, {"error": {"message": "invalid key", "code": "invalid_api_key"}}))
        monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    elif setup == "all_dead":
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
        argv += ["--fallback", "openai,ollama"]
    elif setup == "bad_option":
        monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
        argv += ["--max-tokens", "0"]
    got, out, err = run(*argv)
    assert got == code and words in err and "Traceback" not in err
    assert err.count("error:") == 1


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    code, _, err = run("--debug", "generate", "hi", "--max-retries", "0")
    assert code == 3 and "Traceback" in err


def test_health_table(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    add_openai_routes(server)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    code, out, _ = run("health")
    lines = out.splitlines()
    assert code == 3 and lines[0].startswith("provider")
    assert any(line.startswith("openai") and " ok " in line for line in lines)
    assert any(line.startswith("ollama") and "FAILING" in line for line in lines)
    code, out, _ = run("health", "--provider", "openai", "--json")
    assert code == 0 and json.loads(out)[0]["healthy"] is True


def test_models_catalog() -> None:
    code, out, _ = run("models", "--provider", "openai")
    assert code == 0 and "gpt-4o-mini" in out and "128000" in out
    code, out, _ = run("models", "--json")
    ids = {(m["provider"], m["id"]) for m in json.loads(out)}
    assert ("anthropic", "claude-sonnet-4-20250514") in ids and ("ollama", "llama3.1") in ids


def test_python_dash_m_and_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "mirror_providers", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("mirror-providers ")
    proc = subprocess.run([sys.executable, "-m", "mirror_providers", "generate"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "prompt" in proc.stderr


@pytest.mark.parametrize("provider, env, base", [
    ("openai", "OPENAI_BASE_URL", "/v2"), ("anthropic", "ANTHROPIC_BASE_URL", "/v1"), ("ollama", "OLLAMA_HOST", ""),
])
def test_a_wrong_base_url_is_said_to_be_one_not_a_missing_model(provider: str, env: str, base: str, server: FakeServer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}  # llama.cpp's answer
    for method in ("GET", "POST"):
        server.route(method, "*", lambda r, w: w.body(404, b"404 page not found", {"Content-Type": "text/plain"})
                     if provider == "ollama" else w.json(404, body))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    code, _, err = run("generate", "hi", "--provider", provider, "--base-url", server.url + base, "--no-stream")
    assert code == 1 and "Traceback" not in err
    assert f"{server.url}{base}/" in err and "answered 404" in err and "base_url is probably wrong" in err
    assert "pull" not in err and "model" not in err.split("answered 404")[0]


def test_a_fallback_member_that_cannot_be_made_is_left_out(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    add_ollama_routes(server, "from ollama")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    code, out, err = run("generate", "hi", "--fallback", "openai:gpt-4o,ollama:llama3.1", "--no-stream")
    assert (code, out.strip()) == (0, "from ollama")
    assert "warning: --fallback leaves out openai:gpt-4o:" in err and "no API key" in err
    code, _, err = run("generate", "hi", "--fallback", "openai:gpt-4o,anthropic", "--no-stream")
    assert code == 2 and "no --fallback member can be used: openai:gpt-4o: " in err and "anthropic: " in err


def test_json_errors_are_json_on_stdout_with_the_same_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    for extra in ([], ["--no-stream"]):
        code, out, err = run("generate", "hi", "--json", "--max-retries", "0", *extra)
        error = json.loads(out)["error"]
        assert code == 3 == error["exit_code"] and error["type"] == "ConnectError"
        assert error["provider"] == "openai" and "cannot connect" in error["message"] and "error:" in err
    code, out, _ = run("generate", "hi", "--json", "--max-tokens", "0")
    assert code == 2 and json.loads(out)["error"]["type"] == "ValidationError"


def test_a_bad_option_gets_no_hint_about_local_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    code, _, err = run("generate", "hi", "--max-retries", "-1")
    assert code == 2 and "max_retries must be an integer >= 0, got -1" in err and "hint" not in err


def test_ctrl_c_twice_during_a_stream_is_quiet(server: FakeServer) -> None:
    import os
    import signal

    from .server import Received, Reply, openai_sse

    release = threading.Event()

    def slow(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        reply.chunk(openai_sse("one two")[1])
        release.wait(30)  # the server side of a slow stream

    server.route("POST", "/v1/chat/completions", slow)
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.url + "/v1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mirror_providers", "generate", "hi"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdout.read(3) == b"one"  # streaming has begun
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        release.set()
        proc.kill()
    # 130, or ended by the signal itself when the second one came during shutdown (a shell says 130 too)
    assert proc.returncode in (130, -signal.SIGINT) and b"Traceback" not in stderr, stderr


def test_log_debug_shows_the_exchange_without_the_key(server: FakeServer) -> None:
    import os

    add_openai_routes(server)
    key = "sk-test-CLI-SECRET-4242"
    env = {**os.environ, "OPENAI_API_KEY": key, "OPENAI_BASE_URL": server.url + "/v1"}
    proc = subprocess.run([sys.executable, "-m", "mirror_providers", "--log", "debug", "generate", "hello there",
                           "--no-stream"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "hello there" in proc.stderr and "Paris is the capital" in proc.stderr  # both bodies
    assert "CLI-SECRET" not in proc.stderr and "CLI-SECRET" not in proc.stdout
