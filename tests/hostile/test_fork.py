"""Pre-fork servers (gunicorn --preload, Celery prefork, multiprocessing's fork): a child process
must open its own connections and start its own worker threads.

Each test makes the parent hold pooled keep-alive connections, forks real children, and has parent
and children call the same loopback server at once. The server answers every request with its own
prompt, so an answer read off a socket the two processes share shows up as someone else's text.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import pytest

from mirror_providers.openai import OpenAIProvider

from ..server import FakeServer, Received, Reply, openai_completion, openai_sse

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork only")

CHILD_HANG_S = 30  # a child still running after this was stuck: it kills itself (exit by SIGALRM)


def _echo(req: Received, reply: Reply) -> None:
    body = req.json()
    prompt = body["messages"][-1]["content"]
    time.sleep(0.002)  # the server thinks a little, so both processes have requests in flight
    if body.get("stream"):
        reply.stream(200, openai_sse(prompt), {"Content-Type": "text/event-stream"})
    else:
        reply.json(200, openai_completion(prompt))


@pytest.fixture
def echo() -> Iterator[FakeServer]:
    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", _echo)
        yield server


def _provider(server: FakeServer) -> OpenAIProvider:
    return OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0)


def _warm(llm: OpenAIProvider, n: int) -> None:
    """Leave ``n`` idle keep-alive connections in the shared pool."""
    threads = [threading.Thread(target=llm.generate_sync, args=(f"warm {i}",)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _fork(job: Callable[[], None]) -> int:
    """Run ``job`` in a forked child; its exit status says how it went (0: passed, 1: raised)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded process forked": the point
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)  # not pytest-timeout's handler: just die
            signal.alarm(CHILD_HANG_S)
            job()
            code = 0
        except BaseException as exc:  # reported on stderr; the parent sees the exit status
            os.write(2, f"child failed: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(code)
    return pid


def _status(pid: int) -> str:
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)} (hung)"
    return "ok" if os.WEXITSTATUS(status) == 0 else f"exit {os.WEXITSTATUS(status)}"


def _own_answers(llm: OpenAIProvider, who: str, n: int) -> None:
    for i in range(n):
        prompt = f"{who} question {i}"
        got = llm.generate_sync(prompt).content
        assert got == prompt, f"{who} asked {prompt!r} and was answered {got!r}"
        streamed = "".join(c.content for c in llm.stream_sync(prompt + " streamed"))
        assert streamed == prompt + " streamed", f"{who} streamed {streamed!r}"


def test_parent_and_forked_children_each_read_their_own_answers(echo: FakeServer) -> None:
    llm = _provider(echo)
    _warm(llm, 6)
    connections_before = echo.connections
    children = [_fork(lambda i=i: _own_answers(llm, f"child {i}", 20)) for i in range(3)]  # type: ignore[misc]
    _own_answers(llm, "parent", 20)
    assert [_status(pid) for pid in children] == ["ok"] * 3
    # Each child opened connections of its own instead of writing on the parent's.
    assert echo.connections >= connections_before + 3


def test_a_forked_child_runs_awaited_calls_and_batches_on_workers_of_its_own(echo: FakeServer) -> None:
    llm = _provider(echo)
    # The parent's thread pool is running (and has idle threads) when the fork happens.
    assert asyncio.run(llm.generate("parent awaited")).content == "parent awaited"
    assert [r.content for r in llm.map_sync(["p1", "p2", "p3"])] == ["p1", "p2", "p3"]  # type: ignore[union-attr]

    def child() -> None:
        # One call at a time first: the parent's idle workers, which the child does not have,
        # would be counted on to take it.
        assert asyncio.run(llm.generate("child awaited")).content == "child awaited"

        async def streamed() -> str:
            return "".join([c.content async for c in llm.stream("child async stream")])

        assert asyncio.run(streamed()) == "child async stream"
        got = llm.map_sync([f"c{i}" for i in range(8)])
        assert [r.content for r in got] == [f"c{i}" for i in range(8)]  # type: ignore[union-attr]

    assert _status(_fork(child)) == "ok"
    # And the parent's own pool still works after its child came and went.
    assert asyncio.run(llm.generate("parent again")).content == "parent again"


def test_a_child_forked_while_the_parent_has_calls_in_flight(echo: FakeServer) -> None:
    llm = _provider(echo)
    _warm(llm, 4)
    stop = threading.Event()
    failures: list[str] = []

    def parent_traffic(n: int) -> None:
        i = 0
        while not stop.is_set():
            prompt = f"parent thread {n} call {i}"
            got = llm.generate_sync(prompt).content
            if got != prompt:
                failures.append(f"{prompt!r} -> {got!r}")
            i += 1

    threads = [threading.Thread(target=parent_traffic, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        children = [_fork(lambda i=i: _own_answers(llm, f"child {i}", 10)) for i in range(4)]  # type: ignore[misc]
        statuses = [_status(pid) for pid in children]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert statuses == ["ok"] * 4
    assert failures == []


def test_a_child_forked_while_another_thread_holds_the_stats_and_pool_locks(echo: FakeServer) -> None:
    """A lock held at the fork stays held in the child, where its holder does not exist: the
    child's first call, its get_stats() and its pool's member choice must still go through."""
    from mirror_providers.pooling import ProviderPool

    llm = _provider(echo)
    pool = ProviderPool([llm, _provider(echo)], strategy="round_robin")
    pool.generate_sync("warm")
    holders = [llm._stats._lock, pool._stats._lock, pool.strategy._lock]  # type: ignore[attr-defined]
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        for lock in holders:
            lock.acquire()
        holding.set()
        release.wait()
        for lock in holders:
            lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait()
    try:
        def child() -> None:
            assert llm.generate_sync("child call").content == "child call"
            assert llm.get_stats().requests >= 1
            assert pool.generate_sync("child pool call").content == "child pool call"
            pool.get_stats()

        status = _status(_fork(child))
    finally:
        release.set()
        holder.join()
    assert status == "ok"
