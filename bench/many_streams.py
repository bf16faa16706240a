"""Many slow async streams open at once, and awaited calls beside them (issue 21).

    python bench/run.py --only streams1k

In one ``asyncio.run``: ``calls`` ``generate()`` calls, awaited one after another, are timed alone
(the baseline: ``reps`` rounds before the streams open and ``reps`` after they are closed, against
drift), then ``reps`` rounds while ``streams`` ``provider.stream()`` iterators are open on the same
loopback server, each sent an event every ``gap_ms`` for as long as the measurement lasts and
consumed concurrently. The calls go through the streaming provider itself and through another
vendor's provider on the same (shared) transport: what users do. Then every stream's consumer
awaits a call inside its ``async for`` (more of them than the thread pool has workers: a deadlock
if streams held workers), and the streams end, half through ``aclosing``, half by ``break``.

The rows' ratios come from paired blocks, taken while the streams are open: ``BLOCK`` calls of a
target while the streams send, then ``BLOCK`` while the server holds them open but silent
(``/bench/pause``), in ABBA order. The machine drifts by tens of percent within a second, so rounds
seconds apart (the calls alone before and after the streams, then beside them) measure drift as
much as load. Those rounds are still run and reported beside the paired ratio. So is what silent
open streams cost against none, which is what the paired baseline leaves out.

A control follows: the same calls beside as many streams of the same server read by the cheapest
client there is (raw sockets, one selector thread that only drains them). It says what the
machine and the server cost the calls when the streams' reading costs almost nothing: the part of
the gap between the rows and 1.0x that the library's reading of its streams causes.

Reported: median and p99 latency; peak RSS per open stream ((VmRSS with the streams open - before)
/ streams); threads before, open and after (no stream's reader may be left); urllib3's
"connection pool is full" warnings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import selectors
import socket
import statistics
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.provider import Provider

__all__ = ["PoolFull", "bench_many_streams"]

R = TypeVar("R")
KEY = "sk-bench-key"
HANG_S = 120.0  # far beyond what a run needs: reaching it is a deadlock, reported as such
BLOCK = 20  # calls in one block of the paired measurement


class PoolFull(logging.Handler):
    """Counts urllib3's "connection pool is full" warnings (bench/run.py's pool rows use it too)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "pool is full" in record.getMessage():
            self.count += 1


@dataclass
class _Run:
    baseline: dict[str, list[float]] = field(default_factory=dict)
    loaded: dict[str, list[float]] = field(default_factory=dict)
    rss_kb: list[int] = field(default_factory=lambda: [0, 0, 0])  # before; open (peak); a call inside each too
    threads: list[int] = field(default_factory=list)  # before, open, after
    readers_left: int = 0  # stream reader threads still alive once every stream was closed
    events_per_s: float = 0.0  # what the streams received while the calls ran
    cores_used: float = 0.0  # this process's CPU time / wall time while the calls ran beside the streams
    inner_s: float = 0.0  # how long one call inside every stream's loop took, all of them
    ended: int = 0  # streams that ended on their own (the server must outlast the run)
    phase: str = "opening the streams"  # what is being waited for now
    deadlock: str = ""  # what timed out
    control: dict[str, list[float]] = field(default_factory=dict)  # beside streams read by a selector thread
    control_events_per_s: float = 0.0
    # Paired blocks (the rows' verdict): calls beside the same open streams, silent / sending.
    silent: dict[str, list[float]] = field(default_factory=dict)
    sending: dict[str, list[float]] = field(default_factory=dict)
    control_silent: dict[str, list[float]] = field(default_factory=dict)
    control_sending: dict[str, list[float]] = field(default_factory=dict)


def rss_kb() -> int:
    """This process's resident set now (VmRSS), in KB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _readers() -> int:
    return sum(t.name == "mirror-stream" for t in threading.enumerate())


Call = Callable[[], Awaitable[Any]]


async def _timed(targets: dict[str, Call], calls: int, rounds: int, into: dict[str, list[float]]) -> None:
    """``rounds`` rounds of ``calls`` calls one after another, each round through every target."""
    for _ in range(rounds):
        for name, call in targets.items():
            out = into.setdefault(name, [])
            for _ in range(calls):
                start = time.perf_counter()
                result = await asyncio.wait_for(call(), HANG_S)
                out.append(time.perf_counter() - start)
                assert result


class _Pacer:
    """Holds the server's paced streams open but silent, or lets them send (``bench/server.py``)."""

    def __init__(self, url: str) -> None:
        self._session = requests.Session()
        self._url = url

    async def flowing(self, on: bool) -> None:
        path = "/bench/resume" if on else "/bench/pause"
        await asyncio.get_running_loop().run_in_executor(None, lambda: self._session.post(
            self._url + path, timeout=HANG_S).raise_for_status())


