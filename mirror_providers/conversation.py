"""``Conversation``: a chat's history, kept turn by turn over one provider.

Made by ``Provider.conversation(system=..., **options)``. Each ``send()`` sends the whole history
plus the new turn and, only once the answer has arrived, appends both: a call that raises leaves
the history as it was, so the same send can simply be retried. Assistant turns are stored with
``GenerationResult.to_message()``, so tool calls and the reasoning blocks a vendor needs back
(Anthropic's signed thinking) are replayed on the next request.

Example::

    conv = llm.conversation(system="You are terse.", max_tokens=200)
    conv.send("Name a prime number.")
    print(conv.send("And the next one?").content)

This module sits below ``provider``: it knows a provider only by the two blocking methods it
calls (``_Generator``), so ``provider`` can import it without a cycle.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from . import _aio
from ._call import CallScope, call_aborted, current_call
from .errors import CallAbortedError, ValidationError
from .request import build_request
from .types import ContentPart, GenerationResult, Message, StreamChunk, join_chunks

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .request import Options, Prompt

__all__ = ["FORMAT", "Conversation", "Turn"]

FORMAT = "mirror-providers.conversation/1"  # the "format" field of a saved conversation

# What send() takes as the next turn: text, a user or tool Message, or content parts (text given
# as str, images and documents as ContentPart) making one user turn.
Turn = str | Message | Sequence[str | ContentPart]


class _Generator(Protocol):
    """What a conversation needs of its provider (every ``Provider`` is one)."""

    @property
    def provider_id(self) -> str: ...

    @property
    def model_name(self) -> str: ...

    def generate_sync(self, prompt: Prompt, **options: Unpack[Options]) -> GenerationResult: ...

    def stream_sync(self, prompt: Prompt, **options: Unpack[Options]) -> Iterator[StreamChunk]: ...


class Conversation:
    """A conversation with one provider: the history is kept, each turn adds to it.

    ``send()`` returns the ``GenerationResult`` and appends the user turn and the answer (text,
    tool calls, reasoning blocks). ``stream()`` does the same once its stream has been read to the
    end. When the model calls tools, answer each call with ``add_tool_result()`` and call
    ``send()`` without a prompt to continue::

        result = conv.send("Weather in Paris?", tools=[weather_tool])
        while result.tool_calls:
            for call in result.tool_calls:
                conv.add_tool_result(call.id, run_tool(call.name, call.arguments))
            result = conv.send()

    **Only a success changes the history.** If a send raises (a validation, API or transport
    error, a cancelled ``send_async``), or a stream breaks or is stopped before its end, the
    history is exactly what it was before: the failed turn is not kept, so the caller can retry it.

    **Sends are serialized.** One lock guards the history: a send (or stream, from its first chunk
    to its end) from another thread waits for the one in progress, and then sees its exchange.
    Reading ``messages`` or ``len()`` never waits. Sending again from the thread that holds an open
    stream of this conversation raises ``ValidationError`` instead of deadlocking.

    Args:
        provider: any ``Provider`` (a vendor client or a pool).
        messages: history to start from (user, assistant and tool turns).
        **options: default options for every send (see ``Provider``), ``system`` among them: the
            system prompt, sent with every request and not part of ``messages``. A send's own
            options override them; an option given as None there drops the default for that send.

    Raises:
        ValidationError: a default option or a starting message is invalid.
    """

    def __init__(self, provider: _Generator, *, messages: Sequence[Message] = (),
                 **options: Unpack[Options]) -> None:
        build_request("check", options)  # every default option is refused now, not at the first send
        self._provider = provider
        self._options: dict[str, Any] = dict(options)
        self._history: tuple[Message, ...] = _checked_history(messages)  # replaced whole, never mutated
        self._lock = threading.Lock()
        self._owner: int | None = None  # the thread holding the lock (a send, or an open stream)

    # -- reading ------------------------------------------------------------------------------

    @property
    def provider(self) -> _Generator:
        """The provider every send goes to."""
        return self._provider

    @property
    def system(self) -> str | None:
        """The system prompt sent with every request."""
        system: str | None = self._options.get("system")
        return system

    @property
    def messages(self) -> tuple[Message, ...]:
        """The history so far, oldest first (the system prompt is not in it)."""
        return self._history

    def __len__(self) -> int:
        return len(self._history)

    def __repr__(self) -> str:
        return f"Conversation(provider={self._provider!r}, messages={len(self._history)})"

    # -- sending ------------------------------------------------------------------------------

    def send(self, prompt: Turn | None = None, **options: Unpack[Options]) -> GenerationResult:
        """Send the history plus ``prompt`` and append both turns once the answer has arrived.

        Args:
            prompt: the next turn; None to send the history as it is (after ``add_tool_result``,
                or when it already ends with a user turn).
            **options: this send's options, over the conversation's defaults.

        Raises:
            ValidationError: a bad prompt or option; no prompt when the history does not end with
                a user or tool turn; a prompt while the last answer's tool calls await results.
            APIError, TransportError: from the provider; the history is unchanged.
        """
        turn = _turn(prompt)
        with self._hold():
            return self._exchange(turn, options)

    async def send_async(self, prompt: Turn | None = None, **options: Unpack[Options]) -> GenerationResult:
        """Awaitable ``send``, run on the library's thread pool (``_aio.run_sync``).

        Cancelling the awaiting task breaks the HTTP call off and leaves the history unchanged.
        """
        turn = _turn(prompt)  # refused here, before a worker is taken
        scope = CallScope(current_call.get())

        def call() -> GenerationResult:
            token = current_call.set(scope)
            try:
                with self._hold():
                    return self._exchange(turn, options)
            finally:
                current_call.reset(token)

        return await _aio.run_sync(call, on_cancel=scope.abort)

    def stream(self, prompt: Turn | None = None, **options: Unpack[Options]) -> Iterator[StreamChunk]:
        """Stream the answer to the history plus ``prompt``; append both turns at its end.

        The assistant turn is joined from the chunks (text, tool calls, and the reasoning blocks
        of the last chunk) when the stream has been read to its end. Stopping early (``break``,
        ``close()``) or a broken stream leaves the history unchanged. The conversation is held
        from the first chunk until the stream ends or is closed.

        Raises:
            ValidationError: a bad prompt at once; a history that cannot be continued (see
                ``send``) at the first chunk.
            StreamError, TransportError: the stream broke; the history is unchanged.
        """
        turn = _turn(prompt)
        merged = self._merged(options)
        build_request("check", merged)  # a bad option is refused now, not at the first chunk
        return self._streamed(turn, merged)

    def _streamed(self, turn: Message | None, options: dict[str, Any]) -> Iterator[StreamChunk]:
        with self._hold():
            messages = self._outgoing(turn)
            chunks = self._provider.stream_sync(messages, **options)
            seen: list[StreamChunk] = []
            kept = False
            try:
                for chunk in chunks:
                    seen.append(chunk)
                    if chunk.finish_reason is not None:  # the last chunk: kept even if the loop stops at it
                        self._keep(messages, seen)
                        kept = True
                    yield chunk
            finally:  # stopped early or broken: the response is released, nothing is kept
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            if not kept:
                self._keep(messages, seen)

    def _keep(self, messages: tuple[Message, ...], seen: list[StreamChunk]) -> None:
        answer = join_chunks(seen, provider=self._provider.provider_id, model=self._provider.model_name)
        self._history = (*messages, answer.to_message())

    def _exchange(self, turn: Message | None, options: Mapping[str, Any]) -> GenerationResult:
        """One send, with the lock held: the answer is appended only once it is complete."""
        messages = self._outgoing(turn)
        result = self._provider.generate_sync(messages, **self._merged(options))
        if call_aborted():  # the awaiting caller went away (send_async cancelled): it never saw this
            raise CallAbortedError("the send was cancelled; the history is unchanged",
                                   provider=self._provider.provider_id, model=self._provider.model_name)
        self._history = (*messages, result.to_message())
        return result

    def _merged(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return {**self._options, **options}

    def _outgoing(self, turn: Message | None) -> tuple[Message, ...]:
        """The messages a send with ``turn`` sends (the history checked for it)."""
        history = self._history
        if turn is None:
            if not history or history[-1].role not in ("user", "tool"):
                last = f"the last message is an {history[-1].role} turn" if history else "the history is empty"
                raise ValidationError(f"send() needs a prompt: {last}; send() without one continues only after "
                                      f"add_tool_result() or a user turn")
            _check_answered(history, before="sending")
            return history
        if turn.role == "tool":
            _check_result(history, turn.tool_call_id)
        else:
            _check_answered(history, before="a new user turn")
        return (*history, turn)

    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        """The history's lock; refused (not waited for) in the thread that already holds it."""
        me = threading.get_ident()
        if self._owner == me:
            raise ValidationError("this thread is still reading a stream of this conversation; read it to the "
                                  "end or close() it first")
        with self._lock:
            self._owner = me
            try:
                yield
            finally:
                self._owner = None

    # -- editing ------------------------------------------------------------------------------

    def add_tool_result(self, tool_call_id: str, content: Any, name: str | None = None) -> Message:
        """Answer one tool call of the last answer; ``send()`` without a prompt sends the results.

        Args:
            tool_call_id: the ``ToolCall.id`` being answered.
            content: the tool's output: text as it is, anything else encoded as JSON.
            name: the function name (Ollama needs it); by default the call's own.

        Returns:
            The tool turn appended.

        Raises:
            ValidationError: the id names no unanswered call of the last answer, or the content
                is neither text nor JSON-encodable.
        """
        if not isinstance(content, str):
            try:
                content = json.dumps(content)
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"tool result for {tool_call_id!r} is not text and cannot be encoded as "
                                      f"JSON: {exc}") from None
        with self._hold():
            message = Message.tool_result(tool_call_id, content, name or _check_result(self._history, tool_call_id))
            self._history = (*self._history, message)
        return message

    def undo(self) -> tuple[Message, ...]:
        """Drop the last exchange and return the messages dropped.

        Turns waiting after the last answer (tool results not sent yet) are dropped if there are
        any; otherwise the last answer and the turns that led to it (what its send added).

        Raises:
            ValidationError: the history is empty.
        """
        with self._hold():
            history = self._history
            if not history:
                raise ValidationError("nothing to undo: the history is empty")
            answers = [i for i, m in enumerate(history) if m.role == "assistant"]
            if answers and answers[-1] < len(history) - 1:
                keep = answers[-1] + 1  # the waiting turns after the last answer
            else:
                keep = answers[-2] + 1 if len(answers) > 1 else 0
            self._history = history[:keep]
            return history[keep:]

    def reset(self) -> None:
        """Forget the whole history (the system prompt and default options stay)."""
        with self._hold():
            self._history = ()

    # -- saving -------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the system prompt and the history to ``path`` as JSON (replacing it whole).

        Options are not saved (tools and schemas belong to the code): pass them to ``load``.
        """
        data = {"format": FORMAT, "system": self.system,
                "messages": [m.to_dict() for m in self._history]}
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
        os.replace(tmp, path)  # a reader never sees half a file

    @classmethod
    def load(cls, path: str | os.PathLike[str], provider: _Generator, **options: Unpack[Options]) -> Conversation:
        """Read a conversation ``save`` wrote, to continue it with ``provider`` and ``options``
        (its saved system prompt unless ``options`` give another).

        Raises:
            ValidationError: the file is not a saved conversation.
            OSError: it cannot be read.
        """
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except ValueError as exc:
                raise ValidationError(f"{os.fspath(path)} is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("messages"), list):
            raise ValidationError(f"{os.fspath(path)} is not a saved conversation (format {FORMAT!r})")
        try:
            messages = [Message.from_dict(m) for m in data["messages"]]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:  # what dataclasses-json's decoders raise
            raise ValidationError(f"{os.fspath(path)}: a message cannot be read "
                                  f"({type(exc).__name__}: {exc})") from None
        saved: dict[str, Any] = {"system": data.get("system"), **options}  # a system= given here wins
        return cls(provider, messages=messages, **saved)


def _turn(prompt: Turn | None) -> Message | None:
    """The message ``prompt`` makes (None for none); refused if it cannot be a next turn."""
    # A Message's fields are checked with the rest of the request, before anything is sent.
    if prompt is None or isinstance(prompt, Message):
        if prompt is not None and prompt.role not in ("user", "tool"):
            raise ValidationError(f"send() takes a user or tool turn, not a {prompt.role} one"
                                  + ("; give the system prompt to conversation(system=...)"
                                     if prompt.role == "system" else ""))
        return prompt
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValidationError("prompt is empty")
        return Message.user(prompt)
    if isinstance(prompt, Sequence) and not isinstance(prompt, (bytes, bytearray)):
        parts = tuple(ContentPart.from_text(p) if isinstance(p, str) else p for p in prompt)
        bad = [type(p).__name__ for p in parts if not isinstance(p, ContentPart)]
        if bad:
            raise ValidationError(f"a prompt given as a list holds text and ContentPart items, not {bad[0]}")
        if not parts:
            raise ValidationError("prompt is an empty list")
        return Message.user(parts)
    raise ValidationError(f"prompt must be text, a Message or a list of content parts, not {type(prompt).__name__}")


def _checked_history(messages: Sequence[Message]) -> tuple[Message, ...]:
    history = tuple(messages)
    for i, m in enumerate(history):
        if not isinstance(m, Message) or m.role not in ("user", "assistant", "tool"):
            what = f"a {m.role} message" if isinstance(m, Message) else type(m).__name__
            raise ValidationError(f"messages[{i}] is {what}: the history holds user, assistant and tool turns "
                                  f"(the system prompt is given as system=)")
    return history


def _pending_calls(history: tuple[Message, ...]) -> dict[str, str]:
    """The last answer's tool calls that no tool turn after it answers: id -> name."""
    for i in range(len(history) - 1, -1, -1):
        m = history[i]
        if m.role == "assistant":
            answered = {t.tool_call_id for t in history[i + 1:] if t.role == "tool"}
            return {c.id: c.name for c in m.tool_calls if c.id not in answered}
        if m.role == "user":
            return {}
    return {}


def _check_answered(history: tuple[Message, ...], before: str) -> None:
    pending = _pending_calls(history)
    if pending:
        raise ValidationError(f"the last answer's tool call(s) {sorted(pending)} have no result: add each with "
                              f"add_tool_result() before {before}")


def _check_result(history: tuple[Message, ...], tool_call_id: str | None) -> str:
    """The name of the call ``tool_call_id`` names; refused unless that call awaits its result."""
    pending = _pending_calls(history)
    if tool_call_id not in pending:
        waiting = f"the calls awaiting results are {sorted(pending)}" if pending else "no tool call awaits a result"
        raise ValidationError(f"tool result for {tool_call_id!r} answers no call of the last answer: {waiting}")
    return pending[tool_call_id]
