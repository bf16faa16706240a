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
