"""Real servers for the integration tests: the embedded llama.cpp model and aimock.

Nothing here is skipped: a server that cannot start fails the run with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror_providers.embedded import LocalModelServer

from ..server import free_port

ROOT = Path(__file__).resolve().parents[2]
AIMOCK_VERSION = "1.43.0"
AIMOCK_DIR = Path(os.environ.get("MIRROR_AIMOCK_DIR", ROOT / ".cache" / "aimock"))
FIXTURES = Path(__file__).parent / "aimock_fixtures"



def wait_for_port(port: int, proc: subprocess.Popen[str], what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # a child process starting up: nothing to wait on but its port
    proc.kill()
    raise AssertionError(f"{what} did not listen on {port} within {within}s")


@pytest.fixture(scope="session")
def local_model() -> Iterator[LocalModelServer]:
    """The embedded Gemma 3 270M on llama.cpp's server (needs the local-model extra)."""
    with LocalModelServer(parallel=2) as server:
        yield server


def start_model_process() -> tuple[subprocess.Popen[str], str]:
    """The embedded model in a process of its own: (process, base URL)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mirror_providers.embedded", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready "), f"model process failed: {line!r} {proc.stderr.read() if proc.stderr else ''}"
    return proc, line.split()[1]


@pytest.fixture(scope="session")
def aimock() -> Iterator[str]:
    """``@copilotkit/aimock`` serving Ollama's native API from fixtures; installed on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed for the aimock integration tests"
    cli = AIMOCK_DIR / "node_modules" / "@copilotkit" / "aimock" / "dist" / "cli.js"
    if not cli.exists():
        AIMOCK_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(AIMOCK_DIR),
                        f"@copilotkit/aimock@{AIMOCK_VERSION}"], check=True, capture_output=True, timeout=300)
    port = free_port()
    proc = subprocess.Popen([node, str(cli), "-p", str(port), "-f", str(FIXTURES), "--log-level", "warn",
                             "-c", "12"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc, "aimock")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
