"""Shared fixtures: no network but loopback, vcrpy configured once, a loopback server."""

from __future__ import annotations

import ipaddress
import itertools
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import vcr

from mirror_providers import models
from mirror_providers.catalog import PROVIDERS

from .server import FakeServer

ROOT = Path(__file__).resolve().parent.parent
CASSETTES = ROOT / "cassettes"
FAKE_KEY = "sk-test-0123456789abcdefghijklmnopqrstuvwxyz"  # what replays use; never a real key

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and self.family in (socket.AF_INET, socket.AF_INET6):
        try:
            ok = ipaddress.ip_address(host.split("%")[0]).is_loopback or host == "0.0.0.0"
        except ValueError:
            ok = host == "localhost"
        if not ok:
            raise OSError(f"tests may not reach the network: connect to {address!r} blocked")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


CATALOG_DAY = "2026-12-01"  # the day the shipped catalog describes


@pytest.fixture(autouse=True)
def _model_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lifecycle checks see the catalog's own day, so no test changes meaning when a shutdown date
    passes (tests of the dates set their own); and no deprecated model has been warned about yet
    (the library warns once per process)."""
    monkeypatch.setattr(models, "today", lambda: CATALOG_DAY)
    monkeypatch.setattr(models, "_warned", set())


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a developer's real keys or base URLs."""
    for name in {v for cls in PROVIDERS.values() for v in cls.environment_variables()}:
        monkeypatch.delenv(name, raising=False)


_cache_numbers = itertools.count()


@pytest.fixture(scope="session")
def _model_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(autouse=True)
def model_cache(_model_cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test has its own, empty model-listing cache directory (never the developer's
    ~/.cache); it is made when something is written to it."""
    path = _model_cache_root / str(next(_cache_numbers))
    monkeypatch.setenv("MIRROR_PROVIDERS_CACHE_DIR", str(path))
    return path


SECRET_RESPONSE_HEADERS = ("set-cookie", "openai-organization", "openai-project", "anthropic-organization-id")


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers", {})
    for name in list(headers):
        if name.lower() in SECRET_RESPONSE_HEADERS:
            del headers[name]
    return response


def make_vcr() -> vcr.VCR:
    """Replay-only unless MIRROR_RECORD=1; keys filtered from requests and responses."""
    return vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="once" if os.environ.get("MIRROR_RECORD") == "1" else "none",
        match_on=["method", "uri", "body"],
        filter_headers=["authorization", "x-api-key", "openai-organization", "openai-project", "cookie"],
        before_record_response=_scrub_response,
        decode_compressed_response=True,
    )


RECORDED_DAY = "2025-06-01"  # before any model in the recordings was shut down


@pytest.fixture
def recorded_day(monkeypatch: pytest.MonkeyPatch) -> str:
    """Lifecycle checks see a day in 2025, when the recorded traffic was real: its models have
    been retired since, and a retired model is refused before sending."""
    monkeypatch.setattr(models, "today", lambda: RECORDED_DAY)
    return RECORDED_DAY


@pytest.fixture
def cassette(request: pytest.FixtureRequest, recorded_day: str) -> Iterator[Any]:
    """Use as ``with cassette("openai/test_name.yaml"):``."""
    recorder = make_vcr()

    def use(name: str) -> Any:
        return recorder.use_cassette(name, allow_playback_repeats=True)

    yield use


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        yield s


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for localhost, made with the openssl command."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make a test certificate (apt-get install openssl)"
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key
