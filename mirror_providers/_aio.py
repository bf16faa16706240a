"""The one sync -> async bridge. Nothing else in the library touches asyncio.

Blocking calls run on one bounded thread pool, created on first use. The library never creates,
runs or closes an event loop: it only uses the loop it is awaited from, so it works inside
Jupyter, FastAPI or any running loop.

``iterate_in_thread`` drives a blocking iterator from a thread of its own (not one of the pool's:
an open stream lives as long as its consumer, and if streams held the pool's workers, a call
awaited inside a stream's loop could wait for a worker that only the stream's end frees: with as
many open streams as workers, that is a deadlock) through a bounded hand-off (backpressure: the
thread stops reading when the consumer falls ``max_buffer`` items behind).
When the consumer stops early (break, cancellation, ``aclose``), the worker is told and closes
the blocking iterator in its own thread, which releases the HTTP response; an iterator with an
``abort()`` method (``ChunkStream``) is also aborted, so a worker blocked on a silent server
wakes at once instead of at its read timeout. The worker's
exception is re-raised unchanged, and contextvars are copied to the worker.
"""

from __future__ import annotations

import contextvars
import functools
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # asyncio costs ~15 ms to import: loaded only when something is awaited
    import asyncio
    from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["active_workers", "get_executor", "iterate_in_thread", "map_blocking", "run_sync", "set_max_workers",
           "submit"]

T = TypeVar("T")
A = TypeVar("A")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_max_workers = int(os.environ.get("MIRROR_PROVIDERS_THREADS", "0")) or 32

_ITEM, _END, _ERROR = 0, 1, 2
_active = 0  # calls running on library threads now (observable: tests check nothing is left running)


def set_max_workers(n: int) -> None:
    """Size the shared thread pool (default 32, or ``MIRROR_PROVIDERS_THREADS``).

    Takes effect for the pool created next; an existing pool is shut down once its work ends.
    """
    global _executor, _max_workers
    if n < 1:
        raise ValueError(f"max_workers must be >= 1, got {n}")
    with _lock:
        _max_workers = n
        old, _executor = _executor, None
    if old is not None:
        old.shutdown(wait=False)


def _reset_in_child() -> None:
    """A forked child has none of the parent's worker threads: it starts a pool of its own."""
    global _executor, _lock, _active
    _lock = threading.Lock()  # another thread may have held it at the fork
    _executor = None  # its threads do not exist here; left unused, never shut down
    _active = 0


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_in_child)


def max_workers() -> int:
    return _max_workers


def get_executor() -> ThreadPoolExecutor:
    """The shared thread pool behind every awaitable and batch helper."""
    global _executor
    ex = _executor
    if ex is None:
        with _lock:
            if _executor is None:
                from concurrent.futures import ThreadPoolExecutor

                _executor = ThreadPoolExecutor(_max_workers, thread_name_prefix="mirror-providers")
            ex = _executor
    return ex


def active_workers() -> int:
    """How many library calls (pooled calls and stream readers) are running on threads right now."""
    return _active


