"""``mirror-providers serve`` for real: the embedded model served once, found and used by
``--provider local`` in other processes (which then start no server of their own), and stopped
by Ctrl-C, taking its record with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..server import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    env = {**os.environ, "MIRROR_PROVIDERS_CACHE_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("OPENAI_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "mirror_providers", "serve", "--port", str(free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), (line, proc.stderr.read() if proc.stderr else "")
        yield proc, env
    finally:
        proc.kill()
        proc.wait(30)


def cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mirror_providers", *argv], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def test_serve_once_then_local_calls_use_it(served: tuple[subprocess.Popen[str], dict[str, str]]) -> None:
    proc, env = served
    recorded = json.loads((Path(env["MIRROR_PROVIDERS_CACHE_DIR"]) / "local-servers" / f"{proc.pid}.json").read_text())
    assert recorded["pid"] == proc.pid
    for _ in range(2):
        done = cli(env, "generate", "The sky is", "--provider", "local", "--no-stream", "--json", "--max-tokens", "6")
        assert done.returncode == 0, done.stderr
        assert "starting the local model" not in done.stderr  # the served one answered
        result = json.loads(done.stdout)
        assert result["provider"] == "local" and result["usage"]["output_tokens"] <= 6
    listed = cli(env, "health", "--provider", "local", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["healthy"] is True
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert proc.wait(60) == 0
    assert proc.stderr is not None and "stopped" in proc.stderr.read()
    assert not list((Path(env["MIRROR_PROVIDERS_CACHE_DIR"]) / "local-servers").glob("*.json"))
    after = cli(env, "generate", "The sky is", "--provider", "local", "--no-stream", "--max-tokens", "4")
    assert after.returncode == 0 and "starting the local model" in after.stderr  # none running: its own


def test_the_default_answer_is_short(served: tuple[subprocess.Popen[str], dict[str, str]]) -> None:
    _, env = served
    done = cli(env, "generate", "Why is the sky blue?", "--provider", "local", "--no-stream", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["usage"]["output_tokens"] <= 32


def test_chat_and_batch_with_the_embedded_model(served: tuple[subprocess.Popen[str], dict[str, str]],
                                                tmp_path: Path) -> None:
    _, env = served
    saved = tmp_path / "talk.json"
    talk = subprocess.run([sys.executable, "-m", "mirror_providers", "chat", "--provider", "local", "--max-tokens", "5"],
                          input=f"The sky is\n/system Be brief.\nAnd the sea is\n/save {saved}\n", capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert talk.returncode == 0, talk.stderr
    messages = json.loads(saved.read_text())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[2]["content"] == "And the sea is" and talk.stdout.count("\n") >= 2
    source = tmp_path / "in.txt"
    source.write_text("The sky is\nThe sea is\nGrass is\n")
    out = tmp_path / "out.jsonl"
    done = cli(env, "batch", str(source), "-o", str(out), "--provider", "local", "--max-tokens", "4")
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in results] == [1, 2, 3] and {r["provider"] for r in results} == {"local"}


def test_a_local_provider_starts_its_own_server_when_none_runs(tmp_path: Path) -> None:
    from mirror_providers import create_provider
    from mirror_providers.embedded import LocalProvider, running_server
    from mirror_providers.errors import ConnectError

    assert running_server() is None  # this test's own, empty cache directory: no serve recorded
    llm = create_provider("local")
    assert isinstance(llm, LocalProvider) and llm.started_server
    try:
        usage = llm.generate_sync("The sky is", max_tokens=3).usage
        assert usage is not None and usage.output_tokens <= 3
    finally:
        llm.close()
    with pytest.raises(ConnectError):  # its server is gone with it
        llm.generate_sync("The sky is", max_tokens=3, max_retries=0)
