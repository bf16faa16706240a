"""Many prompts through one provider, chain or pool: what ``mirror-providers batch`` runs.

Input is one record per line: a JSON object (``{"prompt": "...", "id": 7, "system": "...",
"max_tokens": 100}``, or ``"messages": [{"role": "user", "content": "..."}]`` instead of
``prompt``), a JSON string, or, with ``text`` format (or a line that is neither), the line itself
as the prompt. Output is one JSON record per input record, in input order, each either an answer
or the error that prompt met, in its place (``"line"`` is the input line it answers).

Written to a file, every record is appended the moment its call finishes, so a run that is
interrupted (Ctrl-C, a crash, a killed job) has lost nothing it paid for: run it again and the
prompts already answered are not sent again (a record is reused only for the same input, by a
fingerprint of the prompt and its options), those that failed are retried, and the file is put
back in input order when the run completes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import _aio
from ._call import CallScope, current_call
from .errors import ProviderError, ValidationError
from .provider import Provider
from .types import GenerationResult, Message

__all__ = ["BatchItem", "BatchSummary", "Earlier", "done_records", "read_items", "run_batch"]

Format = Literal["auto", "jsonl", "text"]
OPTION_FIELDS = ("system", "max_tokens", "temperature", "top_p", "stop")
RECORD_FIELDS = frozenset({"prompt", "messages", "id", *OPTION_FIELDS})


@dataclass(frozen=True)
class BatchItem:
    """One input record.

    Attributes:
        line: its line in the input (1-based).
        id: the record's ``"id"``, None when it gave none.
        prompt: what is sent (None when the line could not be read).
        options: call options (the record's over the run's).
        key: a fingerprint of prompt and options: an earlier answer is reused only for the same.
        error: why the line could not be read (reported in its place, never sent).
    """

    line: int
    id: Any = None
    prompt: str | tuple[Message, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""
    error: str | None = None


@dataclass
class BatchSummary:
    """How a run went: ``done`` counts this run's answers, ``reused`` earlier runs'."""

    total: int = 0
    reused: int = 0
    done: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    interrupted: bool = False
    abandoned: int = 0
    records: dict[int, dict[str, Any]] = field(default_factory=dict)


def _fingerprint(prompt: Any, options: Mapping[str, Any], target: str = "") -> str:
    canonical = json.dumps({"prompt": prompt, "options": dict(options), "target": target}, sort_keys=True,
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _messages(value: Any, line: int) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("\"messages\" must be a non-empty list of {\"role\", \"content\"} objects")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or set(m) - {"role", "content"} or not isinstance(m.get("role"), str) \
                or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}] must be {{\"role\": text, \"content\": text}}, got {json.dumps(m)[:80]}")
        out.append(Message(m["role"], m["content"]))
    return tuple(out)


def _item(line: int, text: str, fmt: Format, defaults: Mapping[str, Any], target: str) -> BatchItem | None:
    raw = text.rstrip("\r\n")
    if not raw.strip():
        return None  # a blank line is a separator, not a prompt
    if fmt == "text" or (fmt == "auto" and raw.lstrip()[:1] not in ("{", '"')):
        return BatchItem(line, prompt=raw, options=dict(defaults), key=_fingerprint(raw, defaults, target))
    try:
        record = json.loads(raw)
        if isinstance(record, str):
            record = {"prompt": record}
        if not isinstance(record, dict):
            raise ValueError(f"a record is a JSON object or string, not {type(record).__name__}")
        unknown = sorted(set(record) - RECORD_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; a record takes {sorted(RECORD_FIELDS)}")
        if ("prompt" in record) == ("messages" in record):
            raise ValueError("a record needs \"prompt\" (text) or \"messages\" (a list), one of them")
        if "prompt" in record and (not isinstance(record["prompt"], str) or not record["prompt"]):
            raise ValueError("\"prompt\" must be non-empty text")
        prompt: str | tuple[Message, ...] = (record["prompt"] if "prompt" in record
                                             else _messages(record["messages"], line))
    except ValueError as exc:  # json.JSONDecodeError is one
        return BatchItem(line, id=None, error=f"line {line}: {exc}", key=_fingerprint(raw, {}, target))
    options = {**defaults, **{k: record[k] for k in OPTION_FIELDS if k in record}}
    source = record.get("prompt", record.get("messages"))
    return BatchItem(line, id=record.get("id"), prompt=prompt, options=options,
                     key=_fingerprint([source, record.get("id")], options, target))


def read_items(lines: Iterable[str], fmt: Format = "auto", defaults: Mapping[str, Any] | None = None,
               target: str = "") -> list[BatchItem]:
    """The input's records (blank lines skipped); a line that cannot be read is an item with
    ``error`` set, answered in its place, never dropped. ``target`` (the provider, chain or pool
    that answers) is part of every fingerprint: another model's answers are not reused."""
    if fmt not in ("auto", "jsonl", "text"):
        raise ValidationError(f"format must be auto, jsonl or text, got {fmt!r}")
    clean = {k: v for k, v in (defaults or {}).items() if v is not None}
    items = (_item(n, text, fmt, clean, target) for n, text in enumerate(lines, 1))
    return [item for item in items if item is not None]


