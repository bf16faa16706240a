"""Errors travel and batches keep their results (issue 13, part B).

* Every error class, including each in-stream class ``stream_error_class`` makes at run time,
  survives ``pickle`` with its class and every attribute: a ``ProcessPoolExecutor`` caller gets
  the typed error, not a ``PicklingError``.
* An ``on_progress`` callback that raises inside ``map_sync`` loses no result and orphans no call:
  the batch runs to its end and a ``CallbackError`` carries every result.
"""

from __future__ import annotations

import json
import multiprocessing
import pickle
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from mirror_providers import _aio
from mirror_providers import errors as E
from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.base import CallbackError, GenerationResult, ProviderError
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain
from mirror_providers.pooling.provider import Attempt

from ..server import FakeServer, Received, Reply, anthropic_sse, openai_completion

# -- pickling every class ----------------------------------------------------------------------


def _tree() -> list[type[ProviderError]]:
    """Every class errors.py defines, walked from the root (not read off a list that could lag)."""
    seen: list[type[ProviderError]] = []
    todo: list[type[ProviderError]] = [E.ProviderError]
    while todo:
        cls = todo.pop()
        if cls not in seen and cls.__module__ == E.__name__:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return sorted(seen, key=lambda c: c.__name__)


STATIC = [c for c in _tree() if not issubclass(c, E.StreamError) or not issubclass(c, E.APIError)]
API_CLASSES = [c for c in STATIC if issubclass(c, E.APIError)]
ALL = STATIC + [E.stream_error_class(c) for c in API_CLASSES]


def _full(cls: type[ProviderError]) -> ProviderError:
    """An instance with every attribute set to something other than its default."""
    exc: ProviderError
    if issubclass(cls, E.APIError):
        exc = cls("it broke", provider="anthropic", model="claude-x", status=529, request_id="req_1",
                  retry_after=1.5, error_type="overloaded_error", error_code="busy", body='{"e": 1}',
                  should_retry=not cls.retryable)
    elif cls is E.AllProvidersFailedError:
        inner = E.stream_error_class(E.OverloadedError)("inner", provider="openai", status=200)
        exc = cls("all failed", [Attempt("openai", "gpt-x", inner, 0.25)])
        exc.provider, exc.model = "pool", "m"
    elif cls is CallbackError:
        exc = cls("callback failed", results=[E.ServerError("x", status=500), "kept"])
    else:
        exc = cls("it broke", provider="ollama", model="llama3.1")
    exc.chunks_delivered = 3
    return exc


def _attributes(exc: BaseException) -> dict[str, Any]:
    out = {k: v for k, v in vars(exc).items()}
    out["retryable"], out["failover_ok"], out["args"] = exc.retryable, exc.failover_ok, exc.args  # type: ignore[attr-defined]
    out["str"], out["repr"] = str(exc), repr(exc)
    return out


def _comparable(value: Any) -> Any:
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, Attempt):
        assert value.error is not None
        return (value.provider, value.model, type(value.error), _attributes(value.error), value.elapsed_s)
    if isinstance(value, BaseException):
        return (type(value), _attributes(value))
    return value


def test_the_walk_finds_the_whole_tree() -> None:
    names = {c.__name__ for c in ALL}
    assert {"ProviderError", "RateLimitError", "OverloadedError", "TruncatedStreamError", "CallbackError",
            "AllProvidersFailedError", "OverloadedStreamError", "RateLimitStreamError"} <= names
    assert len(ALL) >= 40


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_every_error_class_round_trips_through_pickle(cls: type[ProviderError], protocol: int) -> None:
    exc = _full(cls)
    back = pickle.loads(pickle.dumps(exc, protocol=protocol))
    assert type(back) is cls
    assert {k: _comparable(v) for k, v in _attributes(back).items()} == \
        {k: _comparable(v) for k, v in _attributes(exc).items()}


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_a_bare_instance_round_trips_too(cls: type[ProviderError]) -> None:
    exc = cls("only a message")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls and str(back) == str(exc) and back.retryable == exc.retryable


def test_a_stream_class_unpickles_in_a_process_that_never_made_it() -> None:
    """The receiving process may not have called ``stream_error_class`` for that class yet."""
    exc = E.stream_error_class(E.ConflictError)("x", status=200)
    data = pickle.dumps(exc)
    E._STREAM_CLASSES.pop(E.ConflictError)
    back = pickle.loads(data)
    assert isinstance(back, E.ConflictError) and isinstance(back, E.StreamError)
    assert type(back) is E.stream_error_class(E.ConflictError)


# -- a typed in-stream error out of a worker process ---------------------------------------------


def _anthropic_overloaded(req: Received, reply: Reply) -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
             "request_id": "req_in_stream"}
    frames = anthropic_sse("one two three")[:4] + [f"event: error\ndata: {json.dumps(error)}\n\n".encode()]
    reply.stream(200, frames, {"Content-Type": "text/event-stream", "request-id": "req_header"})


