"""Pooled connections a caller can break off from another thread.

``RequestsTransport`` gives urllib3 these pool classes. Each connection checked out for a request
made under ``current_call`` is leased to that call: the call may shut the socket down (waking a
thread blocked on it) only while its lease lasts, which ends when the connection goes back to the
pool, so a connection reused by another request is never touched. Once the call is aborted, no
new connection is checked out for it (``CallAbortedError``).

More connections may be out at once than a pool keeps (its size caps idle connections and
blocks nobody): each open stream holds one for as long as it lasts. One given back to a full pool
is closed without urllib3's "connection pool is full" warning, which a thousand streams ending
together would log a thousand times though nothing is wrong.

Overrides urllib3's ``_get_conn``/``_put_conn``, the pool's checkout and return points.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from typing import Any

import urllib3.connectionpool

from .._call import current_call
from ..errors import CallAbortedError

__all__ = ["HTTPPool", "HTTPSPool"]


class _Lease:
    """One checkout of a pooled connection; ``shutdown`` is a no-op once it was returned."""

    __slots__ = ("conn", "held", "lock")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.held = True
        self.lock = threading.Lock()

    def shutdown(self) -> None:
        with self.lock:
            sock = getattr(self.conn, "sock", None) if self.held else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it

    def release(self) -> None:
        with self.lock:
            self.held = False


class _AbortablePool:
    """Mixin for urllib3 pools: registers each checkout with the context's ``current_call``."""

    pool: queue.LifoQueue[Any] | None  # urllib3's, declared for the type checker
    block: bool
    host: str

    def _get_conn(self, timeout: float | None = None) -> Any:
        call = current_call.get()
        if call is not None and call.aborted:
            raise CallAbortedError("the call was aborted by its caller")
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        if call is not None:
            lease = _Lease(conn)
            conn._mirror_lease = lease
            call.register(lease.shutdown)
        return conn

    def _put_conn(self, conn: Any) -> None:
        lease = getattr(conn, "_mirror_lease", None)
        if lease is not None:
            lease.release()
            conn._mirror_lease = None
        pool = self.pool
        if conn is None or pool is None or self.block:
            super()._put_conn(conn)  # type: ignore[misc]
            return
        try:
            pool.put(conn, block=False)
        except queue.Full:  # more were out than the pool keeps: this one is not kept
            urllib3.connectionpool.log.debug("Pool of %s full: closing a connection", self.host)
            conn.close()
            return
        if self.pool is not pool:
            conn.close()  # the pool was closed meanwhile: nobody will take it from there


class HTTPPool(_AbortablePool, urllib3.connectionpool.HTTPConnectionPool):
    pass


class HTTPSPool(_AbortablePool, urllib3.connectionpool.HTTPSConnectionPool):
    pass
