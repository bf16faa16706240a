"""Read the real cassettes in ``../shared/recordings`` and rebuild the calls they recorded.

Three layouts are in use (``recordings/README.md``): vcrpy's standard one, pydantic-ai's (the
request as a ``parsed_body`` mapping, lower-cased header names, ``|+`` literal bodies) and the one
vcrpy's older httpx stub wrote for dd-trace-py (the response as ``content`` and ``status_code``).
``load`` turns each into one ``Interaction`` with its bodies decoded (gzip ``!!binary`` included).

``call_for`` turns a recorded request body back into our arguments (messages, options, the model),
and ``differences`` says where the body our provider sent differs from the recorded one, so the
replay test can check that every difference is an intended one.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mirror_providers.types import ContentPart, Message, ToolCall

RECORDINGS = Path(__file__).resolve().parent.parent.parent / "shared" / "recordings"
ENDPOINTS = {"/chat/completions": "openai", "/v1/messages": "anthropic", "/api/chat": "ollama"}
EMPTY: tuple[Any, ...] = (None, "", {}, [])


@dataclass(frozen=True)
class Interaction:
    """One recorded request and its response, whatever the cassette's layout."""

    cassette: str  # the path under RECORDINGS
    number: int
    layout: str  # "vcrpy", "pydantic-ai" or "dd-trace-httpx"
    method: str
    uri: str
    request: dict[str, Any]  # the JSON body ({} when there is none)
    status: int
    headers: dict[str, str]  # lower-cased names; content-encoding gone once the body is decoded
    body: bytes = field(repr=False)

    @property
    def key(self) -> str:
        return f"{self.cassette}#{self.number}"

    @property
    def vendor(self) -> str | None:
        path = self.uri.split("?", 1)[0]
        if self.method != "POST":
            return None
        return next((v for suffix, v in ENDPOINTS.items() if path.endswith(suffix)), None)

    @property
    def streaming(self) -> bool:
        return bool(self.request.get("stream", self.vendor == "ollama"))  # Ollama streams by default


def _raw_bytes(raw: Any) -> bytes:
    if isinstance(raw, dict):
        raw = raw.get("string")
    if raw is None:
        return b""
    return raw if isinstance(raw, bytes) else str(raw).encode("utf-8")  # !!binary loads as bytes


def _decoded(data: bytes, encoding: str, where: str) -> bytes:
    encoding = encoding.lower().strip()
    if "gzip" in encoding or data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding not in ("", "identity"):
        raise ValueError(f"{where}: cannot decode content-encoding {encoding!r}")
    return data


def _headers(raw: Any) -> dict[str, str]:
    return {str(k).lower(): ", ".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in (raw or {}).items()}


def _request_body(request: dict[str, Any], where: str) -> dict[str, Any]:
    if "parsed_body" in request:  # pydantic-ai: rebuilt as json.dumps(parsed_body)
        return dict(request["parsed_body"] or {})
    headers = _headers(request.get("headers"))
    data = _decoded(_raw_bytes(request.get("body")), headers.get("content-encoding", ""), where)
    if not data.strip():
        return {}
    parsed = json.loads(data)
    if not isinstance(parsed, dict):
        raise ValueError(f"{where}: the request body is not a JSON object")
    return parsed


def load(path: Path) -> list[Interaction]:
    """Every interaction of one cassette. Raises ValueError for a layout it does not know."""
    name = path.relative_to(RECORDINGS).as_posix()
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    found = []
    for i, item in enumerate(doc.get("interactions") or ()):
        where = f"{name}#{i}"
        request, response = item["request"], item["response"]
        if "status_code" in response and "content" in response:
            layout, status, raw = "dd-trace-httpx", int(response["status_code"]), response["content"]
        elif isinstance(response.get("status"), dict) and "body" in response:
            layout = "pydantic-ai" if "parsed_body" in request else "vcrpy"
            status, raw = int(response["status"]["code"]), response["body"]
        else:
            raise ValueError(f"{where}: unknown response layout with keys {sorted(response)}")
        headers = _headers(response.get("headers"))
        body = _decoded(_raw_bytes(raw), headers.pop("content-encoding", ""), where)
        found.append(Interaction(name, i, layout, str(request.get("method", "")).upper(), str(request.get("uri", "")),
                                 _request_body(request, where), status, headers, body))
    return found


def all_interactions() -> list[Interaction]:
    return [x for path in sorted(RECORDINGS.rglob("*.yaml")) for x in load(path)]


# -- the recorded request as our arguments ------------------------------------------------------

@dataclass
class Call:
    """Our arguments for a recorded request, and what had to change to make it."""

    model: str
    messages: list[Any]
    options: dict[str, Any]
    nearest: dict[str, str]  # body path -> why the library cannot send it as recorded
    added: dict[str, Any]  # body path -> the value the library adds there