def stream_in_worker(url: str) -> int:
    """Run in the worker process: stream until the in-stream error (which is raised out of here)."""
    llm = AnthropicProvider(api_key="sk-test", base_url=url, max_retries=0)
    got = 0
    for _ in llm.stream_sync("hi"):
        got += 1
    return got


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_typed_in_stream_error_crosses_a_process_pool(method: str) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    with FakeServer() as server, warnings.catch_warnings(), \
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method)) as pool:
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "multi-threaded process forked"
        server.route("POST", "/v1/messages", _anthropic_overloaded)
        with pytest.raises(E.OverloadedError) as caught:
            pool.submit(stream_in_worker, server.url).result(timeout=60)
    err = caught.value
    assert type(err) is E.stream_error_class(E.OverloadedError)
    assert isinstance(err, E.StreamError)
    assert (err.provider, err.status, err.error_type, err.request_id) == (
        "anthropic", 200, "overloaded_error", "req_in_stream")
    assert err.chunks_delivered == 2 and err.retryable and err.failover_ok
    assert "Overloaded" in str(err)


# -- on_progress that raises inside map_sync -----------------------------------------------------


def _slow_echo(release: threading.Event) -> Any:
    def route(req: Received, reply: Reply) -> None:
        prompt = req.json()["messages"][-1]["content"]
        if prompt.startswith("slow"):
            release.wait(10)  # held until the callback has raised: the call is in flight then
        if prompt == "fail":
            reply.json(500, {"error": {"message": "boom", "type": "server_error"}})
            return
        reply.json(200, openai_completion(prompt))

    return route


@pytest.fixture
def batch_server() -> Iterator[tuple[FakeServer, threading.Event]]:
    release = threading.Event()
    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", _slow_echo(release))
        yield server, release
        release.set()


def _raising_at(n: int, release: threading.Event | None = None) -> tuple[Any, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []

    def on_progress(done: int, total: int) -> None:
        calls.append((done, total))
        if done == n:
            if release is not None:
                release.set()  # the slow calls are still in flight: they answer after the raise
            raise ZeroDivisionError("progress bar broke")

    return on_progress, calls


def _contents(results: list[Any]) -> list[Any]:
    return [r.content if isinstance(r, GenerationResult) else type(r) for r in results]


def test_a_raising_callback_keeps_every_result_and_leaves_no_call_running(
        batch_server: tuple[FakeServer, threading.Event]) -> None:
    server, release = batch_server
    llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0)
    prompts = ["a", "b", "slow c", "fail", "slow e", "f", "g", "h"]
    on_progress, calls = _raising_at(2, release)
    with pytest.raises(CallbackError) as caught:
        llm.map_sync(prompts, max_workers=4, on_progress=on_progress)
    assert _aio.active_workers() == 0  # nothing left running behind the caller's back
    err = caught.value
    assert isinstance(err, ProviderError)
    assert isinstance(err.__cause__, ZeroDivisionError)
    assert _contents(err.results) == ["a", "b", "slow c", E.ServerError, "slow e", "f", "g", "h"]
    assert len(server.received) == len(prompts)
    assert calls == [(1, 8), (2, 8)]  # not called again after it raised
    assert "on_progress" in str(err) and "ZeroDivisionError" in str(err)
    assert llm.get_stats().in_flight == 0


def test_the_inline_path_inside_a_worker_keeps_every_result_too(
        batch_server: tuple[FakeServer, threading.Event]) -> None:
    """A batch inside a call on the library's own pool runs its items in that thread."""
    server, release = batch_server
    release.set()
    llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0)
    on_progress, calls = _raising_at(2)

    def in_worker() -> BaseException | None:
        try:
            llm.map_sync(["a", "b", "fail", "d"], on_progress=on_progress)
        except CallbackError as exc:
            return exc
        return None

    err = _aio.submit(in_worker).result(timeout=30)
    assert isinstance(err, CallbackError) and isinstance(err.__cause__, ZeroDivisionError)
    assert _contents(err.results) == ["a", "b", E.ServerError, "d"]
    assert calls == [(1, 4), (2, 4)]
    assert len(server.received) == 4
    assert _aio.active_workers() == 0


def test_a_pool_batch_with_a_raising_callback(batch_server: tuple[FakeServer, threading.Event]) -> None:
    server, release = batch_server
    release.set()
    chain = FallbackChain([OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0)])
    on_progress, _ = _raising_at(1)
    with pytest.raises(CallbackError) as caught:
        chain.map_sync(["a", "b", "c"], on_progress=on_progress)
    assert _contents(caught.value.results) == ["a", "b", "c"]
    assert _aio.active_workers() == 0


def test_a_callback_error_pickles_with_its_results() -> None:
    err = CallbackError("x", results=[E.ServerError("s", status=500), None])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is CallbackError and type(back.results[0]) is E.ServerError and back.results[1] is None


def test_a_batch_function_that_raises_anyway_leaves_no_call_running() -> None:
    """``fn`` must not raise, but a bug may make it: the calls in flight finish before it is raised,
    and no new one starts."""
    release = threading.Event()
    finished: list[int] = []

    def fn(x: int) -> int:
        if x == 0:
            release.set()
            raise RuntimeError("a bug")
        release.wait(10)
        finished.append(x)
        return x

    with pytest.raises(RuntimeError, match="a bug"):
        _aio.map_blocking(fn, [0, 1, 2, 3], 2, None)
    assert finished == [1] and _aio.active_workers() == 0
