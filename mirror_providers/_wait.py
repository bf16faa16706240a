"""Async streams read on the event loop: the marker their layers pass up instead of blocking.

A thousand open async streams on a thread each cost a thread wake-up, fought for with the GIL,
per event: ~50 us of CPU each even when idle otherwise (``bench/``, streams1k). So an async
stream of an HTTP provider whose body can be read without blocking (a chunked body on a plain or
TLS socket: ``transport.default``) reads it on the event loop instead, once its connection is
open and its status and headers read on a worker thread:

* ``_aio`` runs the stream's first step on a worker with ``reads_on_loop`` set;
* the provider's stream loop, seeing it set, asks the response to read without blocking; its
  body source then yields a ``WouldBlock`` (carrying the socket's file descriptor) where it
  would have waited for bytes;
* every layer between the body and the ``ChunkStream`` passes that marker up unchanged (framing,
  the provider's loop, stats);
* ``_aio``, given the marker, hands the stream to the loop, which waits for the descriptor to be
  readable (``add_reader``) and then takes the next step itself.

Nothing else changes: a body that cannot be read this way (compressed by urllib3, not chunked,
a stand-in transport) never yields the marker, and its stream stays on its thread.
"""

from __future__ import annotations

import contextvars

__all__ = ["WouldBlock", "reads_on_loop"]


class WouldBlock(bytes):
    """"No bytes now: resume me once ``fd`` is readable." Empty, yet true, so that filters of
    empty chunks pass it on; each layer checks ``x.__class__ is WouldBlock`` before using ``x``."""

    fd: int

    def __bool__(self) -> bool:
        return True


def marker(fd: int) -> WouldBlock:
    made = WouldBlock()
    made.fd = fd
    return made


# Set (True) by ``_aio``'s loop driver in the context the stream is opened in; read by the
# provider's stream loop when it starts reading events.
reads_on_loop: contextvars.ContextVar[bool] = contextvars.ContextVar("mirror_providers_reads_on_loop", default=False)
