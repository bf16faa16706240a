"""Parrot: a made-up vendor, written the way a new one is added, to prove that it takes one file.

Its API is unlike the real three on purpose (its own paths, auth header, body shapes, error
envelope, stream events and terminator), so that nothing vendor-specific hides in the base:

    POST /v2/speak  {"model", "turns": [{"who", "say"}], "limit", "live", "tools": [{"name", "about", "schema"}]}
    200             {"model", "said", "calls": [{"id", "name", "args"}], "why": "done"|"cut"|"call",
                     "cost": {"in", "out"}}
    live=true       SSE: data: {"piece": "..."} | data: {"call": {...}} | event: end, data: {"why", "cost"}
                    an error mid-stream: event: problem, data: {"problem": {"kind", "text"}}
    errors          {"problem": {"kind": "busy"|"broken"|..., "text": "..."}}
    GET /v2/ping    the health check
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mirror_providers.errors import APIError, ModelNotFoundError
from mirror_providers.framing import ServerSentEvent
from mirror_providers.providers.http import ErrorEvent, HttpProvider, text_of, token_count
from mirror_providers.request import GenerateRequest
from mirror_providers.types import (
    FinishReason,
    GenerationResult,
    HealthStatus,
    ToolCall,
    ToolCallDelta,
    Usage,
)

WHY: dict[str, FinishReason] = {"done": "stop", "cut": "length", "call": "tool_calls"}


def _usage(cost: Mapping[str, Any]) -> Usage:
    i, o = token_count(cost, "in"), token_count(cost, "out")
    return Usage(input_tokens=i, output_tokens=o, total_tokens=i + o)


def _call(c: Mapping[str, Any]) -> ToolCall:
    return ToolCall(id=str(c["id"]), name=str(c["name"]), arguments=dict(c["args"]), arguments_json=json.dumps(c["args"]))


@dataclass
class ParrotStream:
    model: str
    why: str = "done"
    cost: Any = None
    calls: int = 0
    done: bool = False

    def feed(self, event: ServerSentEvent) -> Any:
        data = event.json()
        if event.event == "problem":
            raise ErrorEvent(data)
        if event.event == "end":
            self.why, self.cost, self.done = data["why"], data["cost"], True
            return None
        if "call" in data:
            c, self.calls = _call(data["call"]), self.calls + 1
            return "", (ToolCallDelta(self.calls - 1, c.id, c.name, c.arguments_json),)
        return data["piece"]

    def final(self) -> tuple[FinishReason | None, Usage | None]:
        return WHY.get(self.why, "other"), _usage(self.cost)


class ParrotProvider(HttpProvider):
    provider_id = "parrot"
    DEFAULT_BASE_URL = "https://api.parrot.invalid"
    DEFAULT_MODEL = "polly-1"
    API_KEY_ENV = "PARROT_API_KEY"
    BASE_URL_ENV = "PARROT_BASE_URL"
    REQUEST_ID_HEADER = "parrot-request"
    CHAT_PATH = "/v2/speak"
    STREAM_END = "its end event"
    ERROR_STATUSES: ClassVar[Mapping[str, int]] = {"busy": 529, "broken": 500}
    OWNED_FIELDS: ClassVar[Mapping[str, str]] = {"live": "call stream_sync() to stream"}

    def _auth_headers(self) -> dict[str, str]:
        return {"Parrot-Key": self._api_key} if self._api_key else {}

    def _error_details(self, body: Any) -> tuple[str | None, str | None, str | None]:
        problem = body.get("problem") if isinstance(body, dict) else None
        if not isinstance(problem, dict):
            return None, None, None
        text, kind = problem.get("text"), problem.get("kind")
        return (text if isinstance(text, str) else None), (kind if isinstance(kind, str) else None), None

    def _refine_error_class(self, cls: type[APIError], status: int, error_type: str | None,
                            error_code: str | None, is_json: bool) -> type[APIError]:
        return ModelNotFoundError if status == 404 and is_json else cls  # /v2/speak names no other resource

    def _build_payload(self, request: GenerateRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self._model, "live": stream,
                                "turns": [{"who": m.role, "say": m.text} for m in request.messages]}
        if request.max_tokens is not None:
            body["limit"] = request.max_tokens
        if request.tools:
            body["tools"] = [{"name": t.name, "about": t.description, "schema": t.parameters} for t in request.tools]
        return {**body, **request.extra}

    def _parse_result(self, data: Any) -> GenerationResult:
        calls = tuple(_call(c) for c in data.get("calls") or ())
        return GenerationResult(content=text_of(data["said"], "said"), model=str(data.get("model") or self._model),
                                provider="", finish_reason=WHY.get(data["why"], "other"), usage=_usage(data["cost"]),
                                tool_calls=calls, raw=dict(data))

    def _stream_parser(self) -> ParrotStream:
        return ParrotStream(self._model)

    def health_check_sync(self) -> HealthStatus:
        return self._health(lambda detail: self._send("GET", "/v2/ping", timeout=self.timeout.connect + 5) and None)
