"""The made-up vendor of ``tests/parrot.py`` passes the provider contract like the real three."""

from __future__ import annotations

import json
from typing import Any

from ..contract import SECRET, ProviderContract
from ..parrot import ParrotProvider
from ..server import FakeServer, Received, Reply


def ev(data: Any, name: str | None = None) -> bytes:
    return (f"event: {name}\n" if name else "").encode() + f"data: {json.dumps(data)}\n\n".encode()


class TestParrotContract(ProviderContract):
    provider_id = "parrot"

    def make(self, server: FakeServer, **kwargs: Any) -> ParrotProvider:
        kwargs.setdefault("api_key", SECRET)
        return ParrotProvider(base_url=server.url, **kwargs)

    def _serve(self, server: FakeServer, plain: dict[str, Any], frames: list[bytes]) -> None:
        def route(req: Received, reply: Reply) -> None:
            assert req.headers.get("parrot-key") == SECRET
            if req.json()["live"]:
                reply.stream(200, frames, {"Content-Type": "text/event-stream", "parrot-request": "pr_1"})
            else:
                reply.json(200, plain, {"parrot-request": "pr_1"})

        server.route("POST", "/v2/speak", route)
        server.route("GET", "/v2/ping", lambda r, w: w.json(200, {"ok": True}))

    def serve_text(self, server: FakeServer, text: str) -> None:
        words = text.split(" ")
        cost = {"in": 4, "out": len(words)}
        frames = [ev({"piece": w if i == 0 else " " + w}) for i, w in enumerate(words)]
        self._serve(server, {"model": "polly-1", "said": text, "why": "done", "cost": cost},
                    [*frames, ev({"why": "done", "cost": cost}, "end")])

    def serve_tool_call(self, server: FakeServer, name: str, arguments: dict[str, Any]) -> None:
        call = {"id": "c1", "name": name, "args": arguments}
        cost = {"in": 4, "out": 2}
        self._serve(server, {"model": "polly-1", "said": "", "calls": [call], "why": "call", "cost": cost},
                    [ev({"call": call}), ev({"why": "call", "cost": cost}, "end")])

    def serve_error(self, server: FakeServer, status: int, message: str) -> None:
        body = {"problem": {"kind": "whatever", "text": message}}
        server.route("POST", "/v2/speak", lambda r, w: w.json(status, body))
        server.route("GET", "/v2/ping", lambda r, w: w.json(status, body))

    def serve_truncated_stream(self, server: FakeServer, text: str) -> None:
        self._serve(server, {}, [ev({"piece": text})])

    def serve_stream_error(self, server: FakeServer, text: str) -> None:
        self._serve(server, {}, [ev({"piece": text}), ev({"problem": {"kind": "busy", "text": "try later"}}, "problem")])


def test_results_and_chunks_carry_the_vendors_own_id_and_request_id() -> None:
    with FakeServer() as server:
        contract = TestParrotContract()
        contract.serve_text(server, "a b")
        provider = contract.make(server)
        result = provider.generate_sync("hi")
        chunks = list(provider.stream_sync("hi"))
    assert (result.provider, result.request_id) == ("parrot", "pr_1")
    assert {c.provider for c in chunks} == {"parrot"} and chunks[-1].request_id == "pr_1"
