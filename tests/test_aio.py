"""The sync -> async bridge: running loops, contextvars, backpressure, early stop, errors."""

from __future__ import annotations

import asyncio
import contextvars
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror_providers import _aio

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")
WAIT = 5.0  # upper bound for a thread hand-off; the tests never sleep


def test_run_sync_in_running_loop_with_contextvars() -> None:
    async def main() -> tuple[str, str]:
        VAR.set("from-caller")
        name = await _aio.run_sync(lambda: threading.current_thread().name)
        return name, await _aio.run_sync(VAR.get)

    name, value = asyncio.run(main())
    assert name.startswith("mirror-providers") and value == "from-caller"


def test_items_in_order_and_worker_thread() -> None:
    threads: set[str] = set()

    def gen() -> Iterator[int]:
        for i in range(200):
            threads.add(threading.current_thread().name)
            yield i

    async def main() -> list[int]:
        return [i async for i in _aio.iterate_in_thread(gen, max_buffer=8)]

    assert asyncio.run(main()) == list(range(200))
    assert threads and threads == {"mirror-stream"}  # its own thread, not a pool worker


def test_exception_reraised_unchanged() -> None:
    boom = KeyError("boom")

    def gen() -> Iterator[int]:
        yield 1
        raise boom

    async def main() -> list[int]:
        got = []
        with pytest.raises(KeyError) as info:
            async for i in _aio.iterate_in_thread(gen):
                got.append(i)
        assert info.value is boom
        return got

    assert asyncio.run(main()) == [1]


def test_early_break_closes_iterator_in_worker_thread() -> None:
    closed_in: list[str] = []
    done = threading.Event()

    def gen() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed_in.append(threading.current_thread().name)
            done.set()

    async def main() -> None:
        async for i in _aio.iterate_in_thread(gen, max_buffer=2):
            if i == 3:
                break
        await _aio.run_sync(done.wait, WAIT)

    asyncio.run(main())
    assert closed_in and closed_in[0] == "mirror-stream"


def test_backpressure_bounds_read_ahead() -> None:
    produced = 0
    reached = threading.Event()
    released = threading.Event()

    def gen() -> Iterator[int]:
        nonlocal produced
        try:
            while True:
                produced += 1
                if produced == 6:
                    reached.set()
                yield produced
        finally:
            released.set()

    async def main() -> None:
        agen = _aio.iterate_in_thread(gen, max_buffer=4)
        assert await agen.__anext__() == 1
        await _aio.run_sync(reached.wait, WAIT)
        # buffer of 4 + the one consumed + the one the worker holds while it waits for space
        assert not await _aio.run_sync(released.wait, 0.2) and produced == 6
        await agen.aclose()  # type: ignore[attr-defined]
        await _aio.run_sync(released.wait, WAIT)

    asyncio.run(main())


def test_cancellation_stops_worker() -> None:
    released = threading.Event()
    first = threading.Event()

    def gen() -> Iterator[int]:
        try:
            yield 1
            first.wait(WAIT)
            while True:
                yield 2
        finally:
            released.set()

    async def consume() -> None:
        async for _ in _aio.iterate_in_thread(gen):
            await asyncio.Event().wait()  # blocks until cancelled

    async def main() -> None:
        task = asyncio.create_task(consume())
        await asyncio.sleep(0)
        for _ in range(100):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        first.set()
        assert await _aio.run_sync(released.wait, WAIT)

    asyncio.run(main())


def test_many_streams_on_one_loop_each_get_their_own_items_in_order() -> None:
    # Their readers share the loop's inbox: items of every stream arrive in batches, interleaved.
    def gen(n: int) -> Iterator[tuple[int, int]]:
        for i in range(300):
            yield n, i

    async def consume(n: int) -> list[tuple[int, int]]:
        return [item async for item in _aio.iterate_in_thread(lambda: gen(n), max_buffer=3)]

    async def main() -> list[list[tuple[int, int]]]:
        return await asyncio.gather(*(consume(n) for n in range(100)))

    assert asyncio.run(main()) == [[(n, i) for i in range(300)] for n in range(100)]


def test_a_reader_whose_loop_is_closed_stops_and_closes_its_iterator() -> None:
    stopped, second_posted, released = threading.Event(), threading.Event(), threading.Event()

    def gen() -> Iterator[int]:
        try:
            yield 0
            stopped.wait(WAIT)
            yield 1  # handed to a stopped loop: its delivery is still pending when the loop closes
            second_posted.set()
            i = 2
            while True:
                yield i
                i += 1
        finally:
            released.set()

    loop = asyncio.new_event_loop()  # closed below without closing the stream: nobody listens any more
    agen = _aio.iterate_in_thread(gen, max_buffer=10**9)  # never blocked by backpressure
    try:
        assert loop.run_until_complete(agen.__anext__()) == 0
        stopped.set()
        assert second_posted.wait(WAIT)
    finally:
        loop.close()
    assert released.wait(WAIT)
    asyncio.run(agen.aclose())  # type: ignore[attr-defined]


def test_a_loop_that_cannot_be_weakly_referenced_still_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoWeakKeys(dict):  # type: ignore[type-arg]
        def get(self, key: object, default: object = None) -> object:
            raise TypeError("cannot create weak reference")

    monkeypatch.setattr(_aio, "_inboxes", NoWeakKeys())

    async def main() -> list[int]:
        return [i async for i in _aio.iterate_in_thread(lambda: iter(range(50)), max_buffer=2)]

    assert asyncio.run(main()) == list(range(50))


def test_library_never_creates_or_runs_an_event_loop() -> None:
    root = Path(__file__).resolve().parent.parent / "mirror_providers"
    forbidden = re.compile(r"new_event_loop|asyncio\.run\(|run_until_complete|get_event_loop\(|set_event_loop")
    offenders = [str(p) for p in root.rglob("*.py") if forbidden.search(p.read_text())]
    assert offenders == []
    users = [p.name for p in root.rglob("*.py") if re.search(r"^\s*import asyncio|^\s*from asyncio", p.read_text(), re.M)]
    assert users == ["_aio.py"]


def test_set_max_workers() -> None:
    old = _aio.max_workers()
    try:
        _aio.set_max_workers(3)
        assert _aio.get_executor()._max_workers == 3
        with pytest.raises(ValueError):
            _aio.set_max_workers(0)
    finally:
        _aio.set_max_workers(old)


def test_map_blocking_reports_each_result_then_the_count_in_the_calling_thread() -> None:
    seen: list[tuple[str, int, object]] = []
    caller = threading.current_thread()

    def on_result(i: int, result: int) -> None:
        assert threading.current_thread() is caller
        seen.append(("result", i, result))

    def on_progress(done: int, total: int) -> None:
        seen.append(("progress", done, total))

    assert _aio.map_blocking(lambda x: x * 10, [0, 1, 2], 1, on_progress, on_result=on_result) == [0, 10, 20]
    assert seen == [("result", 0, 0), ("progress", 1, 3), ("result", 1, 10), ("progress", 2, 3),
                    ("result", 2, 20), ("progress", 3, 3)]  # one worker: in order


def test_map_blocking_stops_both_callbacks_when_one_raises() -> None:
    calls: list[int] = []

    def on_result(i: int, result: int) -> None:
        calls.append(i)
        if i == 1:
            raise KeyError("bar broke")

    with pytest.raises(KeyError):
        _aio.map_blocking(lambda x: x, [0, 1, 2, 3], 1, None, on_result=on_result)
    assert calls == [0, 1]
