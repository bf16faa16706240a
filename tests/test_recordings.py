"""Replay the real traffic in ``../shared/recordings/<vendor>/*.yaml`` through the providers.

Each recorded chat call's response (status, headers, body; gzip ``!!binary`` bodies decoded) is
served by a ``MockTransport`` to the matching provider, called the way the recording was made
(streaming or not). A success must parse into a complete result; an error status must raise the
``APIError`` subclass the status table names, with the status and request id.

When the folder is absent the tests report a skip naming it (pytest ``-ra`` prints the reason).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.errors import APIError, TruncatedStreamError, error_class_for_status
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.provider import Provider
from mirror_providers.transport import HttpRequest, HttpResponse, MockTransport, StreamResponse
from mirror_providers.types import join_chunks

RECORDINGS = Path(__file__).resolve().parent.parent.parent / "shared" / "recordings"
ENDPOINTS = {"/chat/completions": "openai", "/v1/messages": "anthropic", "/api/chat": "ollama"}


def _body(raw: Any) -> bytes:
    if isinstance(raw, dict):
        raw = raw.get("string", b"")
    if raw is None:
        return b""
    data = raw if isinstance(raw, bytes) else str(raw).encode()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _headers(raw: Any) -> dict[str, str]:
    out = {}
    for k, v in (raw or {}).items():
        out[k.lower()] = v[0] if isinstance(v, list) else str(v)
    out.pop("content-encoding", None)  # the body is decoded above
    return out


def interactions() -> list[Any]:
    if not RECORDINGS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{RECORDINGS} is absent: no real traffic to replay"))]
    found = []
    for path in sorted(RECORDINGS.rglob("*.yaml")):
        doc = yaml.load(path.read_text(), Loader=yaml.SafeLoader) or {}  # noqa: S506 - SafeLoader
        for i, item in enumerate(doc.get("interactions") or ()):
            uri = str(item["request"].get("uri", "")).split("?", 1)[0]
            vendor = next((v for suffix, v in ENDPOINTS.items() if uri.endswith(suffix)), None)
            if vendor and item["request"].get("method", "").upper() == "POST":
                found.append(pytest.param((vendor, item), id=f"{path.relative_to(RECORDINGS)}#{i}"))
    return found


def make(vendor: str, transport: MockTransport) -> Provider:
    kw: dict[str, Any] = {"transport": transport, "max_retries": 0}
    if vendor == "openai":
        return OpenAIProvider(model="gpt-4o-mini", api_key="badkey", **kw)
    if vendor == "anthropic":
        return AnthropicProvider(model="claude-haiku-4-5", api_key="badkey", **kw)
    return OllamaProvider("llama3.1", **kw)


@pytest.mark.parametrize("recorded", interactions())
def test_recorded_response_parses(recorded: tuple[str, dict[str, Any]]) -> None:
    vendor, item = recorded
    response = item["response"]
    status = int(response["status"]["code"])
    headers = _headers(response.get("headers"))
    body = _body(response.get("body"))
    try:
        sent = json.loads(_body(item["request"].get("body")) or b"{}")
    except ValueError:
        sent = {}
    streaming = bool(sent.get("stream", vendor == "ollama"))

    def handler(req: HttpRequest) -> HttpResponse | StreamResponse:
        if streaming:
            return StreamResponse(status, headers, [body[i:i + 97] for i in range(0, len(body), 97)])
        return HttpResponse(status, headers, body)

    provider = make(vendor, MockTransport(handler))
    call = (lambda: join_chunks(provider.stream_sync("replay"))) if streaming else (lambda: provider.generate_sync("replay"))
    if status >= 400:
        with pytest.raises(APIError) as info:
            call()
        err = info.value
        assert isinstance(err, error_class_for_status(status)) and err.status == status
        assert "badkey" not in str(err)
        return
    terminators = {"openai": b"[DONE]", "anthropic": b"message_stop", "ollama": b'"done":true'}
    if streaming and terminators[vendor] not in body.replace(b'"done": true', b'"done":true'):
        with pytest.raises(TruncatedStreamError):  # a cut recording must never pass as an answer
            call()
        return
    result = call()
    assert result.finish_reason is not None
    assert result.content or result.tool_calls
