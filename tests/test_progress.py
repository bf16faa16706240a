"""ProgressBar with an injected clock, on a StringIO and on a fake terminal."""

from __future__ import annotations

import io
import re
import threading

import pytest

from mirror_providers.progress import LOG_INTERVAL_S, REDRAW_INTERVAL_S, ProgressBar

from .fakes import Clock

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
