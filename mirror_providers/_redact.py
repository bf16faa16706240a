"""Keeping credentials out of what errors show: vendor text, snippets of bad frames, URLs.

Everything here is linear in its input: error bodies can be 64 KiB of base64 (an error that
echoes an image), and a backtracking pattern over that would hold the GIL for minutes.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable
from urllib.parse import unquote

REDACTED = "[redacted]"

# The characters of a key and of a vendor's masked echo of it ("sk-proj-abc****...wxyz.").
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "-_.*")
_STARS = re.compile(r"\*{4,}")
_LONGEST_KEY = 512  # characters; vendors' keys are 40-200


def mask_echoes(text: str) -> str:
    """Replace each run of key characters that contains ``****`` (OpenAI echoes a masked key in
    its 401 messages) with ``[redacted]``. Each character is looked at a bounded number of times."""
    if "****" not in text:
        return text
    out: list[str] = []
    pos = 0
    for m in _STARS.finditer(text):
        if m.start() < pos:
            continue  # inside the run the last redaction already covered
        start, end = m.start(), m.end()
        while start > pos and text[start - 1] in _KEY_CHARS:
            start -= 1
        while end < len(text) and text[end] in _KEY_CHARS:
            end += 1
        out.append(text[pos:start])
        out.append(REDACTED)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _spellings(secret: str) -> set[str]:
    """How a secret may appear in a body: as it is, and as a JSON string spells it (``/`` as
    ``\\/``, non-ASCII as ``\\uXXXX``, quotes and backslashes escaped), so an error body that
    echoes the key JSON-escaped is cleaned too."""
    escaped = json.dumps(secret)[1:-1]
    return {secret, escaped, escaped.replace("/", "\\/"), json.dumps(secret, ensure_ascii=False)[1:-1]}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` without any of ``secrets`` (as they are or JSON-escaped) or a masked echo of one."""
    for secret in secrets:
        if secret:
            for spelling in _spellings(secret):
                text = text.replace(spelling, REDACTED)
    return mask_echoes(text)


def longest_spelling(secrets: Iterable[str]) -> int:
    """The length of the longest way ``redact`` looks for any of ``secrets``: how far past a cut
    a text must run for ``redact_head`` to see a secret that the cut would split."""
    return max((len(s) for secret in secrets if secret for s in _spellings(secret)), default=0)


def redact_head(text: str, limit: int, secrets: Iterable[str]) -> str:
    """``redact`` of the first ``limit`` characters of ``text``, or fewer: the cut never falls inside
    one of ``secrets`` (in any spelling) or inside a run of key characters, so no part of a key
    survives it. When ``text`` is itself the head of something longer, it must run at least
    ``longest_spelling(secrets)`` characters past ``limit``."""
    secrets = [s for s in secrets if s]
    if len(text) <= limit:
        return redact(text, secrets)
    spellings = {s for secret in secrets for s in _spellings(secret)}
    cut, moved = limit, True
    while moved:
        moved = False
        for s in spellings:  # an occurrence that starts before the cut and ends after it
            i = text.find(s, max(0, cut - len(s) + 1), cut + len(s) - 1)
            if i != -1 and i < cut:
                cut, moved = i, True
        start = end = cut
        while start > 0 and cut - start <= _LONGEST_KEY and text[start - 1] in _KEY_CHARS and text[cut] in _KEY_CHARS:
            start -= 1
        while start != cut and end < len(text) and end - start <= _LONGEST_KEY and text[end] in _KEY_CHARS:
            end += 1
        if start != cut and end - start <= _LONGEST_KEY:  # a longer run (base64 data, say) is no key
            cut, moved = start, True
    return redact(text[:cut], secrets)


# Names of query parameters and headers whose values are credentials (``?key=`` is Google's,
# ``api-key`` Azure's, ``x-goog-api-key``, ``Private-Token``, a gateway's ``X-Auth-Token``...),
# looked for as whole parts of the name: ``x-ratelimit-remaining-tokens`` holds no credential.
_SECRET_NAME_PARTS = frozenset({"auth", "authorization", "credential", "credentials", "cookie", "session", "sig",
                                "signature", "passwd", "pwd"})
_SECRET_NAME_ENDS = ("key", "token", "secret", "password")
_NAME_SEPARATORS = re.compile(r"[-_.\s]+")


def looks_secret(name: str) -> bool:
    """Whether a header or query parameter called ``name`` probably carries a credential."""
    return any(part in _SECRET_NAME_PARTS or part.endswith(_SECRET_NAME_ENDS)
               for part in _NAME_SEPARATORS.split(name.lower()))


def secret_params(url: str) -> list[str]:
    """The values of ``url``'s query parameters whose names look like credentials, as written
    and percent-decoded (``redact`` with them hides the values in the URL and in any echo)."""
    query = url.partition("#")[0].partition("?")[2]
    values: list[str] = []
    for pair in query.replace(";", "&").split("&"):
        name, _, value = pair.partition("=")
        if value and looks_secret(unquote(name)):
            values.extend({value, unquote(value), unquote(value.replace("+", " "))})
    return values


def redact_query(url: str) -> str:
    """``url`` with the value of every query parameter shown as ``[redacted]`` (its names kept)
    and no fragment: a query may hold a key under any name."""
    base, _, query = url.partition("#")[0].partition("?")
    if not query:
        return base
    pairs = [(name + "=" + REDACTED) if sep else name for name, sep, _ in (p.partition("=") for p in query.split("&"))]
    return f"{base}?{'&'.join(pairs)}"


def snippet(text: str, limit: int = 200) -> str:
    """At most ``limit`` characters of ``text`` for an error message, never ending inside a run
    of key characters: a cut key would show its first part, which no later redaction finds."""
    if len(text) <= limit:
        return text
    end = limit
    while end > 0 and text[end - 1] in _KEY_CHARS and text[end] in _KEY_CHARS:
        end -= 1
    return text[:end] + "..."


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """``("http://h/p", ("user", "pw"))`` for ``"http://user:pw@h/p"``; the pair is
    percent-decoded, and None when the URL names no user."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority_end = len(rest)
    for mark in "/?#":
        i = rest.find(mark)
        if i != -1:
            authority_end = min(authority_end, i)
    at = rest.rfind("@", 0, authority_end)
    if at == -1:
        return url, None
    user, _, password = rest[:at].partition(":")
    stripped = rest[at + 1:]
    return (f"{scheme}://{stripped}" if sep else stripped), (unquote(user), unquote(password))


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` shown as ``***@``, for messages about a bad URL.
    Any ``@`` before the path counts, so a malformed authority is hidden too."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    cut = len(rest)
    for mark in "?#":
        i = rest.find(mark)
        if i != -1:
            cut = min(cut, i)
    at = rest.rfind("@", 0, cut)
    if at == -1:
        return url
    return f"{scheme}{sep}***@{rest[at + 1:]}"
