"""Prompt-cache breakpoints, document parts and citations: the wire each vendor gets, what is
refused before sending, and citations read from answers and streams. Shapes: docs/protocols.md and
the shared 2026 notes (§4.6 prompt caching, §4.10 documents and citations, §3.4 OpenAI fields)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.base import ContentPart, Message, Tool, ValidationError
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.transport import HttpRequest, HttpResponse, MockTransport
from mirror_providers.types import Citation, join_chunks

from .server import FakeServer, Received, Reply
from .test_reasoning_out import Recorder

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PDF_B64 = base64.b64encode(PDF).decode()
BIG = "You are a careful analyst. " * 200

ANTHROPIC_OK = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5",
                "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 3, "output_tokens": 1}}
OPENAI_OK = {"id": "c1", "model": "gpt-6-luna", "choices": [{"index": 0, "finish_reason": "stop",
             "message": {"role": "assistant", "content": "ok"}}],
             "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}

# An answer citing a PDF page range (the §4.10 shape), after an uncited first block.
CITED_ANSWER = {
    "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5", "stop_reason": "end_turn",
    "usage": {"input_tokens": 2100, "output_tokens": 20},
    "content": [
        {"type": "text", "text": "According to the report, "},
        {"type": "text", "text": "revenue grew 12%",
         "citations": [{"type": "page_location", "cited_text": "Revenue increased by 12% year over year.",
                        "document_index": 0, "document_title": "Q3 report",
                        "start_page_number": 3, "end_page_number": 4}]},
        {"type": "text", "text": "."}]}


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


CITED_STREAM = _sse(
    {"type": "message_start", "message": {"id": "msg_2", "type": "message", "role": "assistant",
                                          "model": "claude-sonnet-5-5", "content": [],
                                          "usage": {"input_tokens": 2100, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "According to the report, "}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": "", "citations": []}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "citations_delta", "citation": {
        "type": "page_location", "cited_text": "Revenue increased by 12% year over year.", "document_index": 0,
        "document_title": "Q3 report", "start_page_number": 3, "end_page_number": 4}}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "revenue "}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "grew 12%"}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "."}},
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 20}},
    {"type": "message_stop"},
)

WANT_CITATION = Citation(kind="page_location", cited_text="Revenue increased by 12% year over year.",
                         document_index=0, document_title="Q3 report", start=3, end=4,
                         answer_start=len("According to the report, "),
                         answer_end=len("According to the report, revenue grew 12%"))


def anthropic(answer: Any = ANTHROPIC_OK, stream: bytes | None = None,
              model: str = "claude-sonnet-5-5") -> tuple[AnthropicProvider, Recorder]:
    rec = Recorder(answer, stream)
    return AnthropicProvider(model, api_key="k", transport=MockTransport(rec), max_retries=0), rec


def openai(model: str = "gpt-6-luna") -> tuple[OpenAIProvider, Recorder]:
    rec = Recorder(OPENAI_OK)
    return OpenAIProvider(api_key="sk-test", model=model, transport=MockTransport(rec), max_retries=0, api="chat"), rec


def ollama_recorder() -> tuple[list[dict[str, Any]], Callable[[HttpRequest], HttpResponse]]:
    """An Ollama transport handler that keeps each body and answers "ok"."""
    seen: list[dict[str, Any]] = []

    def handler(req: HttpRequest) -> HttpResponse:
        seen.append(json.loads(req.body or b"{}"))
        return HttpResponse(200, {"content-type": "application/json"}, json.dumps(
            {"model": "llama3.1", "message": {"role": "assistant", "content": "ok"}, "done": True,
             "done_reason": "stop"}).encode())

    return seen, handler


# -- cache breakpoints --------------------------------------------------------------------------

def test_anthropic_breakpoints_on_tools_system_and_parts_and_automatic_caching() -> None:
    llm, rec = anthropic()
    tool = Tool("lookup", "Find a fact", {"type": "object", "properties": {"q": {"type": "string"}}}, cache="1h")
    prompt = [Message.system(BIG, cache="1h"),
              Message.user((ContentPart.from_text("Background: " + BIG).cached(), ContentPart.from_text("Question?")))]
    llm.generate_sync(prompt, tools=[tool], system="Be brief.", cache=True)
    body = rec.bodies[-1]
    assert body["tools"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert body["system"] == [{"type": "text", "text": "Be brief."},
                              {"type": "text", "text": BIG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Background: " + BIG, "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Question?"}]}]
    assert body["cache_control"] == {"type": "ephemeral"}


def test_without_breakpoints_the_anthropic_body_is_unchanged() -> None:
    llm, rec = anthropic()
    llm.generate_sync([Message.system("Be brief."), Message.user((ContentPart.from_text("Hi"),))])
    assert rec.bodies[-1]["system"] == "Be brief." and rec.bodies[-1]["messages"][0]["content"] == "Hi"
    assert "cache_control" not in rec.bodies[-1]


def test_openai_and_ollama_get_no_cache_marks() -> None:
    llm, rec = openai()
    tool = Tool("lookup", parameters={"type": "object", "properties": {}}, cache="1h")
    llm.generate_sync([Message.system(BIG, cache="1h"), Message.user("Hi")], tools=[tool], cache="5m")
    body = rec.bodies[-1]
    assert body["messages"][0] == {"role": "system", "content": BIG}  # one text, as before
    assert "cache_control" not in json.dumps(body)
    seen, ollama_server = ollama_recorder()
    OllamaProvider("llama3.1", transport=MockTransport(ollama_server)).generate_sync(
        [Message.system(BIG, cache="1h"), Message.user("Hi")], cache=True)
    assert seen[0]["messages"][0] == {"role": "system", "content": BIG}
    assert "cache" not in json.dumps({k: v for k, v in seen[0].items() if k != "messages"})


@pytest.mark.parametrize(("prompt", "options", "match"), [
    ([Message.user(tuple(ContentPart.from_text(f"p{i}").cached() for i in range(5)))], {},
     "5 cache breakpoints .* at most 4"),
    ([Message.user(tuple(ContentPart.from_text(f"p{i}").cached() for i in range(4)))], {"cache": "5m"},
     "5 cache breakpoints .*and cache=.* at most 4"),
    ([Message.system("s", cache="5m"), Message.user((ContentPart.from_text("x").cached("1h"),))], {},
     r"messages\[1\].content\[0\] \(1h\) comes after messages\[0\].content\[0\] \(5m\)"),
    ([Message.user((ContentPart.from_text("x").cached("10m"),))], {}, "cache must be one of 5m, 1h"),
    ([Message.user((ContentPart.from_text("").cached(), ContentPart.from_text("x")))], {},
     "empty text part with a cache breakpoint"),
    ("hi", {"cache": "forever"}, "cache must be True, False or one of 5m, 1h"),
    ("hi", {"tools": [Tool("t", cache="1d")]}, r"tools\[0\] \(t\) cache must be one of"),
])
def test_bad_breakpoints_are_refused_before_sending(prompt: Any, options: dict[str, Any], match: str) -> None:
    llm, rec = anthropic()
    with pytest.raises(ValidationError, match=match):
        llm.generate_sync(prompt, **options)
    assert rec.bodies == []


def test_a_tool_breakpoint_before_a_system_one_orders_tools_first() -> None:
    """Tools come before system in the cached prefix: a 5m tool then a 1h system prompt is refused
    even though the system message is listed first."""
    llm, rec = anthropic()
    with pytest.raises(ValidationError, match=r"messages\[0\].content\[0\] \(1h\) comes after tools\[0\] \(5m\)"):
        llm.generate_sync([Message.system("s", cache="1h"), Message.user("q")], tools=[Tool("t", cache="5m")])


def test_anthropic_dict_parts_keep_their_cache_control() -> None:
    llm, rec = anthropic()
    llm.generate_sync([{"role": "user", "content": [
        {"type": "text", "text": BIG, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "Question?"}]}])
    assert rec.bodies[-1]["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


# -- documents ----------------------------------------------------------------------------------

def test_anthropic_document_blocks_pdf_url_and_text() -> None:
    llm, rec = anthropic()
    parts = (ContentPart.document_bytes(PDF, title="Q3 report", context="unaudited", citations=True).cached(),
             ContentPart.document_url("https://example.com/q3.pdf"),
             ContentPart.document_text("Line one.\nLine two.", title="notes"),
             ContentPart.from_text("Summarise."))
    llm.generate_sync([Message.user(parts)])
    blocks = rec.bodies[-1]["messages"][0]["content"]
    assert blocks[0] == {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                        "data": PDF_B64},
                         "title": "Q3 report", "context": "unaudited", "citations": {"enabled": True},
                         "cache_control": {"type": "ephemeral"}}
    assert blocks[1] == {"type": "document", "source": {"type": "url", "url": "https://example.com/q3.pdf"}}
    assert blocks[2] == {"type": "document", "title": "notes",
                         "source": {"type": "text", "media_type": "text/plain", "data": "Line one.\nLine two."}}
    assert blocks[3] == {"type": "text", "text": "Summarise."}


def test_openai_gets_a_pdf_as_a_file_part_and_text_as_text() -> None:
    llm, rec = openai()
    llm.generate_sync([Message.user((ContentPart.document_bytes(PDF, filename="q3.pdf"),
                                     ContentPart.document_text("Body", title="T"),
                                     ContentPart.from_text("Summarise.")))])
    parts = rec.bodies[-1]["messages"][0]["content"]
    assert parts[0] == {"type": "file", "file": {"filename": "q3.pdf", "file_data": f"data:application/pdf;base64,{PDF_B64}"}}
    assert parts[1] == {"type": "text", "text": "Document: T\n\nBody"}
    with pytest.raises(ValidationError, match="PDFs as bytes, not URLs"):
        llm.generate_sync([Message.user((ContentPart.document_url("https://example.com/q.pdf"),))])


def test_ollama_reads_text_documents_and_refuses_pdfs() -> None:
    seen, server = ollama_recorder()
    llm = OllamaProvider("llama3.1", transport=MockTransport(server))
    llm.generate_sync([Message.user((ContentPart.document_text("The body.", title="Memo"),
                                     ContentPart.from_text("Summarise.")))])
    assert seen[0]["messages"][0]["content"] == "Document: Memo\n\nThe body.\n\nSummarise."
    with pytest.raises(ValidationError, match="llama3.1 does not read PDF documents"):
        llm.generate_sync([Message.user((ContentPart.document_bytes(PDF),))])
    with pytest.raises(ValidationError, match="Ollama does not read PDFs"):  # a model the catalog does not know
        OllamaProvider("my-model", transport=MockTransport(server)).generate_sync(
            [Message.user((ContentPart.document_bytes(PDF),))])
    assert len(seen) == 1


@pytest.mark.parametrize(("part", "match"), [
    (ContentPart(type="document", data="not base64!!", media_type="application/pdf"), "not base64"),
    (ContentPart(type="document", data=base64.b64encode(b"GIF89a...").decode(), media_type="application/pdf"),
     "not a PDF"),
    (ContentPart(type="document", data=PDF_B64, media_type="application/msword"), "document type"),
    (ContentPart(type="document", text="x", media_type="application/pdf"), "must be text/plain"),
    (ContentPart(type="document", data=PDF_B64, text="x", media_type="application/pdf"), "data and text"),
    (ContentPart(type="document", media_type="application/pdf"), "no source"),
    (ContentPart(type="document", url="file:///etc/passwd", media_type="application/pdf"), "must be http"),
    (ContentPart(type="document", text="x", media_type="text/plain", citations="yes"),  # type: ignore[arg-type]
     "citations must be True or False"),
])
def test_bad_documents_are_refused_before_sending(part: ContentPart, match: str) -> None:
    llm, rec = anthropic()
    with pytest.raises(ValidationError, match=match):
        llm.generate_sync([Message.user((part,))])
    assert rec.bodies == []


def test_documents_only_in_user_turns_and_only_for_models_that_read_pdfs() -> None:
    llm, rec = anthropic()
    with pytest.raises(ValidationError, match="only allowed in user messages"):
        llm.generate_sync([Message.user("q"), Message("assistant", (ContentPart.document_bytes(PDF),)),
                           Message.user("more")])
    old = OpenAIProvider(api_key="sk-test", model="gpt-4", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValidationError, match="gpt-4 does not read PDF documents"):
        old.generate_sync([Message.user((ContentPart.document_bytes(PDF),))])


def test_document_dicts_in_either_vendor_shape() -> None:
    llm, rec = anthropic()
    llm.generate_sync([{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64},
         "title": "Q3", "citations": {"enabled": True}, "cache_control": {"type": "ephemeral"}},
        {"type": "file", "file": {"filename": "b.pdf", "file_data": f"data:application/pdf;base64,{PDF_B64}"}},
        {"type": "text", "text": "Compare."}]}])
    blocks = rec.bodies[-1]["messages"][0]["content"]
    assert blocks[0]["title"] == "Q3" and blocks[0]["citations"] == {"enabled": True}
    assert blocks[0]["cache_control"] == {"type": "ephemeral"}
    assert blocks[1]["source"] == {"type": "base64", "media_type": "application/pdf", "data": PDF_B64}
    with pytest.raises(ValidationError, match="file ids are not supported"):
        llm.generate_sync([{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}])


def test_document_file_reads_pdf_and_text(tmp_path: Any) -> None:
    pdf, txt = tmp_path / "report.pdf", tmp_path / "notes.md"
    pdf.write_bytes(PDF)
    txt.write_text("# Notes\nhello", encoding="utf-8")
    assert ContentPart.document_file(pdf) == ContentPart.document_bytes(PDF, filename="report.pdf")
    assert ContentPart.document_file(txt).text == "# Notes\nhello"
    assert ContentPart.document_file(txt).title == "notes.md"


# -- citations ----------------------------------------------------------------------------------

def test_citations_on_the_result_with_the_text_they_back() -> None:
    llm, _ = anthropic(CITED_ANSWER)
    r = llm.generate_sync([Message.user((ContentPart.document_bytes(PDF, title="Q3 report", citations=True),
                                         ContentPart.from_text("How did revenue do?")))])
    assert r.content == "According to the report, revenue grew 12%."
    assert r.citations == (WANT_CITATION,)
    c = r.citations[0]
    assert r.content[c.answer_start:c.answer_end] == "revenue grew 12%"
    assert r.to_message().content == r.content  # replayed as plain text


def test_citations_streamed_match_the_unstreamed_answer() -> None:
    llm, _ = anthropic(CITED_ANSWER, CITED_STREAM)
    chunks = list(llm.stream_sync("How did revenue do?"))
    cited = [c for c in chunks if c.citations]
    assert len(cited) == 1 and cited[0].citations == (WANT_CITATION,)
    joined = join_chunks(chunks)
    assert joined.content == "According to the report, revenue grew 12%."
    assert joined.citations == llm.generate_sync("How did revenue do?").citations


def test_citations_stream_on_a_real_socket() -> None:
    with FakeServer() as server:
        def route(req: Received, reply: Reply) -> None:
            reply.stream(200, [CITED_STREAM[i:i + 97] for i in range(0, len(CITED_STREAM), 97)],
                         {"Content-Type": "text/event-stream"})
        server.route("POST", "/v1/messages", route)
        llm = AnthropicProvider("claude-sonnet-5-5", api_key="k", base_url=server.url, max_retries=0)
        joined = join_chunks(llm.stream_sync("How did revenue do?"))
    assert joined.citations == (WANT_CITATION,)


def test_a_malformed_citation_is_a_typed_error() -> None:
    from mirror_providers.base import InvalidResponseError, StreamError
    bad = json.loads(json.dumps(CITED_ANSWER))
    bad["content"][1]["citations"] = ["not an object"]
    llm, _ = anthropic(bad)
    with pytest.raises(InvalidResponseError, match="expected fields"):
        llm.generate_sync("q")
    stream = CITED_STREAM.replace(b'"citation": {"type": "page_location"', b'"citation": 7, "x": {"type": "p"')
    llm, _ = anthropic(CITED_ANSWER, stream)
    with pytest.raises(StreamError, match="not understood"):
        list(llm.stream_sync("q"))


def test_mime_wrapped_base64_is_base64() -> None:
    llm, rec = anthropic()
    wrapped = "\r\n".join(PDF_B64[i:i + 76] for i in range(0, len(PDF_B64), 76)) + "\n"
    llm.generate_sync([Message.user((ContentPart(type="document", data=wrapped, media_type="application/pdf"),
                                     ContentPart.from_text("Summarise.")))])
    assert rec.bodies[-1]["messages"][0]["content"][0]["source"]["data"] == PDF_B64


def test_automatic_caching_comes_last_so_it_may_not_outlive_an_explicit_breakpoint() -> None:
    llm, rec = anthropic()
    with pytest.raises(ValidationError, match=r"cache breakpoint cache= \(1h\) comes after messages\[0\]"):
        llm.generate_sync([Message.user((ContentPart.from_text("x").cached("5m"),))], cache="1h")
    llm.generate_sync([Message.user((ContentPart.from_text("x").cached("1h"),))], cache="5m")
    assert rec.bodies[-1]["cache_control"] == {"type": "ephemeral"}
