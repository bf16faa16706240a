"""The one sync -> async bridge. Nothing else in the library touches asyncio.

Blocking calls run on one bounded thread pool, created on first use. The library never creates,
runs or closes an event loop: it only uses the loop it is awaited from, so it works inside
Jupyter, FastAPI or any running loop.

``iterate_in_thread`` drives a blocking iterator from a thread of its own (not one of the pool's:
an open stream lives as long as its consumer, and if streams held the pool's workers, a call
awaited inside a stream's loop could wait for a worker that only the stream's end frees: with as
many open streams as workers, that is a deadlock) through a bounded hand-off (backpressure: the
thread stops reading when the consumer falls ``max_buffer`` items behind).
The items of all the streams a loop consumes reach it through one inbox per loop, in batches: a
reader wakes the loop only when no delivery is pending already (``_Inbox``), so a thousand slow
streams do not cost a thousand self-pipe writes and loop wake-ups, each fought for with the GIL.
When the consumer stops early (break, cancellation, ``aclose``), the worker is told and closes
the blocking iterator in its own thread, which releases the HTTP response; an iterator with an
``abort()`` method (``ChunkStream``) is also aborted, so a worker blocked on a silent server
wakes at once instead of at its read timeout. The worker's
exception is re-raised unchanged, and contextvars are copied to the worker.

An iterator may instead yield a ``WouldBlock`` marker (``_wait``: an HTTP provider's stream,
once open, whose body can be read without blocking). Its thread then hands it to the loop and
ends; from then on the loop watches the marker's socket (``add_reader``, kept from one event to
the next) and, each time it is readable, takes the iterator's steps in its own thread until the
next marker (``_LoopReader``), with the same backpressure, early stop and errors. A thousand
open streams then cost no thread each and about a third of the CPU per event (``bench/``,
streams1k). This is still the one bridge: the loop is the caller's own, nothing here runs one.
"""

from __future__ import annotations

import contextvars
import functools
import os
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from . import _wait
from ._wait import WouldBlock

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

_ITEM, _END, _ERROR, _HANDOVER = 0, 1, 2, 3
_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = weakref.WeakKeyDictionary()
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
    global _executor, _lock, _active, _inboxes
    _lock = threading.Lock()  # another thread may have held it at the fork
    _inboxes = weakref.WeakKeyDictionary()  # and an inbox's lock
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


