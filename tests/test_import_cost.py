"""What importing a provider and building one loads (issue 21): only what the build needs.

Behavioural, not timed (bench/run.py's import rows time it): each check runs a fresh interpreter
and looks at ``sys.modules``, so a top-level import that creeps back fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BUILD = """
import mirror_providers.openai
provider = mirror_providers.openai.OpenAIProvider(api_key="sk-test")
"""

# Each is imported where it is needed, never by import + build: requests and urllib3 (the first
# request), dataclasses-json and marshmallow (to_dict/to_json...), asyncio (the async methods),
# email (an HTTP-date Retry-After), hashlib (a cached model listing's file name), tempfile and
# importlib.resources (writing that cache; the catalog is read with pkgutil), concurrent.futures
# (the thread pool), ssl and socket (come with requests).
LAZY = ("requests", "urllib3", "dataclasses_json", "marshmallow", "asyncio", "email", "hashlib", "tempfile",
        "importlib.resources", "concurrent.futures", "ssl", "socket", "http.client", "sseclient")


def run(code: str, cache_dir: Path) -> object:
    """Run ``code`` in a fresh interpreter (this checkout's package, the model-listing cache in
    ``cache_dir``); it prints one JSON value."""
    env = {**os.environ, "MIRROR_PROVIDERS_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env=env, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_import_and_build_load_none_of_the_lazy_modules(tmp_path: Path) -> None:
    got = run(BUILD + f"""
import json, sys
from mirror_providers import _lazy
print(json.dumps({{"loaded": [m for m in {LAZY!r} if m in sys.modules],
                  "pending": [c.__name__ for c in _lazy.pending()]}}))
""", tmp_path / "never-made")
    assert isinstance(got, dict)
    assert got["loaded"] == []
    # the dataclasses a build never touches wait: a stream chunk, a result, a request...
    assert {"StreamChunk", "GenerationResult", "GenerateRequest", "Message", "HttpRequest"} <= set(got["pending"])


def test_with_a_cache_directory_the_build_looks_for_its_listing(tmp_path: Path) -> None:
    """Where ``refresh_models_sync`` ever ran, the build hashes the server's URL to find the file."""
    got = run(BUILD + "import json, sys; print(json.dumps('hashlib' in sys.modules))", tmp_path)
    assert got is True


def test_the_first_request_imports_requests_and_maps_its_errors(tmp_path: Path) -> None:
    got = run("""
import json, socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()  # nothing listens there
from mirror_providers.errors import ConnectError
from mirror_providers.transport import HttpRequest, RequestsTransport
transport = RequestsTransport()
before = "requests" in sys.modules
try:
    transport.send(HttpRequest("GET", f"http://127.0.0.1:{port}/"))
except ConnectError as exc:
    error = type(exc).__name__
transport.close()
print(json.dumps([before, "requests" in sys.modules, error]))
""", tmp_path)
    assert got == [False, True, "ConnectError"]


def test_serialisation_still_loads_dataclasses_json_when_used(tmp_path: Path) -> None:
    got = run("""
import json, sys
from mirror_providers.types import Message, Usage
before = "dataclasses_json" in sys.modules
usage = Usage.from_json(Usage(input_tokens=3, output_tokens=4).to_json())
print(json.dumps([before, "dataclasses_json" in sys.modules, usage.input_tokens,
                  Message.from_dict(Message(role="user", content="hi").to_dict()).content]))
""", tmp_path)
    assert got == [False, True, 3, "hi"]