async def _paired(targets: dict[str, Call], calls: int, rounds: int, pacer: _Pacer, silent: dict[str, list[float]],
                  sending: dict[str, list[float]], gap_ms: int) -> None:
    """The calls beside the open streams in alternating blocks, the streams silent in one and
    sending in the next (ABBA order), ``calls * rounds`` calls each way per target.

    The machine this runs on drifts by tens of percent over fractions of a second (per-block
    ratios of the cheapest load spread from 0.7x to 1.7x); blocks of a few tens of milliseconds,
    side by side, see the same drift, where rounds seconds apart do not. The silent blocks are
    the calls alone but for idle open sockets (the rows report what those cost against no
    streams at all)."""
    block = max(1, min(BLOCK, calls))
    settle = min(0.03, gap_ms / 1000 / 4)  # the events already on their way are read; then it is quiet
    try:
        for pair in range(max(1, calls * rounds // block)):
            for on in ((False, True) if pair % 2 else (True, False)):
                await pacer.flowing(on)
                await asyncio.sleep(settle)
                await _timed(targets, block, 1, sending if on else silent)
    finally:
        await pacer.flowing(True)


def _bare(url: str) -> Call:
    """The same call through a bare ``requests.Session`` on asyncio's own executor: what the
    machine and the server add beside the streams, without this library in the call."""
    local = threading.local()
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})

    def post() -> Any:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        return session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=HANG_S).json()

    return lambda: asyncio.get_running_loop().run_in_executor(None, post)


class _Streams:
    """``n`` consumers of slow streams; each can be told to await a call inside its loop, or to stop."""

    def __init__(self, llm: Provider, n: int) -> None:
        self.llm, self.n = llm, n
        self.opened, self.inner_done, self.stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.call_inside = False
        self.first = self.inner = self.events = self.ended = 0
        self.tasks = [asyncio.ensure_future(self._consume(i)) for i in range(n)]

    async def _consume(self, i: int) -> None:
        stream: Any = self.llm.stream("hi")
        # Odd consumers close their stream through aclosing; even ones just leave the loop, as most
        # code does, and the event loop's async-generator finalizer closes it.
        async with contextlib.aclosing(stream) if i % 2 else contextlib.nullcontext(stream):
            seen, called = 0, False
            async for _chunk in stream:
                seen += 1
                self.events += 1
                if seen == 1:
                    self.first += 1
                    if self.first == self.n:
                        self.opened.set()
                if self.call_inside and not called:  # one call inside the stream's own loop
                    called = True
                    assert (await self.llm.generate("inside")).content
                    self.inner += 1
                    if self.inner == self.n:
                        self.inner_done.set()
                if self.stop.is_set():
                    return
            self.ended += 1


class _CheapStreams:
    """``n`` streams of the same server read by the cheapest client: raw sockets, the request
    written by hand, one selector thread that drains whatever arrives and counts events."""

    def __init__(self, port: int, n: int, gap_ms: int) -> None:
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                           "stream": True}).encode()
        request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   f"Content-Type: application/json\r\nAuthorization: Bearer {KEY}\r\n"
                   f"x-bench-chunks: 1000000\r\nx-bench-chunk-delay-ms: {gap_ms}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        self.events = 0
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._socks = []
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", port), timeout=HANG_S)
            sock.sendall(request)
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
            self._socks.append(sock)
        self._thread = threading.Thread(target=self._drain, name="bench-cheap-streams", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.2):
                with contextlib.suppress(BlockingIOError):
                    self.events += key.fileobj.recv(1 << 16).count(b"\n\n")  # type: ignore[union-attr]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(HANG_S)
        for sock in self._socks:
            sock.close()
        self._selector.close()


async def _control(port: int, targets: dict[str, Call], streams: int, calls: int, rounds: int, gap_ms: int,
                   run: _Run, pacer: _Pacer) -> None:
    cheap = await asyncio.get_running_loop().run_in_executor(None, _CheapStreams, port, streams, gap_ms)
    try:
        await asyncio.sleep(2 * gap_ms / 1000)
        events, start = cheap.events, time.perf_counter()
        await _timed(targets, calls, rounds, run.control)
        run.control_events_per_s = (cheap.events - events) / (time.perf_counter() - start)
        await _paired(targets, calls, rounds, pacer, run.control_silent, run.control_sending, gap_ms)
    finally:
        cheap.close()