class _Handoff:
    """One stream's items on the loop's side, and the consumer's future while it waits for one."""

    __slots__ = ("items", "waiter", "taken")

    def __init__(self, window: _Window) -> None:
        self.items: deque[tuple[int, Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.taken = window.give  # the consumer took an item: the reader may run one further ahead

    def put(self, kind: int, value: Any) -> None:
        self.items.append((kind, value))
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Window:
    """Backpressure: the reader runs at most ``size`` items ahead of its consumer.

    A ``threading.Semaphore`` would do, but its every release goes through a Python-level
    ``Condition`` on the loop's thread; here a plain lock guards the count, and the condition is
    only used when the reader actually has to wait.
    """

    __slots__ = ("_lock", "_room", "_ahead", "_size", "_waiting", "closed")

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._ahead = 0
        self._size = size
        self._waiting = False
        self.closed = False

    def take(self) -> bool:
        """Reader: room for one more item (waits for it); False once the consumer has stopped."""
        with self._lock:
            while self._ahead >= self._size and not self.closed:
                self._waiting = True
                self._room.wait()
            self._ahead += 1
            return not self.closed

    def give(self) -> None:
        """Consumer: one item taken."""
        with self._lock:
            self._ahead -= 1
            if self._waiting:
                self._waiting = False
                self._room.notify()

    def close(self) -> None:
        """Consumer: stopped early; a reader waiting for room wakes and sees it."""
        with self._lock:
            self.closed = True
            self._room.notify()


class _Inbox:
    """What the reader threads of one event loop's streams hand it, delivered in batches.

    A thread wakes the loop (``call_soon_threadsafe``: a lock, a callback and a write to the
    loop's self-pipe, made while other threads wait for the GIL) only when no delivery is pending
    already; the loop then takes everything posted meanwhile in one callback. With a thousand
    slow streams open, their events cost the loop one wake-up per batch instead of one each.
    """

    __slots__ = ("_loop", "_lock", "_posted", "_pending")

    def __init__(self, loop: Callable[[], asyncio.AbstractEventLoop | None]) -> None:
        self._loop = loop  # a weak reference: the inbox must not keep its loop alive
        self._lock = threading.Lock()
        self._posted: list[tuple[_Handoff, int, Any]] = []
        self._pending = False

    def post(self, to: _Handoff, kind: int, value: Any) -> bool:
        """Hand ``(kind, value)`` to ``to`` on the loop; False once the loop is gone or closed."""
        loop = self._loop()
        if loop is None or loop.is_closed():
            return False  # nobody is listening any more
        with self._lock:
            self._posted.append((to, kind, value))
            if self._pending:
                return True
            self._pending = True
        try:
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # closed meanwhile
            return False
        return True

    def _deliver(self) -> None:
        with self._lock:
            posted, self._posted = self._posted, []
            self._pending = False
        for to, kind, value in posted:
            to.put(kind, value)


def _inbox(loop: asyncio.AbstractEventLoop) -> _Inbox:
    """The running loop's inbox, made on its first stream."""
    with _lock:
        try:
            inbox = _inboxes.get(loop)
        except TypeError:  # a loop that cannot be weakly referenced gets an inbox per stream
            return _Inbox(lambda: loop)
        if inbox is None:
            inbox = _inboxes[loop] = _Inbox(weakref.ref(loop))
        return inbox


async def iterate_in_thread(
    factory: Callable[[], Iterator[T]], *, max_buffer: int = 64, reads_on_loop: bool = False
) -> AsyncIterator[T]:
    """Iterate ``factory()`` on a worker thread and yield its items here.

    ``factory`` runs on the worker too, so opening the connection does not block the loop. With
    ``reads_on_loop``, and a loop that can watch sockets, it runs with ``_wait.reads_on_loop``
    set: its iterator may then hand itself to the loop with a ``WouldBlock``.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    if reads_on_loop and _watches_sockets(loop):
        opened = factory

        def factory() -> Iterator[T]:
            _wait.reads_on_loop.set(True)  # in the worker's copy of the context: the stream's
            return opened()

    window = _Window(max_buffer)
    inbox, handoff = _inbox(loop), _Handoff(window)
    started: list[Iterator[T]] = []

    work = functools.partial(_read_in_thread, factory, window, inbox, handoff, started)
    ctx = contextvars.copy_context()
    # A daemon: a stream its consumer forgot must not keep the interpreter from exiting.
    threading.Thread(target=ctx.run, args=(_counted(work),), name="mirror-stream", daemon=True).start()
    ended = False
    source: _Handoff | _LoopReader = handoff  # where the items come from: the thread, then the loop
    reader: _LoopReader | None = None
    try:
        while True:
            items = source.items
            if not items:
                source.waiter = loop.create_future()
                await source.waiter
                continue
            kind, value = items.popleft()
            if kind == _ITEM:
                source.taken()
                yield value
            elif kind == _HANDOVER:
                ended = True  # the worker is gone; what is left is read here, on the loop
                rest, wait = value
                source = reader = _LoopReader(loop, rest, wait.fd, max_buffer)
            else:
                ended = True
                if kind == _ERROR:
                    raise value
                return
    finally:
        if reader is not None:
            reader.close()  # unwatched, and the stream closed if it had not ended
        elif not ended:  # the consumer stopped early
            window.close()  # a worker blocked on a full buffer wakes and stops
            _close_handed_over(handoff.items)
            abort = getattr(started[0], "abort", None) if started else None
            if abort is not None:
                abort()  # wake a worker blocked on the network; it then closes the iterator


def _read_in_thread(factory: Callable[[], Iterator[T]], window: _Window, inbox: _Inbox, handoff: _Handoff,
                    started: list[Iterator[T]]) -> None:
    """A stream's reader thread: ``factory()``'s items posted to the loop, then its end or error;
    or, at its first ``WouldBlock``, the iterator itself (``_HANDOVER``), read on the loop from then."""
    it: Iterator[T] | None = None
    try:
        it = factory()
        started.append(it)
        for item in it:
            if item.__class__ is WouldBlock:  # the rest is read on the loop (``_wait``)
                if not window.closed and inbox.post(handoff, _HANDOVER, (it, item)):
                    it = None  # the loop's now: not closed here
                return
            if not window.take() or not inbox.post(handoff, _ITEM, item):
                return
        inbox.post(handoff, _END, None)
    except BaseException as exc:  # re-raised on the consumer side, unchanged
        if not window.closed:
            inbox.post(handoff, _ERROR, exc)
    finally:
        _close(it)


def _close(it: object) -> None:
    """Close an iterator that has a ``close()`` (a generator, a ``ChunkStream``); others have nothing to release."""
    close = getattr(it, "close", None)
    if close is not None:
        close()


def _close_handed_over(items: deque[tuple[int, Any]]) -> None:
    """A stream handed over to the loop, but whose consumer stopped before taking it: closed."""
    for kind, value in items:
        if kind == _HANDOVER:
            _close(value[0])


def _watches_sockets(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop.add_reader`` works: not on Windows' proactor loop (which lacks it)."""
    import asyncio

    proactor = getattr(asyncio, "ProactorEventLoop", None)
    return proactor is None or not isinstance(loop, proactor)


class _LoopReader:
    """A stream read on its event loop: while its socket is watched (``add_reader``), each time it
    is readable the stream takes steps here, in the loop's thread, until its source has nothing
    more to read (a ``WouldBlock``), and the items go to the consumer's deque. The socket stays
    watched from one event to the next (no ``epoll_ctl`` per event); it is left unwatched while
    the consumer is ``max_buffer`` items behind (backpressure), and once the stream has ended."""

    __slots__ = ("_loop", "_it", "_within", "_fd", "_max", "_watching", "_resuming", "_done", "items", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, it: Iterator[Any], fd: int, max_buffer: int) -> None:
        self._loop, self._it, self._fd, self._max = loop, it, fd, max_buffer
        # A ``ChunkStream`` runs the steps in its own context, entered once per wake-up, not per step.
        self._within: Callable[[Callable[[Iterator[Any]], None]], None] | None = getattr(it, "within", None)
        self._watching = self._resuming = self._done = False
        self.items: deque[tuple[int, Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self._watch()

    def _watch(self) -> None:
        if not self._watching and not self._done:
            self._loop.add_reader(self._fd, self._step)
            self._watching = True

    def _unwatch(self) -> None:
        if self._watching:
            self._watching = False
            self._loop.remove_reader(self._fd)

    def _step(self) -> None:
        """Readable (or resumed after backpressure): the steps the bytes there allow."""
        self._resuming = False
        if self._done:
            return
        try:
            if self._within is None:
                self._take(self._it)
            else:
                self._within(self._take)
        except Exception as exc:  # re-raised on the consumer side, unchanged
            self._finish((_ERROR, exc))
        waiter = self.waiter
        if waiter is not None and self.items:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _take(self, it: Iterator[Any]) -> None:
        items = self.items
        for item in it:
            if item.__class__ is WouldBlock:  # (its socket's: one stream, one socket)
                if not self._watching:
                    self._watch()
                return
            items.append((_ITEM, item))
            if len(items) >= self._max:
                self._unwatch()  # the consumer is behind: resumed by ``taken``
                return
        self._finish((_END, None))

    def _finish(self, last: tuple[int, Any]) -> None:
        self.items.append(last)
        self._done = True
        self._unwatch()

    def taken(self) -> None:
        """The consumer took an item: a reader held back by backpressure resumes at half."""
        if not (self._watching or self._resuming or self._done) and len(self.items) <= self._max // 2:
            self._resuming = True
            self._loop.call_soon(self._step)  # its stream may hold items already read: a step, not a wait

    def close(self) -> None:
        self._unwatch()
        if not self._done:
            self._done = True
            _close(self._it)
