"""ProgressBar (injected clock, StringIO and a fake terminal) and map_sync(progress=...), in
process and in a child process whose stderr is a real pseudo-terminal or a pipe."""

from __future__ import annotations

import io
import os
import re
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror_providers import _aio
from mirror_providers.errors import BadRequestError, CallbackError
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain
from mirror_providers.progress import LOG_INTERVAL_S, REDRAW_INTERVAL_S, ProgressBar

from .fakes import Clock
from .server import FakeServer, Received, Reply, openai_completion

ROOT = Path(__file__).resolve().parent.parent
CONTROL = re.compile(r"[\r\x1b]")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class BrokenStream(io.StringIO):
    """Every write fails as a closed pipe does; counts the attempts."""

    def __init__(self, isatty: bool) -> None:
        super().__init__()
        self.tty = isatty
        self.attempts = 0

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> int:
        self.attempts += 1
        raise BrokenPipeError(32, "Broken pipe")


@pytest.fixture(autouse=True)
def _terminal_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.delenv("NO_COLOR", raising=False)


def frames(out: str) -> list[str]:
    """What a terminal showed, one redraw each (the '\\r'-separated pieces, padding stripped)."""
    assert out.startswith("\r")
    return [f.rstrip(" \n") for f in out[1:].split("\r")]


# -- not a terminal: plain lines ------------------------------------------------------------------

def test_a_file_gets_a_line_per_ten_percent_and_a_final_one() -> None:
    clock, out = Clock(), io.StringIO()
    bar = ProgressBar(50, stream=out, clock=clock, label="batch")
    assert out.getvalue() == ""  # no line before anything happened
    for i in range(50):
        clock.advance(0.1)
        bar.advance(ok=i % 10 != 0)
    bar.close()
    lines = out.getvalue().splitlines()
    assert not CONTROL.search(out.getvalue())
    assert [line.split()[1] for line in lines] == [f"{n}/50" for n in range(5, 51, 5)]
    assert lines[0] == "batch  5/50 (10%)  10.0/s  ETA 0:04  1 error  elapsed 0:00"
    assert lines[-1] == "batch  50/50 (100%)  10.0/s  5 errors  elapsed 0:05"  # final: no ETA


def test_a_file_gets_a_line_every_ten_seconds_when_the_total_is_unknown() -> None:
    clock, out = Clock(), io.StringIO()
    with ProgressBar(stream=out, clock=clock) as bar:
        for _ in range(12):
            clock.advance(3)
            bar.advance()
    lines = out.getvalue().splitlines()
    # the final line is the same as the one at 36 s: written once
    assert lines == ["4/?  20.0/min  0 errors  elapsed 0:12", "8/?  20.0/min  0 errors  elapsed 0:24",
                     "12/?  20.0/min  0 errors  elapsed 0:36"]
    clock.advance(LOG_INTERVAL_S * 5)
    bar.advance()  # after close: nothing more is drawn
    assert len(out.getvalue().splitlines()) == 3


def test_close_always_writes_the_final_state() -> None:
    out = io.StringIO()
    ProgressBar(5, stream=out, clock=Clock()).close()
    assert out.getvalue() == "0/5 (0%)  -/s  0 errors  elapsed 0:00\n"


def test_a_dumb_terminal_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    out = FakeTerminal()
    with ProgressBar(2, stream=out, clock=Clock()) as bar:
        bar.advance(ok=False)
        bar.advance()
    assert out.getvalue() == "1/2 (50%)  -/s  ETA -  1 error  elapsed 0:00\n2/2 (100%)  -/s  1 error  elapsed 0:00\n"


# -- a terminal: one line redrawn ------------------------------------------------------------------