def call_for(vendor: str, body: dict[str, Any]) -> Call:
    body = dict(body)
    model = str(body.pop("model"))
    changed: dict[str, str] = {}
    added: dict[str, Any] = {}
    body.pop("stream", None)
    if vendor == "openai":
        body.pop("stream_options", None)  # we always ask for usage on a stream
        messages = body.pop("messages")
        if body.get("n", 1) != 1:
            changed["n"] = f"n={body.pop('n')} replayed as one choice: the library refuses n > 1"
        if "max_completion_tokens" in body:
            body["max_tokens"] = body.pop("max_completion_tokens")
        for i, tool in enumerate(body.get("tools") or ()):
            if "strict" in tool.get("function", {}):
                changed[f"tools[{i}].function.strict"] = "strict schemas are not modelled by Tool"
    elif vendor == "anthropic":
        messages = [m for turn in body.pop("messages") for m in _anthropic_turn(turn)]
        if "system" in body:
            system = body.pop("system")
            body["system"] = system if isinstance(system, str) else "\n\n".join(b["text"] for b in system)
        if "stop_sequences" in body:
            body["stop"] = body.pop("stop_sequences")
    else:
        messages = body.pop("messages")
        for key in ("format", "options", "keep_alive", "tools"):
            if body.get(key) in EMPTY:
                body.pop(key, None)  # the defaults, written out by ollama-python
        calls: list[Any] = []
        for i, m in enumerate(messages):  # a result without an id answers the next call, in order
            if m.get("tool_calls"):
                calls = list(m["tool_calls"])
            elif m["role"] == "tool" and not m.get("tool_call_id") and not m.get("tool_name") and calls:
                added[f"messages[{i}].tool_name"] = calls.pop(0)["function"]["name"]
    options: dict[str, Any] = {k: body.pop(k) for k in ("max_tokens", "temperature", "top_p", "stop", "tools", "tool_choice",
                                         "parallel_tool_calls", "system") if k in body}
    if body:
        options["extra"] = body  # anything else goes as recorded
    return Call(model, messages, options, changed, added)


def _anthropic_turn(turn: dict[str, Any]) -> list[Message]:
    content = turn["content"]
    if isinstance(content, str):
        return [Message(turn["role"], content)]
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for block in content:
        if block["type"] == "text":
            parts.append(ContentPart.from_text(block["text"]))
        elif block["type"] == "image":
            src = block["source"]
            parts.append(ContentPart(type="image", data=src["data"], media_type=src["media_type"])
                         if src["type"] == "base64" else ContentPart.image_url(src["url"]))
        elif block["type"] == "tool_use":
            calls.append(ToolCall(block["id"], block["name"], block["input"], json.dumps(block["input"])))
        elif block["type"] == "tool_result":
            results.append(Message("tool", block["content"], tool_call_id=block["tool_use_id"]))
        else:
            raise ValueError(f"no mapping for the recorded Anthropic block type {block['type']!r}")
    if results:
        return results + ([Message(turn["role"], tuple(parts))] if parts else [])
    text_only = all(p.type == "text" for p in parts)
    message_content: Any = "".join(p.text or "" for p in parts) if text_only and len(parts) <= 1 else tuple(parts)
    return [Message(turn["role"], message_content, tool_calls=tuple(calls))]


# -- comparing the body we sent with the recorded one -----------------------------------------

def _normal(vendor: str, value: Any) -> Any:
    """Forms that mean the same on the wire made equal: a text-only Anthropic content string and
    its one text block; Ollama's defaults written out or left out."""
    if isinstance(value, dict):
        out = {k: _normal(vendor, v) for k, v in value.items()}
        if vendor == "ollama":
            out = {k: v for k, v in out.items() if v not in EMPTY}
        return out
    if isinstance(value, list):
        return [_normal(vendor, v) for v in value]
    return value


def _anthropic_content(body: dict[str, Any]) -> dict[str, Any]:
    body = dict(body)
    body["messages"] = [{**m, "content": [{"type": "text", "text": m["content"]}]} if isinstance(m["content"], str)
                        else m for m in body.get("messages", ())]
    return body


def differences(vendor: str, sent: dict[str, Any], recorded: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Body path -> (sent, recorded) for every leaf where the two differ."""
    if vendor == "anthropic":
        sent, recorded = _anthropic_content(sent), _anthropic_content(recorded)
    out: dict[str, tuple[Any, Any]] = {}
    _diff(_normal(vendor, sent), _normal(vendor, recorded), "", out)
    return out


_MISSING = "<absent>"


def _diff(a: Any, b: Any, path: str, out: dict[str, tuple[Any, Any]]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            _diff(a.get(k, _MISSING), b.get(k, _MISSING), f"{path}.{k}" if path else str(k), out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{path}[{i}]", out)
    elif a != b or type(a) is not type(b):
        out[path] = (a, b)