@dataclass
class Earlier:
    """What an earlier run left in the output file: the answers that still answer items of this
    input (by fingerprint, wherever the line moved), and how many records answer something else."""

    reuse: dict[int, dict[str, Any]] = field(default_factory=dict)
    foreign: int = 0
    records: int = 0


def done_records(path: Path, items: Iterable[BatchItem]) -> Earlier:
    """Read what an earlier run wrote to ``path`` (nothing when it does not exist). An answer is
    reused for every item with its fingerprint (the same prompt, options and target), renumbered
    to the item's line; errors are not reused. A line cut short by a crash is ignored.

    Raises:
        OSError: ``path`` exists but cannot be read (a directory, say).
    """
    items = list(items)
    keys = {item.key for item in items}
    answers: dict[str, dict[str, Any]] = {}
    earlier = Earlier()
    with contextlib.suppress(FileNotFoundError), path.open(encoding="utf-8", errors="replace") as f:
        for text in f:
            try:
                record = json.loads(text)
            except ValueError:
                continue
            if not isinstance(record, dict) or not isinstance(record.get("input"), str):
                continue
            earlier.records += 1
            if record["input"] not in keys:
                earlier.foreign += 1
            elif "error" not in record:
                answers[record["input"]] = record
    for item in items:
        if item.key in answers:
            earlier.reuse[item.line] = {**answers[item.key], "line": item.line}
    return earlier


def answer_record(item: BatchItem, result: GenerationResult) -> dict[str, Any]:
    usage = result.usage
    return {"line": item.line, **({"id": item.id} if item.id is not None else {}), "content": result.content,
            "model": result.model, "provider": result.provider,
            "finish_reason": result.finish_reason,
            "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens} if usage else None,
            "request_id": result.request_id, "latency_s": round(result.latency_s, 3), "input": item.key}


def error_record(item: BatchItem, exc: ProviderError | None = None) -> dict[str, Any]:
    error: dict[str, Any]
    if exc is None:
        error = {"type": "ValidationError", "message": item.error}
    else:
        error = {"type": type(exc).__name__, "message": getattr(exc, "message", str(exc)),
                 "status": getattr(exc, "status", None), "provider": exc.provider, "model": exc.model,
                 "request_id": getattr(exc, "request_id", None)}
        if getattr(exc, "retry_after", None) is not None:
            error["retry_after_s"] = exc.retry_after  # type: ignore[attr-defined]
    return {"line": item.line, **({"id": item.id} if item.id is not None else {}), "error": error, "input": item.key}


def _call(provider: Provider, item: BatchItem, scope: CallScope) -> GenerationResult | ProviderError:
    token = current_call.set(scope)
    try:
        assert item.prompt is not None
        return provider.generate_sync(item.prompt, **item.options)
    except ProviderError as exc:
        return exc
    finally:
        current_call.reset(token)


