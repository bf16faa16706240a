"""The async bridge under load: open streams never hold the workers that awaited calls need.

A thousand streams are held open by a loopback server (each has sent its first chunk and waits);
an awaited call made beside them must finish while they are all still open, and every stream's
consumer then awaits a call inside its own loop: nothing may wait for a worker an open stream holds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from mirror_providers import _aio
from mirror_providers.openai import OpenAIProvider

from ..server import FakeServer, Received, Reply, openai_completion, openai_sse

STREAMS = 1000
HANG_S = 60  # far beyond what the test needs: reaching it means something waits forever


@pytest.fixture
def held() -> Iterator[tuple[FakeServer, threading.Event]]:
    """Streams send their first frame, then wait for ``release``; plain calls answer at once."""
    release = threading.Event()

    def chat(req: Received, reply: Reply) -> None:
        body = req.json()
        prompt = body["messages"][-1]["content"]
        if not body.get("stream"):
            reply.json(200, openai_completion(prompt))
            return
        frames = openai_sse(prompt)
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        reply.chunk(frames[0] + frames[1])  # the role frame and the first word
        release.wait(HANG_S)
        for frame in frames[2:]:
            reply.chunk(frame)
        reply.end_chunks()

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        yield server, release
        release.set()


@pytest.mark.timeout(2 * HANG_S)
def test_a_thousand_open_streams_block_no_awaited_call(held: tuple[FakeServer, threading.Event]) -> None:
    server, release = held
    llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0)
    assert _aio.max_workers() < STREAMS

    async def main() -> None:
        opened, go, inner_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
        first_chunks = inner_calls = 0

        async def consume(i: int) -> str:
            nonlocal first_chunks, inner_calls
            parts: list[str] = []
            async for chunk in llm.stream(f"stream {i} words"):
                parts.append(chunk.content)
                if len(parts) == 1:
                    first_chunks += 1
                    if first_chunks == STREAMS:
                        opened.set()
                    await go.wait()
                    inner = await llm.generate(f"inner {i}")  # a call inside the stream's loop
                    assert inner.content == f"inner {i}"
                    inner_calls += 1
                    if inner_calls == STREAMS:
                        inner_done.set()
            return "".join(parts)

        tasks = [asyncio.ensure_future(consume(i)) for i in range(STREAMS)]
        await asyncio.wait_for(opened.wait(), HANG_S)
        # Every stream is open and waiting on its server: a call beside them still gets a worker.
        beside = await asyncio.wait_for(llm.generate("beside"), HANG_S)
        assert beside.content == "beside"
        assert not any(t.done() for t in tasks)
        go.set()  # each consumer now awaits a call inside its loop
        await asyncio.wait_for(inner_done.wait(), HANG_S)
        assert not any(t.done() for t in tasks)  # all answered while every stream was still open
        release.set()
        texts = await asyncio.wait_for(asyncio.gather(*tasks), HANG_S)
        assert texts == [f"stream {i} words" for i in range(STREAMS)]

    asyncio.run(main())
    for thread in threading.enumerate():  # the readers end just after handing over their last chunk
        if thread.name == "mirror-stream":
            thread.join(HANG_S)
    assert _aio.active_workers() == 0