def test_a_terminal_line_is_redrawn_at_most_ten_times_a_second_and_ends_with_the_final_state() -> None:
    clock, out = Clock(), FakeTerminal()
    bar = ProgressBar(10, stream=out, clock=clock)
    assert frames(out.getvalue()) == ["[" + "-" * 30 + "]  0/10 (0%)  -/s  ETA -  0 errors  elapsed 0:00"]
    for _ in range(3):
        bar.advance()  # the clock has not moved: throttled
    assert len(frames(out.getvalue())) == 1
    clock.advance(REDRAW_INTERVAL_S)
    bar.advance()
    assert frames(out.getvalue())[-1].startswith("[" + "#" * 12 + "-" * 18 + "]  4/10 (40%)  40.0/s  ETA 0:00")
    clock.advance(REDRAW_INTERVAL_S / 2)
    bar.advance(ok=False)  # throttled again...
    assert len(frames(out.getvalue())) == 2
    bar.close()  # ...but the final state is always drawn, and the line ended
    bar.close()
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1
    assert "5/10 (50%)" in frames(out.getvalue())[-1] and "1 error" in frames(out.getvalue())[-1]


def test_the_last_item_is_drawn_at_once() -> None:
    clock, out = Clock(), FakeTerminal()
    bar = ProgressBar(2, stream=out, clock=clock)
    bar.advance()
    bar.advance()
    assert "2/2 (100%)" in frames(out.getvalue())[-1]


def test_rate_and_eta_count_only_this_runs_work() -> None:
    clock, out = Clock(), FakeTerminal()
    bar = ProgressBar(100, stream=out, clock=clock, initial=40)
    assert "40/100 (40%)" in frames(out.getvalue())[0] and bar.rate is None and bar.eta_s is None
    clock.advance(10)
    bar.update(60, errors=3)
    assert bar.rate == pytest.approx(2.0)  # 20 items in 10 s, not 60
    assert bar.eta_s == pytest.approx(20.0)
    assert frames(out.getvalue())[-1].endswith("60/100 (60%)  2.0/s  ETA 0:20  \x1b[31m3 errors\x1b[0m  elapsed 0:10")
    clock, out = Clock(), FakeTerminal()
    bar = ProgressBar(100, stream=out, clock=clock)
    clock.advance(120)
    bar.advance()
    assert "1/100 (1%)  0.5/min  ETA 3:18:00" in frames(out.getvalue())[-1]  # 99 more at 120 s each


def test_the_line_fits_the_terminal_and_a_shorter_line_clears_the_longer_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    clock, out = Clock(), FakeTerminal()
    with ProgressBar(1000, stream=out, clock=clock, label="a long label for the batch") as bar:
        for _ in range(1000):
            clock.advance(REDRAW_INTERVAL_S)
            bar.advance(ok=False)
    shown = out.getvalue()[1:].split("\r")
    assert all(len(f.rstrip("\n").replace("\x1b[31m", "").replace("\x1b[0m", "")) <= 39 for f in shown)
    assert "1000/1000 (100%)" in shown[-1] and "1000 errors" in shown[-1]
    monkeypatch.setenv("COLUMNS", "100")
    clock, out = Clock(), FakeTerminal()
    bar = ProgressBar(3, stream=out, clock=clock)
    clock.advance(1)
    bar.update(1)
    bar.close()  # without its ETA the final line is shorter: the tail is overwritten with spaces
    before, final = out.getvalue()[1:].split("\r")[-2:]
    assert len(final.rstrip("\n")) == len(before) and final.rstrip("\n").endswith(" ")


def test_no_color_means_no_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = FakeTerminal()
    with ProgressBar(1, stream=out, clock=Clock()) as bar:
        bar.advance(ok=False)
    assert "\x1b" not in out.getvalue() and "1 error" in out.getvalue()


def test_a_broken_stream_stops_the_drawing_and_nothing_else() -> None:
    for tty in (True, False):
        stream, clock = BrokenStream(tty), Clock()
        bar = ProgressBar(3, stream=stream, clock=clock)
        for _ in range(3):
            clock.advance(LOG_INTERVAL_S)
            bar.advance()
        bar.close()
        assert stream.attempts == 1 and bar.done == 3  # given up after the first failure
    closed = io.StringIO()
    closed.close()
    with ProgressBar(2, stream=closed) as bar:  # a closed stderr: isatty() itself raises
        bar.advance()
    assert bar.done == 1


