"""``mirror-providers chat``: the conversation kept across turns, /system, /model, /save, /undo,
errors that do not end the session, and, on a real pseudo-terminal, Ctrl-C that stops an answer
without ending the session or keeping the turn."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from mirror_providers.cli import main

from .server import FakeServer, Received, Reply, openai_completion, openai_sse

ROOT = Path(__file__).resolve().parent.parent


class Vendor:
    """Chat Completions that answers "answer N" (N counts the requests) and records what it got;
    a prompt "slow" streams one word and then waits; "fail" gets a 400."""

    def __init__(self, server: FakeServer) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.release = threading.Event()
        server.route("POST", "/v1/chat/completions", self.chat)

    def chat(self, req: Received, reply: Reply) -> None:
        body = req.json()
        self.bodies.append(body)
        prompt = body["messages"][-1]["content"]
        text = f"answer {len(self.bodies)}"
        if prompt == "fail":
            reply.json(400, {"error": {"message": "no", "type": "invalid_request_error"}})
        elif prompt == "slow":
            reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
            reply.chunk(openai_sse("partial answer")[1])
            self.release.wait(30)
        elif body.get("stream"):
            reply.stream(200, openai_sse(text, model=body["model"]), {"Content-Type": "text/event-stream"})
        else:
            reply.json(200, openai_completion(text, model=body["model"]))


@pytest.fixture
def vendor(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Vendor:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    return Vendor(server)


def chat(monkeypatch: pytest.MonkeyPatch, lines: str, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    out, err = io.StringIO(), io.StringIO()
    code = main(["chat", *argv], out, err)
    return code, out.getvalue(), err.getvalue()


def roles(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in body["messages"]]


def test_the_conversation_is_kept_and_the_commands_work(vendor: Vendor, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    saved = tmp_path / "talk.json"
    code, out, err = chat(monkeypatch, f"hello\n/system Be brief.\nsecond\nfail\n/save {saved}\n/model gpt-4o\n"
                                       "third\n/undo\n/history\n/bogus\n/quit\nnot read\n", "--model", "gpt-4o-mini")
    assert code == 0, err
    assert out.startswith("answer 1\nanswer 2\n")
    assert roles(vendor.bodies[1]) == [("system", "Be brief."), ("user", "hello"), ("assistant", "answer 1"),
                                       ("user", "second")]
    assert "error: " in err and "no" in err  # the failed turn is reported, the session goes on
    assert roles(vendor.bodies[3])[-3:] == [("user", "second"), ("assistant", "answer 2"), ("user", "third")]
    assert [b["model"] for b in vendor.bodies] == ["gpt-4o-mini"] * 3 + ["gpt-4o"]
    assert "now talking to openai:gpt-4o" in err and "forgot 2 messages" in err
    assert out.endswith("user: hello\nassistant: answer 1\nuser: second\nassistant: answer 2\n")  # /history
    assert "unknown command /bogus" in err and len(vendor.bodies) == 4
    data = json.loads(saved.read_text())
    assert data["system"] == "Be brief." and [m["content"] for m in data["messages"]] == [
        "hello", "answer 1", "second", "answer 2"]
    code, out, err = chat(monkeypatch, "go on\n", "--load", str(saved))
    assert code == 0 and roles(vendor.bodies[-1])[0] == ("system", "Be brief.")
    assert roles(vendor.bodies[-1])[-1] == ("user", "go on") and len(vendor.bodies[-1]["messages"]) == 6


def test_a_bad_load_file_is_named(vendor: Vendor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = chat(monkeypatch, "", "--load", str(tmp_path / "none.json"))
    assert code == 2 and "cannot read" in err and "none.json" in err
    (tmp_path / "bad.json").write_text("[1]")
    code, _, err = chat(monkeypatch, "", "--load", str(tmp_path / "bad.json"))
    assert code == 2 and "is not a saved conversation" in err


class Terminal:
    """The master side of a pseudo-terminal, read up to what is awaited; what came after it is
    kept for the next wait (a prompt may arrive in the same read as the line before it)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pending = fd, b""

    def read_until(self, want: bytes, within: float = 30.0) -> bytes:
        while want not in self.pending:
            ready, _, _ = select.select([self.fd], [], [], within)
            assert ready, f"no {want!r} on the terminal; saw {self.pending[-400:]!r}"
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                chunk = b""
            assert chunk, f"the terminal closed before {want!r}; saw {self.pending[-400:]!r}"
            self.pending += chunk
        cut = self.pending.index(want) + len(want)
        seen, self.pending = self.pending[:cut], self.pending[cut:]
        return seen


def test_on_a_terminal_ctrl_c_stops_the_answer_and_the_session_goes_on(vendor: Vendor, server: FakeServer) -> None:
    master, slave = pty.openpty()
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.url + "/v1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mirror_providers", "chat"], stdin=slave, stdout=slave,
                            stderr=slave, env=env, cwd=ROOT, start_new_session=True)
    os.close(slave)
    term = Terminal(master)
    read_until = term.read_until
    try:
        read_until(b"> ")
        os.write(master, b"hello\n")
        read_until(b"answer 1")
        read_until(b"\n> ")  # the next prompt: readline may drop what is typed before it
        os.write(master, b"slow\n")
        read_until(b"partial")
        proc.send_signal(signal.SIGINT)
        read_until(b"this turn is not kept")
        vendor.release.set()
        read_until(b"> ")
        os.write(master, b"after\n")
        read_until(b"answer 3")
        read_until(b"\n> ")
        os.write(master, b"\x04")  # Ctrl-D
        assert proc.wait(30) == 0
    finally:
        vendor.release.set()
        proc.kill()
        os.close(master)
    assert roles(vendor.bodies[2]) == [("user", "hello"), ("assistant", "answer 1"), ("user", "after")]


def test_a_broken_answer_ends_its_line_and_odd_commands_are_told(vendor: Vendor, server: FakeServer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from .server import openai_sse as sse

    def cut(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        reply.chunk(sse("Hello there")[1])
        reply.reset()

    server.route("POST", "/v1/chat/completions", cut)
    code, out, err = chat(monkeypatch, "first\n/model :foo\n/save a\x00b\n", "--max-retries", "0")
    assert code == 0 and out == "Hello\n"  # the partial answer's line is ended before the error
    assert "error:" in err and "give a model name" in err and "cannot write" in err
