"""Every ```python block of the README runs, in order, against a loopback fake OpenAI server;
the quickstart example and the README's first command line are exercised too."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .server import FakeServer, Received, Reply, add_anthropic_routes, add_ollama_routes, add_openai_routes

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def tool_aware_routes(server: FakeServer) -> None:
    add_openai_routes(server)
    plain = server.routes[("POST", "/v1/chat/completions")]

    def chat(req: Received, reply: Reply) -> None:
        body: dict[str, Any] = req.json()
        if body.get("tools") and not body.get("stream"):
            reply.json(200, {"model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}}]})
        else:
            plain(req, reply)

    server.route("POST", "/v1/chat/completions", chat)


def test_readme_python_blocks_run(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    tool_aware_routes(server)
    add_anthropic_routes(server, "Qubits compute with superposition.")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    add_ollama_routes(server)
    code = blocks("python")
    assert len(code) >= 6
    namespace: dict[str, Any] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, block in enumerate(code):
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    text = out.getvalue()
    assert "Paris is the capital of France." in text
    assert "get_weather {'city': 'Paris'}" in text
    assert "max_tokens must be at least 1, got -1" in text
    assert "10 answers" in text
    assert "Rayleigh scattering." in text
    assert "{'version': '0.12.0', 'model_pulled': True}" in text and "['llama3.1:latest']" in text
    assert "openai gpt-4o-mini-2024-07-18 1" in text and "100 answers; healthy" in text and "Tier.FAST" in text
    assert "claude-sonnet-4-20250514" in text and "Qubits compute with superposition." in text
    # the requests really reached the server, with what the examples asked for
    bodies = [r.json() for r in server.received if r.method == "POST"]
    assert any(b.get("max_tokens") == 50 for b in bodies) and any(b.get("seed") == 7 for b in bodies)


def test_quickstart_example_streams(server: FakeServer, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    add_openai_routes(server)
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import quickstart
    finally:
        sys.path.pop(0)
    assert quickstart.main(["--base-url", server.url + "/v1", "Capital?"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "Paris is the capital of France." and "in," in out.err
    assert quickstart.main(["--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0", "x"]) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_readme_commands_point_at_real_things() -> None:
    shell = "\n".join(blocks("bash"))
    assert "python examples/quickstart.py" in shell and (ROOT / "examples" / "quickstart.py").exists()
    assert "pip install -e '.[dev]' && python -m pytest" in shell
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in ci and "pip install -e '.[dev]'" in ci


def test_quickstart_command_line_as_a_user_runs_it(server: FakeServer) -> None:
    add_openai_routes(server)
    env = {"OPENAI_BASE_URL": server.url + "/v1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "--model", "llama3.1", "hi"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Paris is the capital of France."
