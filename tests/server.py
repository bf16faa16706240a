"""A loopback HTTP/1.1 server for tests: each route is a function that writes raw bytes.

Sockets really behave (keep-alive, chunked bodies, stalls, resets), which ``responses`` cannot
imitate. Routes get the request and a ``Reply`` to write to; the server counts connections.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Reply:
    """Writes a response on the raw socket file."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._h = handler

    def head(self, status: int, headers: dict[str, str] | None = None, *, chunked: bool = False,
             length: int | None = None) -> None:
        h = self._h
        h.send_response_only(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        elif length is not None:
            h.send_header("Content-Length", str(length))
        else:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        h.wfile.flush()

    def raw(self, data: bytes) -> None:
        self._h.wfile.write(data)
        self._h.wfile.flush()

    def chunk(self, data: bytes) -> None:
        self.raw(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunks(self) -> None:
        self.raw(b"0\r\n\r\n")

    def body(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.head(status, headers, length=len(data))
        self.raw(data)

    def json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.body(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def stream(self, status: int, pieces: Iterable[bytes], headers: dict[str, str] | None = None,
               delay_s: float = 0.0) -> None:
        self.head(status, headers, chunked=True)
        for p in pieces:
            self.chunk(p)
            if delay_s:
                time.sleep(delay_s)  # the server side of a slow stream, not a test sleeping
        self.end_chunks()

    def reset(self) -> None:
        """Close the connection abruptly (RST)."""
        sock = self._h.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self._h.close_connection = True
        sock.close()


Route = Callable[[Received, Reply], object]  # what it returns is ignored (lambdas may return)


def free_port() -> int:
    """A loopback port nothing listens on (a dead server, for connection-refused tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 1024  # a thousand clients connecting at once are all accepted
    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that broke the connection off (or refused TLS): what the tests do
        super().handle_error(request, client_address)


@dataclass
class FakeServer:
    """``with FakeServer() as s: s.route("POST", "/v1/x", fn); s.url``."""

    tls: tuple[str, str] | None = None  # (certfile, keyfile): serve HTTPS
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server._changed:
                    server.connections += 1
                    server._open.add(self.connection)
                    server._changed.notify_all()

            def finish(self) -> None:
                with server._changed:
                    server._open.discard(self.connection)
                    server._changed.notify_all()
                with contextlib.suppress(OSError):
                    super().finish()

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                rec = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with server._lock:
                    server.received.append(rec)
                route = server.routes.get((self.command, path)) or server.routes.get((self.command, "*"))
                reply = Reply(self)
                if route is None:
                    reply.json(404, {"error": f"no route {self.command} {path}"})
                    return
                try:
                    route(rec, reply)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True

            do_GET = do_POST = do_HEAD = do_DELETE = _serve

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a connection opened or closed
        self._open: set[socket.socket] = set()
        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if self.tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            self.url = f"https://localhost:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def route(self, method: str, path: str, fn: Route) -> None:
        self.routes[(method, path)] = fn

    @property
    def open_connections(self) -> int:
        """Connections a client holds open to this server now."""
        with self._lock:
            return len(self._open)

    def wait_open_connections(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until exactly ``n`` client connections are open (the server notices a close when
        it reads EOF); False if that did not happen within ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._open) == n, timeout)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop like a killed process: stop listening and cut every open connection."""
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            open_now = list(self._open)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)


# -- a fake OpenAI Chat Completions API --------------------------------------------------------

def openai_completion(text: str, model: str = "gpt-4o-mini-2024-07-18") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": len(text.split()), "total_tokens": 5 + len(text.split())},
    }


def openai_sse(text: str, model: str = "gpt-4o-mini-2024-07-18") -> list[bytes]:
    words = text.split(" ")
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    frames: list[dict[str, Any]] = [{"id": "chatcmpl-1", "model": model, "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}], "usage": None}]
    frames += [{"id": "chatcmpl-1", "model": model, "choices": [
        {"index": 0, "delta": {"content": p}, "finish_reason": None}], "usage": None} for p in pieces]
    frames.append({"id": "chatcmpl-1", "model": model, "choices": [
        {"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None})
    frames.append({"id": "chatcmpl-1", "model": model, "choices": [], "usage": {
        "prompt_tokens": 5, "completion_tokens": len(words), "total_tokens": 5 + len(words)}})
    return [b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames] + [b"data: [DONE]\n\n"]


def add_openai_routes(server: FakeServer, text: str = "Paris is the capital of France.") -> None:
    """``/v1/chat/completions`` (plain and streaming) and ``/v1/models``."""

    def chat(req: Received, reply: Reply) -> None:
        body = req.json()
        if body.get("stream"):
            reply.stream(200, openai_sse(text), {"Content-Type": "text/event-stream", "x-request-id": "req_fake"})
        else:
            reply.json(200, openai_completion(text), {"x-request-id": "req_fake"})

    def models(req: Received, reply: Reply) -> None:
        reply.json(200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})

    server.route("POST", "/v1/chat/completions", chat)
    server.route("GET", "/v1/models", models)
    server.route("GET", "/v1/models/gpt-4o-mini", lambda r, w: w.json(200, {"id": "gpt-4o-mini"}))


# -- a fake Anthropic Messages API ---------------------------------------------------------------

def anthropic_message(text: str, model: str = "claude-sonnet-4-20250514") -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": len(text.split())}}


def anthropic_sse(text: str, model: str = "claude-sonnet-4-20250514") -> list[bytes]:
    def ev(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    words = text.split(" ")
    out = [ev("message_start", {"type": "message_start", "message": {"model": model, "content": [],
                                                                     "usage": {"input_tokens": 5, "output_tokens": 1}}}),
           ev("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})]
    out += [ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
        "type": "text_delta", "text": w if i == 0 else " " + w}}) for i, w in enumerate(words)]
    out += [ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                 "usage": {"output_tokens": len(words)}}),
            ev("message_stop", {"type": "message_stop"})]
    return out


def add_anthropic_routes(server: FakeServer, text: str = "Paris is the capital of France.") -> None:
    """``/v1/messages`` (plain and streaming) and ``/v1/models``."""

    def messages(req: Received, reply: Reply) -> None:
        if req.json().get("stream"):
            reply.stream(200, anthropic_sse(text), {"Content-Type": "text/event-stream", "request-id": "req_fake"})
        else:
            reply.json(200, anthropic_message(text), {"request-id": "req_fake"})

    server.route("POST", "/v1/messages", messages)
    server.route("GET", "/v1/models", lambda r, w: w.json(200, {"data": [{"id": "claude-sonnet-4-20250514"}]}))


# -- a fake Ollama native API ----------------------------------------------------------------------

def add_ollama_routes(server: FakeServer, text: str = "Rayleigh scattering.") -> None:
    """``/api/chat`` (plain and NDJSON), ``/api/version``, ``/api/tags``."""
    final = {"model": "llama3.1", "done": True, "done_reason": "stop", "prompt_eval_count": 7,
             "eval_count": len(text.split()), "total_duration": 10_000_000}

    def chat(req: Received, reply: Reply) -> None:
        if req.json().get("stream"):
            words = text.split(" ")
            lines = [{"model": "llama3.1", "message": {"role": "assistant", "content": w if i == 0 else " " + w},
                      "done": False} for i, w in enumerate(words)]
            lines.append({**final, "message": {"role": "assistant", "content": ""}})
            reply.stream(200, [json.dumps(x).encode() + b"\n" for x in lines], {"Content-Type": "application/x-ndjson"})
        else:
            reply.json(200, {**final, "message": {"role": "assistant", "content": text}})

    server.route("POST", "/api/chat", chat)
    server.route("GET", "/api/version", lambda r, w: w.json(200, {"version": "0.12.0"}))
    server.route("GET", "/api/tags", lambda r, w: w.json(200, {"models": [{"name": "llama3.1:latest"}]}))
