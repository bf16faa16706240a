"""A fast loopback server for the benchmarks: the three vendors' chat endpoints, plain and
streaming, HTTP/1.1 keep-alive, in a process of its own (so it never shares the client's GIL).

Each request is shaped by headers:

    x-bench-delay-ms        wait this long before answering (default 0)
    x-bench-chunks          stream this many content chunks (default 5)
    x-bench-chunk-delay-ms  wait between chunks (default 0)
    x-bench-pause-ms        stream: send one chunk, then pause this long, then the rest
    x-bench-slow-every      with x-bench-slow-ms: every Nth such request waits that much longer
                            (a latency tail; the count is the server's, across connections)

A streamed chunk's text is the server's clock (``time.time()``) when it was written, so a client
can tell how long a chunk took to reach it. ``GET /stats`` returns connections accepted.
``POST /bench/pause`` holds every paced stream (one with ``x-bench-chunk-delay-ms``) after its
current chunk, open but silent; ``POST /bench/resume`` lets them go on, each after a random part
of its gap, so they do not all send at once: the streams1k rows measure calls beside the same open
streams while they send and while they are silent, in alternating blocks.

Run alone: ``python bench/server.py --port 8765``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time

ROUTES = {"/v1/chat/completions": "openai", "/v1/responses": "responses", "/v1/messages": "anthropic",
          "/api/chat": "ollama"}


def plain_body(vendor: str) -> bytes:
    if vendor == "responses":
        return json.dumps({"id": "resp_b", "object": "response", "status": "completed", "model": "gpt-6-luna",
                           "output": [{"type": "message", "id": "msg_b", "role": "assistant", "status": "completed",
                                       "content": [{"type": "output_text", "text": "Paris", "annotations": []}]}],
                           "usage": {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6}}).encode()
    if vendor == "openai":
        return json.dumps({"id": "chatcmpl-b", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()
    if vendor == "anthropic":
        return json.dumps({"id": "msg_b", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
                           "content": [{"type": "text", "text": "Paris"}], "stop_reason": "end_turn",
                           "usage": {"input_tokens": 5, "output_tokens": 1}}).encode()
    return json.dumps({"model": "llama3.1", "message": {"role": "assistant", "content": "Paris"}, "done": True,
                       "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 1}).encode()


def frame(vendor: str, text: str) -> bytes:
    if vendor == "responses":  # the real events' fields, without a sequence_number (optional; checked when sent)
        return (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","content_index":0,'
                b'"delta":"%s","item_id":"msg_b","logprobs":[],"output_index":0}\n\n' % text.encode())
    if vendor == "openai":
        return (b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n'
                % text.encode())
    if vendor == "anthropic":
        return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                b'"delta":{"type":"text_delta","text":"%s"}}\n\n' % text.encode())
    return b'{"model":"llama3.1","message":{"role":"assistant","content":"%s"},"done":false}\n' % text.encode()


def head_frames(vendor: str) -> bytes:
    if vendor == "responses":
        return (b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_b",'
                b'"model":"gpt-6-luna","status":"in_progress","output":[]}}\n\n'
                b'event: response.output_item.added\ndata: {"type":"response.output_item.added","output_index":0,'
                b'"item":{"type":"message","id":"msg_b","role":"assistant","content":[]}}\n\n')
    if vendor == "anthropic":
        return (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_b","type":"message",'
                b'"role":"assistant","model":"claude-sonnet-4-20250514","content":[],"stop_reason":null,'
                b'"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
                b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
                b'"content_block":{"type":"text","text":""}}\n\n')
    return b""


def tail_frames(vendor: str, n: int) -> bytes:
    if vendor == "responses":
        return (b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_b",'
                b'"status":"completed","model":"gpt-6-luna","output":[],"usage":{"input_tokens":5,'
                b'"output_tokens":%d,"total_tokens":%d}}}\n\n' % (n, n + 5))
    if vendor == "openai":
        return (b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
                b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":%d,"total_tokens":%d}}'
                b'\n\ndata: [DONE]\n\n' % (n, n + 5))
    if vendor == "anthropic":
        return (b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
                b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
                b'"usage":{"output_tokens":%d}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n' % n)
    return b'{"model":"llama3.1","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",' \
           b'"prompt_eval_count":5,"eval_count":%d}\n' % n


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.flowing = asyncio.Event()  # cleared: paced streams hold (``/bench/pause``)
        self.flowing.set()

    slow_count = 0  # requests that asked for a latency tail

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                await self.respond(method, path.split("?")[0], headers, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def respond(self, method: str, path: str, headers: dict[str, str], body: bytes,
                      writer: asyncio.StreamWriter) -> None:
        delay = float(headers.get("x-bench-delay-ms", 0)) / 1000
        every = int(headers.get("x-bench-slow-every", 0))
        if every:
            self.slow_count += 1
            if self.slow_count % every == 0:
                delay += float(headers.get("x-bench-slow-ms", 0)) / 1000
        if delay:
            await asyncio.sleep(delay)
        if path == "/stats":
            return self.send(writer, 200, json.dumps({"connections": self.connections}).encode())
        if path in ("/bench/pause", "/bench/resume"):
            self.flowing.clear() if path == "/bench/pause" else self.flowing.set()
            return self.send(writer, 200, b'{"ok":true}')
        vendor = ROUTES.get(path)
        if vendor is None:
            return self.send(writer, 404, b'{"error":"no route"}')
        streaming = b'"stream":true' in body.replace(b" ", b"")
        if not streaming:
            return self.send(writer, 200, plain_body(vendor))
        n = int(headers.get("x-bench-chunks", 5))
        gap = float(headers.get("x-bench-chunk-delay-ms", 0)) / 1000
        pause = float(headers.get("x-bench-pause-ms", 0)) / 1000
        ctype = "application/x-ndjson" if vendor == "ollama" else "text/event-stream"
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        self.chunk(writer, head_frames(vendor))
        batch: list[bytes] = []  # one event per HTTP chunk, as the vendors send them; one write per batch
        for i in range(n):
            data = frame(vendor, f"{time.time():.6f}")
            batch.append(b"%x\r\n%s\r\n" % (len(data), data))
            if (i == 0 and pause) or gap or len(batch) == 256:
                writer.write(b"".join(batch))
                batch.clear()
                await writer.drain()
                if i == 0 and pause:
                    await asyncio.sleep(pause)
                elif gap:
                    await asyncio.sleep(gap)
                    if not self.flowing.is_set():  # paused: silent until resumed, then back at a random phase
                        await self.flowing.wait()
                        await asyncio.sleep(random.random() * gap)
        writer.write(b"".join(batch))
        self.chunk(writer, tail_frames(vendor, n))
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    @staticmethod
    def chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
        if data:
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))

    @staticmethod
    def send(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        writer.write(b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (status, len(body), body))


async def serve(port: int, ready: object = None) -> None:
    server = Server()
    srv = await asyncio.start_server(server.handle, "127.0.0.1", port, backlog=1024)
    print(f"ready {srv.sockets[0].getsockname()[1]}", flush=True)
    async with srv:
        await srv.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