def _counted(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        global _active
        with _lock:
            _active += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with _lock:
                _active -= 1

    return run


def _in_worker() -> bool:
    return threading.current_thread().name.startswith("mirror-providers")


def submit(fn: Callable[..., T], /, *args: Any) -> Future[T]:
    """Run ``fn(*args)`` on the shared thread pool, contextvars copied; return its Future."""
    ctx = contextvars.copy_context()
    return get_executor().submit(ctx.run, _counted(fn), *args)


def map_blocking(fn: Callable[[A], T], items: list[A], max_workers: int | None,
                 on_progress: Callable[[int, int], None] | None,
                 on_callback_error: Callable[[list[T], Exception], BaseException] | None = None, *,
                 on_result: Callable[[int, T], None] | None = None) -> list[T]:
    """``[fn(x) for x in items]`` run on the shared pool, at most ``max_workers`` at once,
    results in order. ``fn`` must not raise (wrap errors into results).

    Called from one of the pool's own threads (a batch inside an awaited call), it runs the
    items in that thread instead: waiting there for other pool threads could deadlock.

    After each item finishes, in the calling thread, ``on_result(index, result)`` is called and
    then ``on_progress(done, total)``. If either raises, neither is called again, every item
    still runs to its end (nothing is lost, nothing left running), and then
    ``on_callback_error(results, exc)`` is raised from the callback's exception (the callback's
    exception itself without ``on_callback_error``).
    """
    total = len(items)
    results: list[T | None] = [None] * total
    failed: list[Exception] = []

    def progress(i: int, done: int) -> None:
        if failed:
            return
        try:
            if on_result is not None:
                on_result(i, results[i])  # type: ignore[arg-type]
            if on_progress is not None:
                on_progress(done, total)
        except Exception as exc:  # reported once the batch is complete; never called again
            failed.append(exc)

    if _in_worker():
        for i, item in enumerate(items):
            results[i] = fn(item)
            progress(i, i + 1)
    else:
        _run_on_pool(fn, items, max_workers, results, progress)
    if failed:
        if on_callback_error is None:
            raise failed[0]
        raise on_callback_error(results, failed[0]) from failed[0]  # type: ignore[arg-type]
    return results  # type: ignore[return-value]


def _run_on_pool(fn: Callable[[A], T], items: list[A], max_workers: int | None, results: list[T | None],
                 progress: Callable[[int, int], None]) -> None:
    limit = max(1, min(max_workers or _max_workers, _max_workers))
    from concurrent.futures import FIRST_COMPLETED, wait

    pending: dict[Future[T], int] = {}
    done = 0
    queue = iter(enumerate(items))
    broken: BaseException | None = None  # ``fn`` raised after all: no new item starts
    while True:
        for i, item in queue if broken is None else ():
            pending[submit(fn, item)] = i
            if len(pending) >= limit:
                break
        if not pending:
            if broken is not None:
                raise broken  # only once no call of the batch is still running
            return
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in finished:
            i = pending.pop(fut)
            try:
                results[i] = fut.result()
            except BaseException as exc:
                broken = broken or exc
                continue
            done += 1
            progress(i, done)


async def run_sync(fn: Callable[..., T], /, *args: Any, on_cancel: Callable[[], None] | None = None,
                   **kwargs: Any) -> T:
    """Await ``fn(*args, **kwargs)`` run on the shared thread pool, contextvars copied.

    A thread cannot be cancelled: if the awaiting task is, ``on_cancel`` is called so that the
    blocking call can be broken off (the provider aborts its connection).
    """
    import asyncio

    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    call = functools.partial(ctx.run, _counted(fn), *args, **kwargs)
    try:
        return await loop.run_in_executor(get_executor(), call)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        raise


async def iterate_in_thread(
    factory: Callable[[], Iterator[T]], *, max_buffer: int = 64
) -> AsyncIterator[T]:
    """Iterate ``factory()`` on a worker thread and yield its items here.

    ``factory`` runs on the worker too, so opening the connection does not block the loop.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    space = threading.Semaphore(max_buffer)
    stop = threading.Event()

    def hand_over(kind: int, value: Any) -> bool:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            return True
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return False

    started: list[Iterator[T]] = []

    def work() -> None:
        it: Iterator[T] | None = None
        try:
            it = factory()
            started.append(it)
            for item in it:
                space.acquire()
                if stop.is_set() or not hand_over(_ITEM, item):
                    return
            hand_over(_END, None)
        except BaseException as exc:  # re-raised on the consumer side, unchanged
            if not stop.is_set():
                hand_over(_ERROR, exc)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    ctx = contextvars.copy_context()
    # A daemon: a stream its consumer forgot must not keep the interpreter from exiting.
    threading.Thread(target=ctx.run, args=(_counted(work),), name="mirror-stream", daemon=True).start()
    ended = False
    try:
        while True:
            kind, value = await queue.get()
            if kind == _ITEM:
                space.release()
                yield value
            else:
                ended = True
                if kind == _ERROR:
                    raise value
                return
    finally:
        if not ended:  # the consumer stopped early
            stop.set()
            space.release()  # wake a worker blocked on a full buffer so it sees ``stop``
            abort = getattr(started[0], "abort", None) if started else None
            if abort is not None:
                abort()  # wake a worker blocked on the network; it then closes the iterator
