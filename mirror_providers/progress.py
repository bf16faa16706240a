"""A dependency-free progress bar for batches (``map_sync(..., progress=True)``, the batch CLI).

It shows done/total, percent, rate, ETA, errors so far and elapsed time. On a terminal it redraws
one line in place with ``\\r`` (at most every ``REDRAW_INTERVAL_S``, fitted to the terminal's
width); anywhere else (a file, a pipe, ``TERM=dumb``) it writes plain lines, one per
``LOG_PERCENT_STEP`` percent or ``LOG_INTERVAL_S`` seconds, and a final one, with no control
characters. ``NO_COLOR`` turns off the one colour it uses (a red error count).

Drawing must never break the work it reports on: a stream that fails (a closed stderr, a broken
pipe, an encoding it cannot write) makes the bar stop drawing, silently. The clock is injectable,
so tests never sleep. All methods may be called from several threads.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["LOG_INTERVAL_S", "LOG_PERCENT_STEP", "REDRAW_INTERVAL_S", "ProgressBar"]

REDRAW_INTERVAL_S = 0.1  # a terminal line is redrawn at most ten times a second
LOG_INTERVAL_S = 10.0  # a plain line at least this often while items finish...
LOG_PERCENT_STEP = 10  # ...and one each time the percentage passes a multiple of this
_MIN_BAR = 10  # narrower than this the bar is left out and only the numbers are shown
_MAX_BAR = 30
_RED, _RESET = "\x1b[31m", "\x1b[0m"


def _duration(seconds: float) -> str:
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _rate(per_s: float | None) -> str:
    if per_s is None:
        return "-/s"
    return f"{per_s:.1f}/s" if per_s >= 1 else f"{per_s * 60:.1f}/min"  # slow model calls read better per minute


def _count(value: object, name: str) -> None:
    """A count is a whole number >= 0 (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")


def _is_terminal(stream: TextIO) -> bool:
    if os.environ.get("TERM") == "dumb":  # a dumb terminal cannot be redrawn: treated as a file
        return False
    try:
        return bool(stream.isatty())
    except Exception:  # closed (ValueError) or a file-like object without a terminal behind it
        return False


class ProgressBar:
    """Progress of a batch, drawn on ``stream`` (stderr by default).

    Example::

        with ProgressBar(total=len(items), label="batch") as bar:
            for item in items:
                bar.advance(ok=work(item))

    Args:
        total: how many items the batch has (``initial`` included), or None when unknown (no
            percent, bar or ETA then; ``update(total=...)`` can set it later).
        stream: where to draw; ``None`` means ``sys.stderr`` as it is when the bar is made.
        clock: seconds from a monotonic clock (injectable for tests).
        label: shown before the numbers.
        initial: items already done before this run (a resumed batch): counted in done/total
            and the percentage, but not in the rate and ETA, which measure this run's work.
    """

    def __init__(self, total: int | None = None, *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, label: str = "", initial: int = 0) -> None:
        _count(initial, "initial")
        if total is not None:
            _count(total, "total")
        if not isinstance(label, str):
            raise ValueError(f"label must be text, got {type(label).__name__}")
        self._stream = sys.stderr if stream is None else stream
        self._clock = clock
        self._label = " ".join(label.split())  # one line, whatever the label holds
        self._initial = initial
        self._total = total
        self._done = initial
        self._errors = 0
        self._lock = threading.Lock()
        self._broken = self._stream is None  # no stderr at all (pythonw): nothing is drawn
        self._tty = not self._broken and _is_terminal(self._stream)
        self._color = self._tty and not os.environ.get("NO_COLOR")  # https://no-color.org: set and not empty
        self._closed = False
        self._start = clock()
        self._last_draw = self._start  # when the line (or the last plain line) was drawn
        self._drawn_width = 0  # characters of the terminal line now on screen (cleared on redraw)
        self._bar = (0, _MAX_BAR)  # (terminal width, bar size) last drawn
        self._last_step = self._step()
        self._last_line = ""
        if self._tty:
            with self._lock:
                self._draw(force=True)

    # -- state ---------------------------------------------------------------------------------

    @property
    def total(self) -> int | None:
        """How many items the batch has, or None when unknown."""
        return self._total

    @property
    def done(self) -> int:
        """Items finished so far (``initial`` included), successes and errors alike."""
        return self._done

    @property
    def errors(self) -> int:
        """How many of the finished items failed."""
        return self._errors

    @property
    def elapsed_s(self) -> float:
        """Seconds since the bar was made."""
        return max(0.0, self._clock() - self._start)

    @property
    def rate(self) -> float | None:
        """Items per second finished by this run (``initial`` left out), or None before the first."""
        return self._rate_at(self.elapsed_s)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate, or None when the total or the rate is unknown."""
        return self._eta_at(self.elapsed_s)

    def _rate_at(self, elapsed: float) -> float | None:
        finished = self._done - self._initial
        return finished / elapsed if finished > 0 and elapsed > 0 else None

    def _eta_at(self, elapsed: float) -> float | None:
        rate = self._rate_at(elapsed)
        if self._total is None or rate is None:
            return None
        return max(0, self._total - self._done) / rate

    def _step(self) -> int:
        if not self._total:
            return 0
        return min(self._done, self._total) * 100 // self._total // LOG_PERCENT_STEP

    # -- updates -------------------------------------------------------------------------------

    def advance(self, ok: bool = True) -> None:
        """One more item finished; ``ok=False`` counts it as an error too."""
        with self._lock:
            self._done += 1
            self._errors += not ok
            self._draw()

    def update(self, done: int | None = None, *, errors: int | None = None, total: int | None = None) -> None:
        """Set the counts (each one given replaces the current value) and redraw if it is time.

        Args:
            done: items finished so far, ``initial`` included.
            errors: how many of them failed.
            total: the batch's size, once it is known.
        """
        for value, name in ((done, "done"), (errors, "errors"), (total, "total")):
            if value is not None:
                _count(value, name)
        with self._lock:
            if done is not None:
                self._done = done
            if errors is not None:
                self._errors = errors
            if total is not None:
                self._total = total
            self._draw()

    def close(self) -> None:
        """Draw the final state (always) and end the line. Calling it again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._draw(force=True)
            if self._tty:
                self._write("\n")

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- drawing (the lock is held) ------------------------------------------------------------

    def _draw(self, force: bool = False) -> None:
        if self._broken or (self._closed and not force):
            return
        now = self._clock()
        finished = self._total is not None and self._done >= self._total
        if self._tty:
            if force or finished or now - self._last_draw >= REDRAW_INTERVAL_S:
                self._redraw(now)
            return
        step = self._step()
        passed = step > self._last_step and not finished  # the 100% line is the final one, from close()
        timed = now - self._last_draw >= LOG_INTERVAL_S and self._done > self._initial
        if force or passed or timed:
            line = self._text(now, final=self._closed)
            self._last_step, self._last_draw = step, now
            if line != self._last_line:
                self._last_line = line
                self._write(line + "\n")

    def _redraw(self, now: float) -> None:
        width = max(1, self._width() - 1)  # the last column is left free: some terminals wrap there
        text = self._text(now, final=self._closed, width=width)
        plain = text.replace(_RED, "").replace(_RESET, "")
        # Spaces clear what a longer line left behind (no more than fit: the terminal may have shrunk).
        pad = " " * max(0, min(self._drawn_width, width) - len(plain))
        self._last_draw = now
        self._drawn_width = len(plain)
        self._write("\r" + text + pad)

    def _width(self) -> int:
        try:
            columns = int(os.environ.get("COLUMNS", "0"))  # the user's say first, as shutil does
        except ValueError:
            columns = 0
        if columns <= 0:
            try:  # the stream's own terminal: stdout (what shutil asks) may be redirected
                columns = os.get_terminal_size(self._stream.fileno()).columns
            except (AttributeError, OSError, ValueError):
                columns = 0
        return columns if columns > 0 else shutil.get_terminal_size().columns

    def _text(self, now: float, *, final: bool, width: int | None = None) -> str:
        elapsed = max(0.0, now - self._start)
        total = self._total
        count = f"{self._done}/{total if total is not None else '?'}"
        if total is not None:
            percent = 100 if total == 0 else min(self._done, total) * 100 // total
            count += f" ({percent}%)"
        errors = f"{self._errors} error{'' if self._errors == 1 else 's'}"
        eta = self._eta_at(elapsed)
        parts = {"label": self._label, "count": count, "rate": _rate(self._rate_at(elapsed)),
                 "eta": "" if final or total is None else f"ETA {_duration(eta) if eta is not None else '-'}",
                 "errors": errors, "elapsed": f"elapsed {_duration(elapsed)}"}
        if width is not None:
            parts = self._fit(parts, width)
        shown = "  ".join(p for p in parts.values() if p)
        if width is not None and len(shown) > width:
            return shown[:width]  # not even the counts fit: cut, never wrap
        if self._color and self._errors:
            parts["errors"] = _RED + errors + _RESET
            shown = "  ".join(p for p in parts.values() if p)
        return shown

    def _fit(self, parts: dict[str, str], width: int) -> dict[str, str]:
        """Leave out the least useful parts until the line fits; add a bar in the room left."""
        for name in ("elapsed", "rate", "label", "eta"):
            if len("  ".join(p for p in parts.values() if p)) <= width:
                break
            parts = {**parts, name: ""}
        room = width - len("  ".join(p for p in parts.values() if p)) - 4  # "[", "]" and two spaces
        if parts["rate"]:  # before the first item: room for the numbers to come
            room -= max(0, len("99.9/s") - len(parts["rate"]))
        if parts["eta"]:
            room -= max(0, len("ETA 0:00") - len(parts["eta"]))
        # The bar only ever shrinks at one width, so it does not jump as the numbers grow and shrink.
        last_width, last_size = self._bar
        size = min(room, _MAX_BAR, width // 3, last_size if last_width == width else _MAX_BAR)
        self._bar = (width, size)
        if self._total and size >= _MIN_BAR:
            full = min(self._done, self._total) * size // self._total
            bar = "[" + "#" * full + "-" * (size - full) + "]"
            parts = {"label": parts["label"], "bar": bar, **{k: v for k, v in parts.items() if k != "label"}}
        return parts

    def _write(self, text: str) -> None:
        if self._broken:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except Exception:  # a broken pipe, a closed stderr, an unencodable label: stop drawing, work on
            self._broken = True