def run_batch(provider: Provider, items: list[BatchItem], emit: Callable[[dict[str, Any]], None], *,
              concurrency: int = 4, reuse: Mapping[int, dict[str, Any]] | None = None,
              on_record: Callable[[dict[str, Any]], None] | None = None,
              on_interrupt: Callable[[int], None] | None = None) -> BatchSummary:
    """Answer every item not in ``reuse``, at most ``concurrency`` calls at once on the library's
    thread pool; ``emit`` each record as its call finishes (in completion order) and call
    ``on_record`` after it (a progress bar).

    A first Ctrl-C stops sending and waits for the calls in flight (paid for: their answers are
    emitted), calling ``on_interrupt(in_flight)``; a second abandons them (their connections
    are closed). Either way the summary says ``interrupted``; KeyboardInterrupt is not re-raised.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError(f"concurrency must be a positive integer, got {concurrency!r}")
    run = _Run(provider, emit, on_record, BatchSummary(total=len(items), records=dict(reuse or {})))
    run.summary.reused = len(run.summary.records)
    todo = (item for item in items if item.line not in run.summary.records)
    try:
        while run.fill(todo, concurrency):
            run.collect_some()
    except KeyboardInterrupt:
        run.summary.interrupted = True
        try:
            if on_interrupt is not None:
                on_interrupt(len(run.in_flight))
            while run.in_flight:
                run.collect_some()
        except KeyboardInterrupt:
            pass
    finally:  # a second Ctrl-C, wherever it lands: the calls still in flight are broken off
        if run.in_flight:
            run.summary.abandoned = len(run.in_flight)
            run.abandon()
    return run.summary


Outcome = GenerationResult | ProviderError


@dataclass
class _Run:
    provider: Provider
    emit: Callable[[dict[str, Any]], None]
    on_record: Callable[[dict[str, Any]], None] | None
    summary: BatchSummary
    in_flight: dict[Future[Outcome], tuple[BatchItem, CallScope]] = field(default_factory=dict)

    def fill(self, todo: Iterator[BatchItem], concurrency: int) -> bool:
        """Start calls up to ``concurrency``; False when nothing is left to wait for."""
        while len(self.in_flight) < concurrency:
            item = next(todo, None)
            if item is None:
                break
            if item.error is not None:
                self.finish(item, None)
                continue
            scope = CallScope(None)
            self.in_flight[_aio.submit(_call, self.provider, item, scope)] = (item, scope)
        return bool(self.in_flight)

    def collect_some(self) -> None:
        for future in wait(list(self.in_flight), return_when=FIRST_COMPLETED)[0]:
            item, _ = self.in_flight.pop(future)
            self.finish(item, future.result())

    def abandon(self) -> None:
        for _, scope in self.in_flight.values():
            scope.abort()

    def finish(self, item: BatchItem, outcome: Outcome | None) -> None:
        if isinstance(outcome, GenerationResult):
            record = answer_record(item, outcome)
            self.summary.done += 1
            if outcome.usage:
                self.summary.input_tokens += outcome.usage.input_tokens
                self.summary.output_tokens += outcome.usage.output_tokens
        else:
            record = error_record(item, outcome)
            self.summary.failed += 1
        self.summary.records[item.line] = record
        self.emit(record)
        if self.on_record is not None:
            self.on_record(record)


class JsonlFile:
    """The output file: records appended as they come (flushed each), rewritten in input order
    by ``finish``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        cut = False
        with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            cut = size > 0 and f.seek(size - 1) >= 0 and f.read(1) != b"\n"
        self._file = path.open("a", encoding="utf-8")
        if cut:  # a record cut short by a crash must not swallow the next one
            self._file.write("\n")

    def __call__(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def finish(self, records: Mapping[int, dict[str, Any]]) -> None:
        """Put the file in input order (written beside it, then moved over it)."""
        self.close()
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with temp.open("w", encoding="utf-8") as f:
            for line in sorted(records):
                f.write(json.dumps(records[line], ensure_ascii=False) + "\n")
        temp.replace(self.path)


class InOrder:
    """Records written to a stream in input order as soon as each one's predecessors are."""

    def __init__(self, write: Callable[[str], Any], lines: Iterable[int],
                 flush: Callable[[], Any] | None = None) -> None:
        self._write, self._flush = write, flush
        self._order = list(lines)
        self._next = 0
        self._ready: dict[int, dict[str, Any]] = {}

    def __call__(self, record: dict[str, Any]) -> None:
        self._ready[record["line"]] = record
        while self._next < len(self._order) and self._order[self._next] in self._ready:
            self._write(json.dumps(self._ready.pop(self._order[self._next]), ensure_ascii=False) + "\n")
            self._next += 1
        if self._flush is not None:
            self._flush()

    def drain(self) -> None:
        """Write what is ready, gaps and all (a run that stopped early)."""
        for line in self._order[self._next:]:
            if line in self._ready:
                self._write(json.dumps(self._ready.pop(line), ensure_ascii=False) + "\n")
        self._next = len(self._order)
        if self._flush is not None:
            self._flush()