async def _measure(port: int, streams: int, calls: int, rounds: int, gap_ms: int) -> _Run:
    url = f"http://127.0.0.1:{port}"
    pacing = {"x-bench-chunks": "1000000", "x-bench-chunk-delay-ms": str(gap_ms)}
    llm = OpenAIProvider(model="gpt-4o-mini", base_url=url + "/v1", api_key=KEY, headers=pacing)
    other = AnthropicProvider(model="claude-sonnet-4-5", base_url=url, api_key=KEY)  # the same shared transport
    targets: dict[str, Call] = {"same provider": lambda: llm.generate("hi"),
                                "another provider": lambda: other.generate("hi"),
                                "bare requests": _bare(url + "/v1/chat/completions")}
    run = _Run()
    pacer = _Pacer(url)
    await _timed(targets, max(5, calls // 5), 1, {})  # warm up: workers started, connections open
    await _timed(targets, calls, rounds, run.baseline)
    run.threads.append(threading.active_count())
    run.rss_kb[0] = rss_kb()
    load = _Streams(llm, streams)
    try:
        await _loaded(load, targets, calls, rounds, gap_ms, run, pacer)
    except asyncio.TimeoutError:
        run.deadlock = run.phase
    load.stop.set()
    try:
        await asyncio.wait_for(asyncio.gather(*load.tasks), HANG_S)
    except asyncio.TimeoutError:
        run.deadlock = run.deadlock or "closing the streams"
    run.ended = load.ended
    deadline = time.monotonic() + 30  # each reader ends just after its stream is closed
    while _readers() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    run.readers_left = _readers()
    run.threads.append(threading.active_count())
    await _timed(targets, calls, rounds, run.baseline)  # the baseline again, against drift
    run.phase = "calls beside streams read by a selector thread"
    await _control(port, targets, streams, calls, rounds, gap_ms, run, pacer)
    return run


async def _loaded(load: _Streams, targets: dict[str, Call], calls: int, rounds: int, gap_ms: int,
                  run: _Run, pacer: _Pacer) -> None:
    await asyncio.wait_for(load.opened.wait(), HANG_S)
    await asyncio.sleep(2 * gap_ms / 1000)  # settled: what piled up while the others opened is read
    run.rss_kb[1] = rss_kb()
    run.threads.append(threading.active_count())
    events, start, cpu = load.events, time.perf_counter(), time.process_time()
    run.phase = "calls beside the streams"
    await _timed(targets, calls, rounds, run.loaded)
    wall = time.perf_counter() - start
    run.events_per_s = (load.events - events) / wall
    run.cores_used = (time.process_time() - cpu) / wall
    run.rss_kb[1] = max(run.rss_kb[1], rss_kb())
    run.phase = "calls beside the streams, paired blocks"
    await _paired(targets, calls, rounds, pacer, run.silent, run.sending, gap_ms)
    await asyncio.sleep(2 * gap_ms / 1000)  # every stream sending again before the calls inside
    start = time.perf_counter()
    load.call_inside = True
    run.phase = "a call inside each stream's loop"
    await asyncio.wait_for(load.inner_done.wait(), HANG_S)
    run.inner_s = time.perf_counter() - start
    run.rss_kb[2] = rss_kb()


def bench_many_streams(port: int, row: Callable[..., R], *, streams: int = 1000, calls: int = 100,
                       rounds: int = 5, gap_ms: int = 200) -> list[R]:
    """Rows for ``streams`` open slow streams and ``calls`` awaited calls beside them; ``row`` is
    bench/run.py's ``Row``."""
    handler = PoolFull()
    logging.getLogger("urllib3").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = asyncio.run(_measure(port, streams, calls, rounds, gap_ms))
    finally:
        logging.getLogger("urllib3").removeHandler(handler)
    full = handler.count + sum("pool is full" in str(w.message) for w in caught)
    clean = not run.deadlock and not run.readers_left and not full and not run.ended
    health = (f"threads {' -> '.join(map(str, run.threads))} (before, open, after), readers left "
              f"{run.readers_left}; pool-full warnings {full}; {run.events_per_s:.0f} events/s received, this "
              f"process busy {run.cores_used:.2f} cores meanwhile (of {os.cpu_count()}, the server beside it); "
              f"a call inside each stream's loop: all {streams} in {run.inner_s:.2f} s"
              + (f"; DEADLOCK: {run.deadlock}" if run.deadlock else "")
              + (f"; {run.ended} streams ended early" if run.ended else ""))
    def ratio(over: dict[str, list[float]], under: dict[str, list[float]], name: str) -> float:
        if not over.get(name) or not under.get(name):
            return float("nan")
        return statistics.median(over[name]) / statistics.median(under[name])

    bare = ratio(run.sending, run.silent, "bare requests")
    classic = {name: ratio(run.loaded, run.baseline, name) for name in run.baseline}
    idle = {name: ratio(run.silent, run.baseline, name) for name in run.baseline}
    control = {name: ratio(run.control_sending, run.control_silent, name) for name in run.baseline}
    control_classic = {name: ratio(run.control, run.baseline, name) for name in run.baseline}
    method = (f"paired blocks: {BLOCK} calls beside the open streams while they send, then {BLOCK} while the server "
              f"holds them silent (ABBA), {calls * rounds} calls each way")
    rows = []
    for name in run.baseline:
        silent, sending = run.silent.get(name) or [float("nan")], run.sending.get(name) or [float("nan")]
        b, o = statistics.median(silent), statistics.median(sending)
        p99 = f"p99 {pct(silent, 0.99) * 1000:.2f} -> {pct(sending, 0.99) * 1000:.2f} ms"
        others = (f"rounds seconds apart instead (the calls alone before and after the streams, then beside them): "
                  f"{classic[name]:.3f}x; silent open streams against none: {idle[name]:.3f}x")
        extra = {"p99_ms": [pct(silent, 0.99) * 1000, pct(sending, 0.99) * 1000], "rounds_ratio": classic[name],
                 "idle_streams_ratio": idle[name]}
        if name == "bare requests":  # the floor: what the library's calls are up against
            rows.append(row(f"bare requests beside {streams} open streams (info)", b * 1000, o * 1000, "ms", o / b,
                            "-", None, f"{p99}; the same calls through a bare requests.Session: what the machine, "
                                       f"the server and the streams add without this library in the call; {others}",
                            extra))
            continue
        rows.append(row(f"generate() beside {streams} open streams: {name}", b * 1000, o * 1000, "ms", o / b,
                        "<= 1.1x", clean and o / b <= 1.1,
                        f"{method}; baseline: the same calls beside the same streams held silent; {p99}; {others}; "
                        f"bare requests {bare:.3f}x beside the same streams; "
                        f"{control.get(name, float('nan')):.3f}x beside streams read by the cheapest client (the "
                        f"control row); an event every {gap_ms} ms per stream; {health}",
                        {**extra, "pool_full": full, "threads": run.threads, "readers_left": run.readers_left,
                         "deadlock": run.deadlock}))
    if run.control_sending:
        ours = max(v for k, v in control.items() if k != "bare requests")
        rows.append(row(f"generate() beside {streams} selector-read streams (control)",
                        1.0, ours, "x", ours, "-", None,
                        "ratio: the calls beside the same number of the same server's streams, read by raw sockets "
                        "and one selector thread that only drains them, sending over silent (paired blocks): "
                        + ", ".join(f"{k} {v:.3f}x" for k, v in control.items())
                        + "; in rounds seconds apart against no streams: "
                        + ", ".join(f"{k} {v:.3f}x" for k, v in control_classic.items())
                        + f"; {run.control_events_per_s:.0f} events/s received. What the machine and the server "
                        "cost the calls when reading the streams costs almost nothing",
                        {"ratios": control, "rounds_ratios": control_classic,
                         "events_per_s": run.control_events_per_s}))
    before, open_kb, inner_kb = run.rss_kb
    per_stream = (open_kb - before) / streams
    rows.append(row(f"peak RSS per open stream ({streams} open)", before / 1024, open_kb / 1024, "MB", per_stream,
                    "<= 64 KB", per_stream <= 64,
                    f"ratio column: KB per open stream ((peak VmRSS while open - before) / streams); with a call "
                    f"awaited inside each stream's loop too: {(inner_kb - before) / streams:.1f} KB",
                    {"kb_per_stream": per_stream, "kb_per_stream_with_inner_calls": (inner_kb - before) / streams}))
    return rows