def test_many_threads_advance_one_bar() -> None:
    out = FakeTerminal()
    bar = ProgressBar(8 * 500, stream=out)  # the real clock: redraws happen while threads race

    def work(n: int) -> None:
        for i in range(500):
            bar.advance(ok=(i + n) % 4 != 0)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    bar.close()
    assert (bar.done, bar.errors) == (4000, 1000)
    line = re.compile(r"^\[[#-]+\]  \d+/4000 \(\d+%\)  \S+  (ETA \S+  )?(\x1b\[31m)?\d+ errors?(\x1b\[0m)?  elapsed \S+$")
    assert all(line.match(f) for f in frames(out.getvalue())), frames(out.getvalue())
    assert "4000/4000 (100%)" in frames(out.getvalue())[-1] and "1000 errors" in frames(out.getvalue())[-1]


def test_a_total_can_be_learnt_later() -> None:
    out = io.StringIO()
    with ProgressBar(stream=out, clock=Clock()) as bar:
        bar.advance()
        bar.update(total=4)
    assert out.getvalue().splitlines()[-1].startswith("1/4 (25%)")
    with pytest.raises(ValueError):
        ProgressBar(-1)


# -- map_sync(progress=...) ----------------------------------------------------------------------

def _echo_but_fail(req: Received, reply: Reply) -> None:
    prompt = req.json()["messages"][-1]["content"]
    if prompt == "fail":
        reply.json(400, {"error": {"message": "no", "type": "invalid_request_error"}})
        return
    reply.json(200, openai_completion(prompt))


@pytest.fixture
def echo() -> Iterator[FakeServer]:
    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", _echo_but_fail)
        yield server


def _llm(server: FakeServer) -> OpenAIProvider:
    return OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0)


PROMPTS = ["a", "b", "fail", "d", "e"]


def test_progress_true_draws_on_stderr_counting_errors(echo: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[int, int]] = []
    results = _llm(echo).map_sync(PROMPTS, max_workers=2, progress=True, on_progress=lambda d, t: seen.append((d, t)))
    assert isinstance(results[2], BadRequestError) and results[0].content == "a"  # type: ignore[union-attr]
    assert seen == [(n, 5) for n in range(1, 6)]  # on_progress still gets every step
    err = capsys.readouterr().err
    assert not CONTROL.search(err)
    assert err.splitlines()[-1].startswith("5/5 (100%)") and "1 error " in err.splitlines()[-1]


def test_a_callers_bar_is_advanced_and_left_open(echo: FakeServer) -> None:
    out = FakeTerminal()
    bar = ProgressBar(stream=out, clock=Clock(), label="all")
    llm = _llm(echo)
    llm.map_sync(PROMPTS, progress=bar)
    assert (bar.total, bar.done, bar.errors) == (5, 5, 1)
    FallbackChain([llm]).map_sync(["fail", "x"], progress=bar)  # pools are providers: same keyword
    assert (bar.total, bar.done, bar.errors) == (5, 7, 2)  # a known total is the caller's to set
    assert "\n" not in out.getvalue()  # not closed by map_sync: the line is not ended yet
    bar.close()
    assert "all  [" in frames(out.getvalue())[-1] and "7/5 (100%)" in frames(out.getvalue())[-1]


def test_a_batch_inside_a_worker_advances_the_bar_too(echo: FakeServer) -> None:
    bar = ProgressBar(stream=io.StringIO(), clock=Clock())
    _aio.submit(lambda: _llm(echo).map_sync(PROMPTS, progress=bar)).result(timeout=30)
    assert (bar.done, bar.errors) == (5, 1)


