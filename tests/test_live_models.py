"""refresh_models_sync: the vendors' models endpoints merged over the shipped catalog, cached on disk.

Ollama's listing is the real recorded ``/api/tags`` answer (``recordings/ollama/api_tags.yaml``);
OpenAI's and Anthropic's follow the documented shapes (docs/protocols.md §6; the shared 2026 notes
§3.6 and §4.9), served by a loopback server.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from mirror_providers import live_models
from mirror_providers import models as model_data
from mirror_providers.cli import main
from mirror_providers.errors import InvalidResponseError, ModelRetiredError, ValidationError
from mirror_providers.providers.anthropic import AnthropicProvider
from mirror_providers.providers.ollama import OllamaProvider
from mirror_providers.providers.openai import OpenAIProvider

from .recordings import RECORDINGS, load
from .server import FakeServer, Received, Reply

KEY = "sk-refresh-test-0123456789abcdef"

OPENAI_MODELS = {"object": "list", "data": [
    {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system",
     "shutdown_date": "2027-01-14"},
    {"id": "gpt-6.2-astra", "object": "model", "created": 1790000000, "owned_by": "system", "shutdown_date": None},
    {"id": "gpt-7-preview", "object": "model", "created": 1795000000, "owned_by": "system"},
]}


def _anthropic_entry(model_id: str, *, adaptive: bool, max_input: Any = 200000, pdf: bool = True) -> dict[str, Any]:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": "2025-10-15T00:00:00Z",
            "max_input_tokens": max_input, "max_tokens": 64000,
            "capabilities": {"image_input": {"supported": True}, "pdf_input": {"supported": pdf},
                             "structured_outputs": {"supported": True},
                             "thinking": {"supported": True,
                                          "types": {"enabled": {"supported": True},
                                                    "adaptive": {"supported": adaptive}}}}}


def _serve(server: FakeServer, method: str, path: str, body: Any) -> None:
    def route(req: Received, reply: Reply) -> None:
        reply.json(200, body)
    server.route(method, path, route)


# -- OpenAI -------------------------------------------------------------------------------------

def test_openai_shutdown_dates_become_lifecycle_and_unknown_models_are_added(server: FakeServer,
                                                                               model_cache: Path) -> None:
    _serve(server, "GET", "/v1/models", OPENAI_MODELS)
    llm = OpenAIProvider(api_key=KEY, model="gpt-4o-mini", base_url=server.url + "/v1")
    catalog = llm.refresh_models_sync()
    assert catalog.source == "vendor" and catalog.listed == ("gpt-4o-mini", "gpt-6.2-astra", "gpt-7-preview")
    mini = catalog.find("gpt-4o-mini")
    assert mini is not None and mini.retires_on == "2027-01-14" and mini.status("2026-12-01") == "deprecated"
    assert mini.status("2027-01-14") == "retired"
    new = catalog.find("gpt-7-preview")
    assert new is not None and new.provider == "openai"
    assert (new.vision, new.tools) == (OpenAIProvider.UNKNOWN_MODEL.vision, OpenAIProvider.UNKNOWN_MODEL.tools)
    astra = catalog.find("gpt-6.2-astra")
    assert astra == OpenAIProvider.find_model("gpt-6.2-astra")  # nothing reported: the shipped row unchanged
    assert llm.model_info is not None and llm.model_info.retires_on == "2027-01-14"
    # the cache holds only what the vendor said: no key, no URL
    (path,) = list(model_cache.iterdir())
    text = path.read_text()
    assert KEY not in text and server.url not in text and json.loads(text)["rows"][0]["id"] == "gpt-4o-mini"


def test_a_later_provider_for_the_same_server_starts_from_the_cache(server: FakeServer,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"object": "list", "data": [{"id": "gpt-6.2-astra", "shutdown_date": "2026-11-20"}]}
    _serve(server, "GET", "/v1/models", body)
    OpenAIProvider(api_key=KEY, model="gpt-6.2-astra", base_url=server.url + "/v1").refresh_models_sync()
    later = OpenAIProvider(api_key=KEY, model="gpt-6.2-astra", base_url=server.url + "/v1")
    assert later.model_info is not None and later.model_info.status("2026-12-01") == "retired"
    elsewhere = OpenAIProvider(api_key=KEY, model="gpt-6.2-astra", base_url="http://127.0.0.1:9/v1")
    assert elsewhere.model_info is not None and elsewhere.model_info.retires_on is None


def test_the_vendor_host_refuses_a_model_its_listing_says_is_shut_down(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"id": "gpt-6.2-astra", "retires_on": "2026-11-20", "lifecycle": "retired"}]
    live_models.write_cache("openai", "https://api.openai.com/v1", rows, time.time())
    llm = OpenAIProvider(api_key=KEY, model="gpt-6.2-astra")
    with pytest.raises(ModelRetiredError, match="shut down by openai on 2026-11-20"):
        llm.generate_sync("hi")


def test_max_age_uses_the_cache_without_asking(server: FakeServer) -> None:
    _serve(server, "GET", "/v1/models", OPENAI_MODELS)
    llm = OpenAIProvider(api_key=KEY, model="gpt-4o-mini", base_url=server.url + "/v1")
    first = llm.refresh_models_sync()
    asked = len(server.received)
    again = llm.refresh_models_sync(max_age_s=3600)
    assert len(server.received) == asked and again.source == "cache"
    assert again.fetched_at == pytest.approx(first.fetched_at) and again.models == first.models
    assert again.age_s(now=again.fetched_at + 5) == pytest.approx(5)
    llm.refresh_models_sync(max_age_s=0)
    assert len(server.received) == asked + 1
    for bad in (-1, float("nan"), "1h", True):
        with pytest.raises(ValidationError, match="max_age_s"):
            llm.refresh_models_sync(max_age_s=bad)  # type: ignore[arg-type]


def test_a_listing_entry_without_an_id_is_a_typed_error(server: FakeServer) -> None:
    _serve(server, "GET", "/v1/models", {"data": [{"object": "model"}]})
    llm = OpenAIProvider(api_key=KEY, base_url=server.url + "/v1")
    with pytest.raises(InvalidResponseError, match="without a text id"):
        llm.refresh_models_sync()


def test_an_unwritable_cache_still_refreshes(server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("MIRROR_PROVIDERS_CACHE_DIR", str(blocker / "cache"))
    _serve(server, "GET", "/v1/models", OPENAI_MODELS)
    with caplog.at_level(logging.WARNING, "mirror_providers"):
        catalog = OpenAIProvider(api_key=KEY, base_url=server.url + "/v1").refresh_models_sync()
    assert catalog.find("gpt-7-preview") is not None
    assert "could not cache the openai model listing" in caplog.text


def test_a_corrupt_or_foreign_or_stale_cache_is_ignored(model_cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = "https://api.openai.com/v1"
    path = Path(live_models.cache_path("openai", url))
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, "mirror_providers"):
        assert live_models.read_cache("openai", url) is None
    assert "unreadable" in caplog.text
    path.write_text(json.dumps({"schema": 1, "provider": "anthropic", "fetched_at": time.time(), "rows": []}))
    os.utime(path, (time.time() + 1, time.time() + 1))
    assert live_models.read_cache("openai", url) is None
    stale = time.mktime(time.strptime(model_data.as_of(), "%Y-%m-%d")) - 5 * 86400
    path.write_text(json.dumps({"schema": 1, "provider": "openai", "fetched_at": stale,
                                "rows": [{"id": "gpt-6.2-astra", "lifecycle": "retired"}]}))
    os.utime(path, (time.time() + 2, time.time() + 2))
    assert live_models.read_cache("openai", url) is None  # older than the shipped catalog: it wins


def test_odd_field_values_keep_the_catalog_value(caplog: pytest.LogCaptureFixture) -> None:
    shipped = OpenAIProvider.MODELS
    live = [{"id": "gpt-6.2-astra", "context_window": "lots", "max_output": -5, "vision": "yes",
             "lifecycle": "gone", "retires_on": "soon", "reasoning": "telepathy", "surprise": 1},
            {"id": ""}, "not a row"]
    with caplog.at_level(logging.WARNING, "mirror_providers"):
        merged = live_models.merge_live(shipped, live, OpenAIProvider.UNKNOWN_MODEL, "openai")  # type: ignore[arg-type]
    assert merged == shipped
    for name in ("context_window", "max_output", "vision", "lifecycle", "retires_on", "reasoning"):
        assert f"{name} of gpt-6.2-astra" in caplog.text


# -- Anthropic ----------------------------------------------------------------------------------

def test_anthropic_models_api_pages_and_capabilities(server: FakeServer) -> None:
    pages = {"": {"data": [_anthropic_entry("claude-haiku-4-5-20251001", adaptive=False, max_input=190000)],
                  "has_more": True, "first_id": "claude-haiku-4-5-20251001", "last_id": "claude-haiku-4-5-20251001"},
             "claude-haiku-4-5-20251001": {"data": [_anthropic_entry("claude-nova-6", adaptive=True, pdf=False)],
                                           "has_more": False, "first_id": "claude-nova-6", "last_id": "claude-nova-6"}}

    def route(req: Received, reply: Reply) -> None:
        after = req.path.partition("after_id=")[2]
        reply.json(200, pages[after])
    server.route("GET", "/v1/models", route)
    llm = AnthropicProvider(api_key=KEY, model="claude-haiku-4-5", base_url=server.url)
    catalog = llm.refresh_models_sync()
    assert catalog.listed == ("claude-haiku-4-5-20251001", "claude-nova-6")
    haiku = catalog.find("claude-haiku-4-5")
    assert haiku is not None and (haiku.context_window, haiku.max_output) == (190000, 64000)
    assert (haiku.reasoning, haiku.documents, haiku.structured_output) == ("budget", True, True)
    assert haiku.price_input == 1.0  # what the listing does not say is kept
    nova = catalog.find("claude-nova-6")
    assert nova is not None and (nova.reasoning, nova.documents, nova.vision) == ("adaptive", False, True)
    assert llm.model_info == haiku
    assert llm.list_models_sync() == ["claude-haiku-4-5-20251001", "claude-nova-6"]


# -- Ollama, on the real recorded /api/tags ---------------------------------------------------------

def test_ollama_tags_and_show_on_the_recorded_listing(server: FakeServer) -> None:
    if not RECORDINGS.is_dir():
        pytest.skip(f"{RECORDINGS} is absent: no real traffic to replay")
    (x,) = load(RECORDINGS / "ollama" / "api_tags.yaml")
    tags = json.loads(x.body)
    names = [m["name"] for m in tags["models"]]
    server.route("GET", "/api/tags", lambda req, reply: reply.body(x.status, x.body, {"Content-Type": "application/json"}))
    shown: list[str] = []

    def show(req: Received, reply: Reply) -> None:
        name = req.json()["model"]
        shown.append(name)
        if name == names[-1]:
            reply.json(404, {"error": f"model '{name}' not found"})  # removed since the listing
            return
        caps = ["completion", "tools"] + (["vision"] if "vision" in name or "llava" in name else [])
        reply.json(200, {"details": {}, "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
                         "capabilities": caps})
    server.route("POST", "/api/show", show)
    llm = OllamaProvider("llama3.1", host=server.url)
    catalog = llm.refresh_models_sync()
    assert shown == names
    assert catalog.listed == tuple(n.removesuffix(":latest") for n in names)
    for name in names[:-1]:
        row = catalog.find(name.removesuffix(":latest"))
        assert row is not None and row.context_window == 131072 and row.tools
    last = catalog.find(names[-1].removesuffix(":latest"))
    assert last is not None
    if OllamaProvider.find_model(names[-1]) is None:  # unknown, and not shown: the conservative row
        assert (last.tools, last.context_window) == (False, OllamaProvider.UNKNOWN_MODEL.context_window)


def test_cli_models_refresh(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(server, "GET", "/v1/models", OPENAI_MODELS)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    out, err = io.StringIO(), io.StringIO()
    assert main(["models", "--refresh", "--provider", "openai"], out, err) == 0
    text = out.getvalue()
    assert "gpt-7-preview" in text and "until 2027-01-14" in text
    assert "openai: 3 models listed by the vendor" in err.getvalue()
    out = io.StringIO()
    assert main(["models", "--refresh", "--provider", "openai", "--json"], out, io.StringIO()) == 0
    rows = {r["id"]: r for r in json.loads(out.getvalue())}
    assert rows["gpt-7-preview"]["listed"] is True and rows["gpt-4o"]["listed"] is False
    assert KEY not in text


# -- what a hostile or odd listing or cache does (each once broke something) ------------------------

def test_a_shut_down_snapshot_does_not_retire_its_family(server: FakeServer) -> None:
    body = {"data": [{"id": "gpt-5.5", "shutdown_date": None},
                     {"id": "gpt-5.5-2026-04-23", "shutdown_date": "2026-11-01"}]}
    _serve(server, "GET", "/v1/models", body)
    shipped = OpenAIProvider.find_model("gpt-5.5")
    assert shipped is not None and "gpt-5.5-2026-04-23" in shipped.names()
    catalog = OpenAIProvider(api_key=KEY, model="gpt-5.5", base_url=server.url + "/v1").refresh_models_sync()
    row = catalog.find("gpt-5.5")
    assert row is not None and row.status("2026-12-01") == "active" and row.retires_on == shipped.retires_on


@pytest.mark.parametrize("fetched_at", ["1e300", "NaN", "Infinity", '"1e20"', "true", "-1e300"])
def test_a_corrupt_cache_never_breaks_a_constructor(fetched_at: str, caplog: pytest.LogCaptureFixture) -> None:
    url = "https://api.openai.com/v1"
    path = Path(live_models.cache_path("openai", url))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'{{"schema": 1, "provider": "openai", "fetched_at": {fetched_at}, "rows": []}}')
    llm = OpenAIProvider(api_key=KEY)
    assert llm.models == OpenAIProvider.MODELS


def test_a_deeply_nested_cache_or_a_fifo_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    url = "https://api.openai.com/v1"
    path = Path(live_models.cache_path("openai", url))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert OpenAIProvider(api_key=KEY).models == OpenAIProvider.MODELS
    path.unlink()
    os.mkfifo(path)  # opening it would block until a writer came
    assert OpenAIProvider(api_key=KEY).models == OpenAIProvider.MODELS


def test_a_big_listing_is_warned_about_once_and_merged_once_per_process(
        server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    rows = [{"id": f"ft:gpt-x:{i}", "shutdown_date": "someday"} for i in range(5000)]
    _serve(server, "GET", "/v1/models", {"data": rows})
    url = server.url + "/v1"
    with caplog.at_level(logging.WARNING, "mirror_providers"):
        OpenAIProvider(api_key=KEY, base_url=url).refresh_models_sync()
        first = OpenAIProvider(api_key=KEY, base_url=url)
        second = OpenAIProvider(api_key=KEY, base_url=url)
    assert first.models is second.models and len(first.models) == len(OpenAIProvider.MODELS) + 5000
    warned = [r for r in caplog.records if "model listing" in r.getMessage()]
    assert warned == []  # an odd shutdown_date is not read as one: nothing to warn about
    live = [{"id": f"ft:gpt-x:{i}", "context_window": "big"} for i in range(50)]
    with caplog.at_level(logging.WARNING, "mirror_providers"):
        live_models.merge_live(OpenAIProvider.MODELS, live, OpenAIProvider.UNKNOWN_MODEL, "openai")
    warned = [r for r in caplog.records if "model listing" in r.getMessage()]
    assert len(warned) == 1 and "and 40 more" in warned[0].getMessage()


def test_odd_cursors_and_context_lengths_are_typed_errors(server: FakeServer) -> None:
    for cursor in (["a"], {"a": 1}, 7):
        _serve(server, "GET", "/v1/models", {"data": [{"id": "claude-x"}], "has_more": True, "last_id": cursor})
        with pytest.raises(InvalidResponseError, match="is not text"):
            AnthropicProvider(api_key=KEY, base_url=server.url).refresh_models_sync()
    _serve(server, "GET", "/api/tags", {"models": [{"name": "m"}]})
    for context in ("1e400", "Infinity", '"lots"', "1.5"):
        raw = f'{{"model_info": {{"llama.context_length": {context}}}}}'.encode()

        def show(req: Received, reply: Reply, raw: bytes = raw) -> None:
            reply.body(200, raw, {"Content-Type": "application/json"})
        server.route("POST", "/api/show", show)
        with pytest.raises(InvalidResponseError, match="/api/show answer for m not understood"):
            OllamaProvider("m", host=server.url).refresh_models_sync()
