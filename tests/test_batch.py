"""``mirror-providers batch`` run for real (in-process and as a subprocess, with a pseudo-terminal
for the progress bar and Ctrl-C) against a loopback fake of OpenAI's API: input order with errors
in place, concurrency, resuming without paying twice, fallback and pools."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirror_providers.batch import read_items
from mirror_providers.cli import main

from .server import FakeServer, Received, Reply, free_port, openai_completion
from .waiting import eventually

ROOT = Path(__file__).resolve().parent.parent


class Vendor:
    """A fake Chat Completions endpoint that answers "answer: PROMPT", fails prompts that start
    with "fail", and holds prompts that start with "hold" until released."""

    def __init__(self, server: FakeServer) -> None:
        self.sent: Counter[str] = Counter()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        server.route("POST", "/v1/chat/completions", self.chat)

    def chat(self, req: Received, reply: Reply) -> None:
        prompt = req.json()["messages"][-1]["content"]
        with self.lock:
            self.sent[prompt] += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if prompt.startswith("hold"):
                self.release.wait(30)
            if prompt.startswith("fail"):
                reply.json(400, {"error": {"message": f"cannot answer {prompt}", "type": "invalid_request_error"}})
            else:
                reply.json(200, openai_completion(f"answer: {prompt}"), {"x-request-id": f"req-{prompt}"})
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def vendor(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Vendor:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    return Vendor(server)


def run(*argv: str, stdin: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_input_records_are_read_or_reported_in_place() -> None:
    lines = ['{"prompt": "a", "id": 1, "max_tokens": 5}', "", '"b"', "plain text prompt",
             '{"messages": [{"role": "user", "content": "c"}]}', '{"prompt": "x", "colour": "red"}', "{broken",
             '{"id": 2}', '[1, 2]']
    items = read_items(lines, defaults={"system": "S", "max_tokens": None})
    assert [i.line for i in items] == [1, 3, 4, 5, 6, 7, 8, 9]  # the blank line 2 is a separator
    assert items[0].prompt == "a" and items[0].id == 1 and dict(items[0].options) == {"system": "S", "max_tokens": 5}
    assert items[1].prompt == "b" and items[2].prompt == "plain text prompt"
    assert isinstance(items[3].prompt, tuple) and items[3].prompt[0].text == "c"
    assert "unknown field(s) ['colour']" in (items[4].error or "")
    assert (items[5].error or "").startswith("line 7: ")
    assert "needs \"prompt\" (text) or \"messages\"" in (items[6].error or "")
    assert items[7].prompt == "[1, 2]"  # auto: only a line that starts with { or " is JSON
    assert "JSON object or string, not list" in (read_items(["[1, 2]"], "jsonl")[0].error or "")
    assert [i.prompt for i in read_items(['{"prompt": "a"}'], "text")] == ['{"prompt": "a"}']
    assert items[0].key != read_items(['{"prompt": "a", "id": 1, "max_tokens": 6}'])[0].key  # options count


def test_results_in_input_order_with_errors_in_place(vendor: Vendor, monkeypatch: pytest.MonkeyPatch) -> None:
    vendor.release.clear()

    def release_when_the_rest_is_sent() -> None:
        eventually(lambda: vendor.sent["p4"] == 1, within=10)
        vendor.release.set()

    threading.Thread(target=release_when_the_rest_is_sent, daemon=True).start()
    stdin = "hold-1\np2\nfail-3\np4\n{bad json\n"
    code, out, err = run("batch", "-", "--concurrency", "3", "--no-progress", stdin=stdin, monkeypatch=monkeypatch)
    got = records(out)
    assert code == 1, err
    assert [r["line"] for r in got] == [1, 2, 3, 4, 5]  # the held first prompt finished last
    assert got[0]["content"] == "answer: hold-1" and got[0]["request_id"] == "req-hold-1"
    assert got[2]["error"]["type"] == "BadRequestError" and got[2]["error"]["status"] == 400
    assert got[4]["error"]["type"] == "ValidationError" and "line 5" in got[4]["error"]["message"]
    assert got[1]["usage"] == {"input_tokens": 5, "output_tokens": 2} and got[1]["provider"] == "openai"
    assert "4 of 5 answered" not in err and "3 of 5 answered (0 earlier), 2 failed" in err
    assert vendor.most <= 3


def test_concurrency_is_the_limit(vendor: Vendor, monkeypatch: pytest.MonkeyPatch) -> None:
    vendor.release.set()
    code, out, _ = run("batch", "-", "--concurrency", "2", "--no-progress",
                       stdin="".join(f"hold-{i}\n" for i in range(8)), monkeypatch=monkeypatch)
    assert code == 0 and len(records(out)) == 8 and vendor.most <= 2


def test_a_finished_run_is_not_sent_again(vendor: Vendor, tmp_path: Path) -> None:
    vendor.release.set()
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"prompt": "p1", "id": "a"}\n{"prompt": "fail-2"}\n{"prompt": "p3"}\n')
    assert run("batch", str(source), "-o", str(output), "--no-progress")[0] == 1
    assert run("batch", str(source), "-o", str(output), "--no-progress")[0] == 1
    assert vendor.sent == Counter({"p1": 1, "fail-2": 2, "p3": 1})  # only the failed one again
    source.write_text('{"prompt": "p1", "id": "a"}\n{"prompt": "p2"}\n{"prompt": "p3", "max_tokens": 9}\n')
    code, _, err = run("batch", str(source), "-o", str(output), "--no-progress")
    assert code == 0 and "resuming: 1 of 3 already answered" in err
    assert vendor.sent == Counter({"p1": 1, "fail-2": 2, "p2": 1, "p3": 2})  # p3's options changed
    final = records(output.read_text())
    assert [r["line"] for r in final] == [1, 2, 3] and all("error" not in r for r in final)
    assert final[0]["id"] == "a"


def test_fallback_and_pool(vendor: Vendor, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    vendor.release.set()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")  # nothing listens there
    code, out, err = run("batch", "-", "--fallback", "ollama:llama3.1,openai:gpt-4o-mini", "--no-progress",
                         stdin="p1\np2\n", monkeypatch=monkeypatch)
    assert code == 0, err
    assert [r["provider"] for r in records(out)] == ["openai", "openai"]
    code, out, err = run("batch", "-", "--pool", "openai:gpt-4o-mini,openai:gpt-4o", "--strategy", "round_robin",
                         "--no-progress", stdin="p1\np2\n", monkeypatch=monkeypatch)
    assert code == 0, err and len(records(out)) == 2


def test_bad_usage_is_exit_2(vendor: Vendor, tmp_path: Path) -> None:
    code, _, err = run("batch", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "cannot read" in err and "missing.jsonl" in err
    (tmp_path / "in.txt").write_text("p1\n")
    code, _, err = run("batch", str(tmp_path / "in.txt"), "--concurrency", "0")
    assert code == 2 and "--concurrency must be at least 1" in err
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    code, _, err = run("batch", str(tmp_path / "latin1.txt"))
    assert code == 2 and "not UTF-8" in err


# -- as a user runs it: a subprocess, a terminal, Ctrl-C ---------------------------------------

def env_for(server: FakeServer) -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.url + "/v1", "PYTHONUNBUFFERED": "1",
            "COLUMNS": "100"}


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    master, slave = pty.openpty()
    yield master, slave
    for fd in (master, slave):
        with contextlib.suppress(OSError):
            os.close(fd)


def read_until(fd: int, proc: subprocess.Popen[bytes], want: bytes, within: float = 30.0) -> bytes:
    seen = b""
    while want not in seen:
        ready, _, _ = select.select([fd], [], [], within)
        if not ready:
            raise AssertionError(f"no {want!r} on the terminal; saw {seen[-500:]!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        seen += chunk
    return seen


def test_progress_bar_on_a_terminal(vendor: Vendor, server: FakeServer, tmp_path: Path,
                                    terminal: tuple[int, int]) -> None:
    vendor.release.set()
    master, slave = terminal
    source = tmp_path / "in.txt"
    source.write_text("".join(f"p{i}\n" for i in range(20)) + "fail-x\n")
    proc = subprocess.Popen([sys.executable, "-m", "mirror_providers", "batch", str(source), "-o",
                             str(tmp_path / "out.jsonl")], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave, env=env_for(server), cwd=ROOT)
    os.close(slave)
    seen = read_until(master, proc, b"answered")
    assert proc.wait(30) == 1
    assert b"\r" in seen and b"21/21" in seen and b"1 error" in seen, seen
    piped = subprocess.run([sys.executable, "-m", "mirror_providers", "batch", str(source), "-o",
                            str(tmp_path / "other.jsonl")], capture_output=True, env=env_for(server), cwd=ROOT,
                           timeout=60)
    assert piped.returncode == 1 and b"\r" not in piped.stderr and b"21/21" in piped.stderr, piped.stderr


def test_ctrl_c_waits_for_calls_in_flight_then_the_rerun_finishes(vendor: Vendor, server: FakeServer, tmp_path: Path,
                                                                  terminal: tuple[int, int]) -> None:
    master, slave = terminal
    source, output = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("p1\nhold-2\nhold-3\np4\np5\n")
    proc = subprocess.Popen([sys.executable, "-m", "mirror_providers", "batch", str(source), "-o", str(output),
                             "--concurrency", "2"], stdin=slave, stdout=slave, stderr=slave,
                            env=env_for(server), cwd=ROOT, start_new_session=True)
    os.close(slave)
    try:
        assert eventually(lambda: vendor.sent["hold-2"] == 1 and vendor.sent["hold-3"] == 1, within=30)
        assert eventually(lambda: output.exists() and "p1" in output.read_text(), within=30)
        proc.send_signal(signal.SIGINT)  # Ctrl-C, with both slots held
        read_until(master, proc, b"waiting for the 2 calls in flight")
        vendor.release.set()  # the calls in flight end: paid for, so written
        assert proc.wait(30) == 130
    finally:
        vendor.release.set()
        proc.kill()
    assert {r["line"] for r in records(output.read_text())} == {1, 2, 3} and vendor.sent["p4"] == 0
    done = subprocess.run([sys.executable, "-m", "mirror_providers", "batch", str(source), "-o", str(output),
                           "--no-progress"], capture_output=True, env=env_for(server), cwd=ROOT, timeout=60)
    assert done.returncode == 0 and b"resuming: 3 of 5 already answered" in done.stderr
    assert vendor.sent == Counter({"p1": 1, "hold-2": 1, "hold-3": 1, "p4": 1, "p5": 1})  # nothing paid twice
    assert [r["line"] for r in records(output.read_text())] == [1, 2, 3, 4, 5]


def test_a_second_ctrl_c_abandons_the_calls_in_flight(vendor: Vendor, server: FakeServer, tmp_path: Path) -> None:
    source, output = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("p1\nhold-2\n")
    proc = subprocess.Popen([sys.executable, "-m", "mirror_providers", "batch", str(source), "-o", str(output)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env_for(server), cwd=ROOT)
    try:
        assert eventually(lambda: vendor.sent["hold-2"] == 1 and output.exists() and "p1" in output.read_text(),
                          within=30)
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        line = b""
        while b"waiting for the 1 calls" not in line:
            line = proc.stderr.readline()
            assert line, "no word about the calls in flight"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)  # does not wait for the held call
    finally:
        vendor.release.set()
        proc.kill()
    assert proc.returncode == 130 and b"Traceback" not in stderr, stderr
    assert [r["line"] for r in records(output.read_text())] == [1]


# -- what a careless caller or a crash does to the files ---------------------------------------

def test_the_output_may_not_be_the_input(vendor: Vendor, tmp_path: Path) -> None:
    same = tmp_path / "same.txt"
    same.write_text("a\nb\n")
    code, _, err = run("batch", str(same), "-o", str(same), "--no-progress")
    assert code == 2 and "is the input file" in err and same.read_text() == "a\nb\n" and not vendor.sent


def test_another_model_is_not_answered_from_the_file(vendor: Vendor, tmp_path: Path) -> None:
    vendor.release.set()
    source, output = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("p1\np2\n")
    assert run("batch", str(source), "-o", str(output), "--model", "gpt-4o-mini", "--no-progress")[0] == 0
    code, _, err = run("batch", str(source), "-o", str(output), "--model", "gpt-4o", "--no-progress")
    assert code == 2 and "holds 2 results of other prompts" in err  # refused, not silently reused
    other = tmp_path / "other.txt"
    other.write_text("p3\n")
    assert run("batch", str(other), "-o", str(output), "--no-progress")[0] == 2
    assert vendor.sent == Counter({"p1": 1, "p2": 1}) and len(records(output.read_text())) == 2


def test_a_moved_line_is_still_answered_from_the_file(vendor: Vendor, tmp_path: Path) -> None:
    vendor.release.set()
    source, output = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("p1\np2\n")
    assert run("batch", str(source), "-o", str(output), "--no-progress")[0] == 0
    source.write_text("p0\np1\np2\n")  # a line added at the top
    assert run("batch", str(source), "-o", str(output), "--no-progress")[0] == 0
    assert vendor.sent == Counter({"p0": 1, "p1": 1, "p2": 1})
    assert [(r["line"], r["content"]) for r in records(output.read_text())] == [
        (1, "answer: p0"), (2, "answer: p1"), (3, "answer: p2")]


def test_a_record_cut_by_a_crash_does_not_swallow_the_next(vendor: Vendor, tmp_path: Path) -> None:
    vendor.release.set()
    source, output = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("p1\np2\np3\n")
    assert run("batch", str(source), "-o", str(output), "--no-progress")[0] == 0
    whole = output.read_text().splitlines()
    output.write_text(whole[0] + "\n" + whole[1][:25])  # the crash: line 2 half written, line 3 never
    assert run("batch", str(source), "-o", str(output), "--no-progress")[0] == 0
    assert vendor.sent == Counter({"p1": 1, "p2": 2, "p3": 2})
    assert [r["line"] for r in records(output.read_text())] == [1, 2, 3]


def test_a_byte_order_mark_and_bad_bytes(vendor: Vendor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vendor.release.set()
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"prompt": "p1"}\n')
    code, out, _ = run("batch", str(bom), "--no-progress")
    assert code == 0 and records(out)[0]["content"] == "answer: p1"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff bad\n"), errors="surrogateescape"))
    out_, err_ = io.StringIO(), io.StringIO()
    assert main(["batch", "-", "--no-progress"], out_, err_) == 2 and "standard input is not UTF-8" in err_.getvalue()
    monkeypatch.setattr(sys, "stdin", None)
    assert main(["batch", "-"], out_, err_) == 2 and "no standard input" in err_.getvalue()


def test_usage_mistakes_are_exit_2(vendor: Vendor, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("p1\n")
    (tmp_path / "adir").mkdir()
    for argv, words in [(["-o", str(tmp_path / "adir")], "cannot read"),
                        (["--fallback", "bogus:x,openai"], "unknown provider 'bogus'"),
                        (["--pool", "openai,openai", "--model", "gpt-4o"], "--model and --base-url go with")]:
        code, _, err = run("batch", str(tmp_path / "in.txt"), "--no-progress", *argv)
        assert code == 2 and words in err, (argv, err)
    assert not vendor.sent


def test_a_reader_that_goes_away_ends_it_quietly(vendor: Vendor, server: FakeServer, tmp_path: Path) -> None:
    vendor.release.set()
    source = tmp_path / "in.txt"
    source.write_text("".join(f"p{i}\n" for i in range(300)))
    proc = subprocess.Popen([sys.executable, "-m", "mirror_providers", "batch", str(source), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(server), cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b'{"line": 1')
    proc.stdout.close()  # as `| head -1` does
    _, stderr = proc.communicate(timeout=60)
    assert b"Traceback" not in stderr and proc.returncode != 0, stderr