def test_a_raising_on_progress_still_ends_the_bar(echo: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    def boom(done: int, total: int) -> None:
        raise ZeroDivisionError("x")

    with pytest.raises(CallbackError) as caught:
        _llm(echo).map_sync(PROMPTS, max_workers=1, progress=True, on_progress=boom)
    assert "on_progress" in str(caught.value) and len(caught.value.results) == 5
    assert capsys.readouterr().err.splitlines()[-1].startswith("1/5 (20%)")  # the bar stopped with the callback
    assert _aio.active_workers() == 0


def test_ctrl_c_ends_the_bars_line(echo: FakeServer) -> None:
    """A KeyboardInterrupt in the middle of the batch: the line is ended, so what follows starts afresh."""
    out = FakeTerminal()

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _llm(echo).map_sync(["a"], progress=ProgressBar(stream=out, clock=Clock()), on_progress=interrupt)
    assert not out.getvalue().endswith("\n")  # a caller's bar: left to the caller
    with pytest.MonkeyPatch.context() as m:
        m.setattr(sys, "stderr", out)
        with pytest.raises(KeyboardInterrupt):
            _llm(echo).map_sync(["a", "b"], max_workers=1, progress=True, on_progress=interrupt)
    assert out.getvalue().endswith("\n") and "1/2 (50%)" in frames(out.getvalue())[-1]


# -- a child process: stderr on a real pseudo-terminal, then on a pipe ---------------------------

CHILD = """
import sys
from mirror_providers.openai import OpenAIProvider
llm = OpenAIProvider(api_key="sk-test", base_url=sys.argv[1] + "/v1", max_retries=0)
results = llm.map_sync(["a", "b", "fail", "d", "e", "f", "g", "h"], max_workers=2, progress=True)
print(sum(isinstance(r, Exception) for r in results))
"""


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS")}
    return {**env, "PYTHONPATH": str(ROOT), "TERM": "xterm", "NO_COLOR": "1"}


def _read_all(fd: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> bytes:
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no output from the child within {timeout} s; so far {data!r}"
        try:
            piece = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal's other side (it exited)
            break
        if not piece:
            break
        data += piece
    assert proc.wait(timeout) == 0
    return data


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_a_real_terminal_sees_redraws_and_the_final_line(echo: FakeServer) -> None:
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))  # a 60-column terminal
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR  # bytes as written: no "\n" -> "\r\n" translation to confuse the count
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    try:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, echo.url], stdout=subprocess.PIPE, stderr=slave,
                                stdin=subprocess.DEVNULL, env=_child_env())
        os.close(slave)
        slave = -1
        err = _read_all(master, proc).decode()
        assert proc.stdout is not None and proc.stdout.read().strip() == b"1"
        proc.stdout.close()
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
    assert err.startswith("\r0/8 (0%)") or err.startswith("\r[")  # drawn before the first answer
    assert err.endswith("\n") and err.count("\n") == 1  # one line, ended by close()
    shown = frames(err)
    assert len(shown) >= 2 and all(len(f) <= 59 for f in shown)  # fitted to the 60 columns
    assert "8/8 (100%)" in shown[-1] and "1 error" in shown[-1]
    assert "\x1b" not in err  # NO_COLOR


def test_a_pipe_gets_plain_lines(echo: FakeServer) -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD, echo.url], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env={**_child_env(), "NO_COLOR": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"
    assert not CONTROL.search(proc.stderr)
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("8/8 (100%)") and "1 error " in last


@pytest.mark.parametrize("bad", [{"total": True}, {"total": 2.5}, {"total": "5"}, {"total": -1}, {"initial": -2}])
def test_counts_are_whole_numbers(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be a whole number >= 0"):
        ProgressBar(stream=io.StringIO(), **bad)  # type: ignore[arg-type]


def test_update_refuses_negative_counts_and_a_label_stays_on_one_line() -> None:
    out = io.StringIO()
    bar = ProgressBar(10, stream=out, label="two\nlines")
    with pytest.raises(ValueError, match="done must be"):
        bar.update(done=-5)
    bar.advance()
    bar.close()
    assert "two lines" in out.getvalue() and "two\nlines" not in out.getvalue()
